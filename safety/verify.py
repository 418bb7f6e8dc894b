"""Check a recording of safe targets against the limits, after the fact.

A recording stores ``Shield.limits_report()`` beside one :class:`~safety.record.StepRecord` per
tick (a ``steps.jsonl`` line); with :func:`verify_trace` anyone can later confirm that what was
sent to the arm never broke a limit, independently of the shield's own code path. Tests and the
end-to-end adversarial test use it.

Rates are finite differences of consecutive commands at the tick's ``dt`` (the record's
``dt_s``, else the time since the previous record, as the agent's control loop passes it) —
velocity ``(x_k - x_{k-1}) / dt_k``, acceleration and jerk the same one order up — exactly what
the motion filter bounds (translation: norm of the position difference; rotation: angle of the
relative rotation in the world frame; joints: each joint; gripper: rate only). A hold commands
the measured state at rest, so it starts a fresh run with zero velocity and acceleration: from
the hold's own command when the record has one (a shield decision's), else from the measured
state of the first moving tick after it (the agent resets the shield there, as it does when it
starts); the first steps of a recording, whose predecessors are unknown, are checked for what
can be.

Positions are checked against the workspace and the keep-out zones grown by
``keep_out_margin_m`` (what the shield keeps commands out of): a command may be inside only
after a seed there (a hold, or the agent's reset at the measured state), and then never deeper
than the command before it (per workspace axis, per zone, per joint past its band), so the
shield only ever moved the arm out, and once out it stays out. Given the arm's forward
kinematics (``fk``), joint commands are checked the same way at their end-effector position
``fk(joints)``, from the FK of the seed's joints (as :class:`~safety.shield.Shield` does).
The tool's points (``safety.tool``) are placed by each command's pose (its quaternion; for a
joint command the FK's) and checked the same way: at or above the workspace floor and out of
every grown zone, or no deeper than the command before it after a seed with the tool in (the
record's ``safe`` pose and ``measured`` pose carry all it needs).

Finite differences of float64 cannot resolve less than a few ulps of the coordinates divided by
``dt^k``; the check allows that much beyond ``rel_tol * limit``, no more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import SafetyConfig
from .record import StepRecord
from .rotations import quat_conjugate, quat_multiply, quat_normalize, quat_to_rotvec
from .shield import FK
from .types import Target
from .zones import Zones

__all__ = ["Violation", "verify_trace"]

_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Violation:
    """One limit broken at one step: ``value`` exceeded ``limit`` (same units)."""

    index: int
    kind: str
    value: float
    limit: float
    message: str

    def __str__(self) -> str:
        return f"step {self.index}: {self.message}"


def verify_trace(
    steps: Iterable[StepRecord | Mapping[str, Any]],
    limits: SafetyConfig | Mapping[str, Any],
    *,
    rel_tol: float = 1e-9,
    fk: FK | None = None,
) -> list[Violation]:
    """Every violation of ``limits`` in ``steps``; [] if none.

    ``steps``: :class:`StepRecord` s, or the agent recorder's ``steps.jsonl`` lines (parsed
    objects, read with :meth:`StepRecord.from_json`; ValueError on a malformed one).
    ``limits``: a SafetyConfig, its ``to_dict()``, or a ``Shield.limits_report()`` (one
    without ``config.tool``, written before the shield bounded the tool, is read as
    ``tool.points = []``: that shield bounded the TCP only).
    ``fk``: the arm's forward kinematics, ``fk(joints) -> Pose``; with it a joint command's
    end-effector position is checked against the workspace and the grown keep-out zones
    (``workspace`` / ``keep_out`` violations); without it joint commands are checked against
    the joint band only.
    """
    cfg = _config(limits)
    zones = Zones(cfg.workspace, cfg.keep_out, cfg.keep_out_margin_m, cfg.tool.as_array())
    j = cfg.joints
    q_lo = np.asarray(j.min) + j.margin_rad
    q_hi = np.asarray(j.max) - j.margin_rad
    out: list[Violation] = []
    groups = {
        "translation": _Chain(
            cfg.translation.max_velocity, cfg.translation.max_acceleration, cfg.translation.max_jerk
        ),
        "rotation": _Chain(cfg.rotation.max_velocity, cfg.rotation.max_acceleration, cfg.rotation.max_jerk),
        "joints": _Chain(np.asarray(j.max_velocity), np.asarray(j.max_acceleration), np.asarray(j.max_jerk)),
    }
    prev_grip: float | None = None
    # How deep in a forbidden region (per workspace axis and grown zone; per joint past its
    # band) the next command may be: 0, except after a seed there, and then never deeper than
    # the command before it (the shield only moves out).
    # Then the tool's points: below the floor, in each grown zone (Zones.tool_penetration).
    allow_ee = np.zeros(4 + 2 * len(zones.keep_out))
    allow_q = np.zeros(q_lo.shape)
    # The same for the FK pose of joint commands, from the FK of the seed's joints.
    allow_fk = np.zeros(4 + 2 * len(zones.keep_out))
    prev_time: float | None = None
    fresh = True  # the next moving tick starts from its measured state (after a start or a hold)
    for i, rec in enumerate(_records(steps)):
        t = rec.time_s
        dt = rec.dt_s if rec.dt_s is not None else (math.nan if prev_time is None else t - prev_time)
        prev_time = t
        hold = rec.holding or rec.safe is None
        seed = rec.measured if fresh and not hold else None
        fresh = hold
        if seed is not None:  # the shield was reseeded at rest at this measured state
            allow_ee, allow_q = _allowance(
                zones, q_lo, q_hi, seed.ee.position, seed.ee.quaternion, seed.joints, allow_ee, allow_q
            )
            if fk is not None:
                allow_fk = _fk_allowance(zones, fk, seed.joints, q_lo.shape, allow_fk)
            groups["translation"].restart(_vec(seed.ee.position))
            groups["rotation"].restart(_vec(seed.ee.quaternion), rotation=True)
            groups["joints"].restart(_vec(seed.joints))
            g0 = float(seed.gripper)
            prev_grip = g0 if math.isfinite(g0) else None
        pos, quat, joints, grip = _command(rec.safe)
        present = [x for x in (pos, quat, joints) if x is not None]
        if grip is not None:
            present.append(np.array([float(grip)]))
        if any(not bool(np.all(np.isfinite(x))) for x in present):
            out.append(Violation(i, "non_finite", math.nan, math.nan, "a commanded value is not finite"))
            for g in groups.values():
                g.restart(None)
            continue
        if hold:  # a hold commands the measured state and reseeds the shield there
            allow_ee, allow_q = _allowance(zones, q_lo, q_hi, pos, quat, joints, allow_ee, allow_q)
            if fk is not None:
                allow_fk = _fk_allowance(zones, fk, joints, q_lo.shape, allow_fk)
        elif pos is not None and pos.shape == (3,):
            pen = _pose_penetration(zones, pos, quat)
            out.extend(
                _zone_violation(i, pen, allow_ee, f"end-effector pose {pos.tolist()} {_q(quat)} puts", zones)
            )
            allow_ee = pen
        if joints is not None and joints.shape == q_lo.shape and not hold:
            over = np.maximum(np.maximum(joints - q_hi, q_lo - joints), 0.0)
            k = int(np.argmax(over - allow_q))
            if over[k] > allow_q[k] + 1e-9:
                out.append(
                    Violation(
                        i,
                        "joint_limit",
                        float(joints[k]),
                        float(q_hi[k] if joints[k] > q_hi[k] else q_lo[k]),
                        f"joint {k} at {joints[k]:.6f} rad, outside [{q_lo[k]:.6f}, {q_hi[k]:.6f}]"
                        f" by {over[k]:.6f} rad, the previous command by {allow_q[k]:.6f}",
                    )
                )
            allow_q = over
            if fk is not None and pos is None:
                found, allow_fk = _check_fk(i, zones, fk, joints, allow_fk)
                out.extend(found)
        if grip is None and hold:
            prev_grip = None  # the shield reseeds the gripper at the measured value on a hold
        if grip is not None:
            gv = float(grip)
            if not cfg.gripper.min - 1e-12 <= gv <= cfg.gripper.max + 1e-12:
                out.append(Violation(i, "gripper", gv, cfg.gripper.max, f"gripper {gv} outside its range"))
            if prev_grip is not None and not hold and dt > 0:
                rate = abs(gv - prev_grip) / dt
                if rate > cfg.gripper.max_rate_per_s * (1 + rel_tol) + 4 * _EPS / dt:
                    out.append(
                        Violation(
                            i, "gripper", rate, cfg.gripper.max_rate_per_s, f"gripper rate {rate:.6g}/s"
                        )
                    )
            prev_grip = gv
        # Rates.
        if hold:
            groups["translation"].restart(pos)
            groups["rotation"].restart(quat, rotation=True)
            groups["joints"].restart(joints)
            continue
        if not (dt > 0 and math.isfinite(dt)):
            # Unknown dt (the first line of an agent recording): rates restart from here.
            if not math.isnan(dt):
                out.append(Violation(i, "invalid", dt, math.nan, f"dt is {dt}"))
            for name, x in (("translation", pos), ("rotation", quat), ("joints", joints)):
                groups[name].restart(None)
                groups[name].advance(i, name, x, 1.0, rel_tol, rotation=name == "rotation")
            continue
        for name, x in (("translation", pos), ("rotation", quat), ("joints", joints)):
            out.extend(groups[name].advance(i, name, x, dt, rel_tol, rotation=name == "rotation"))
    return out


def _allowance(
    zones: Zones,
    q_lo: np.ndarray,
    q_hi: np.ndarray,
    position: Any,
    quaternion: Any,
    joints: Any,
    allow_ee: np.ndarray,
    allow_q: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Penetrations of a seed (the measured state): how deep the next command may be; a part
    the seed does not give keeps its allowance."""
    p = _vec(position)
    if p is not None and p.shape == (3,) and bool(np.all(np.isfinite(p))):
        allow_ee = _pose_penetration(zones, p, _vec(quaternion))
    q = _vec(joints)
    if q is not None and q.shape == q_lo.shape and bool(np.all(np.isfinite(q))):
        allow_q = np.maximum(np.maximum(q - q_hi, q_lo - q), 0.0)
    return allow_ee, allow_q


def _fk_allowance(
    zones: Zones, fk: FK, joints: Any, shape: tuple[int, ...], allow_fk: np.ndarray
) -> np.ndarray:
    """Penetrations of a seed's joints through ``fk``; unchanged if it gives no joints, zero
    (strict, as the shield) if the FK fails on them."""
    q = _vec(joints)
    if q is None or q.shape != shape or not bool(np.all(np.isfinite(q))):
        return allow_fk
    pose = _fk_pose(fk, q)
    return _pose_penetration(zones, *pose) if pose is not None else np.zeros_like(allow_fk)


def _check_fk(
    i: int, zones: Zones, fk: FK, joints: np.ndarray, allow_fk: np.ndarray
) -> tuple[list[Violation], np.ndarray]:
    """A joint command's FK pose against the allowed depths; the new allowance."""
    pose = _fk_pose(fk, joints)
    if pose is None:
        return [
            Violation(i, "workspace", math.nan, 0.0, "the forward kinematics failed on a command")
        ], allow_fk
    pen = _pose_penetration(zones, *pose)
    what = f"joint command {joints.tolist()} puts the end effector at {pose[0].tolist()} {_q(pose[1])},"
    return _zone_violation(i, pen, allow_fk, what, zones), pen


def _pose_penetration(zones: Zones, p: np.ndarray, quat: np.ndarray | None) -> np.ndarray:
    """``Zones.penetration`` of the TCP, then ``Zones.tool_penetration`` of the tool at the pose;
    a quaternion that is missing or not a finite non-zero 4-vector puts the tool infinitely deep
    (a tool whose pose is not known is not known to be out) when the tool has points."""
    n = len(zones.keep_out)
    tool = np.zeros(1 + n)
    if zones.has_tool:
        if quat is None or quat.shape != (4,) or not bool(np.all(np.isfinite(quat))) or not quat.any():
            tool = np.full(1 + n, math.inf)
        else:
            tool = zones.tool_penetration(p, quat)
    return np.concatenate([zones.penetration(p), tool])


def _q(quat: np.ndarray | None) -> str:
    return "" if quat is None else f"(quaternion {np.asarray(quat).tolist()})"


def _zone_violation(i: int, pen: np.ndarray, allow: np.ndarray, what: str, zones: Zones) -> list[Violation]:
    """A ``workspace`` / ``keep_out`` violation where a penetration (m; per workspace axis, per
    grown zone, then the tool's below the floor and per grown zone) is deeper than allowed,
    naming ``what`` went in; [] if none is."""
    k = int(np.argmax(pen - allow))
    if pen[k] <= allow[k] + 1e-9:
        return []
    n = len(zones.keep_out)
    if k < 3:
        kind, where = "workspace", "the workspace"
    elif k < 3 + n:
        kind, where = "keep_out", f"keep_out[{k - 3}] (grown by the margin)"
    elif k == 3 + n:
        kind, where = "workspace", "the workspace floor (a tool point)"
    else:
        kind, where = "keep_out", f"keep_out[{k - 4 - n}] (grown by the margin; a tool point)"
    return [
        Violation(
            i,
            kind,
            float(pen[k]),
            float(allow[k]),
            f"{what} {pen[k] * 1000:.4f} mm outside {where}, the previous command {allow[k] * 1000:.4f} mm",
        )
    ]


def _fk_pose(fk: FK, q: np.ndarray) -> tuple[np.ndarray, np.ndarray | None] | None:
    try:
        pose = fk(q)
        p = np.asarray(pose.position, dtype=float)
        quat = np.asarray(pose.quaternion, dtype=float)
    except Exception:  # a failing FK is reported, not raised
        return None
    return (p, quat) if p.shape == (3,) and bool(np.all(np.isfinite(p))) else None


class _Chain:
    """Finite differences of one group along a run of non-hold steps."""

    def __init__(self, vmax: Any, amax: Any, jmax: Any) -> None:
        self.limits = (vmax, amax, jmax)
        self.restart(None)

    def restart(self, x: np.ndarray | None, *, rotation: bool = False) -> None:
        """After a hold (``x`` given) the arm is at rest there; with None nothing is known."""
        self.x = None if x is None else (quat_normalize(x) if rotation else x)
        zero = None if x is None else np.zeros(3 if rotation else x.shape)
        self.v: np.ndarray | None = zero
        self.a: np.ndarray | None = zero
        self.scale = 1.0 if x is None else max(1.0, float(np.max(np.abs(x))))

    def advance(
        self, i: int, name: str, x: np.ndarray | None, dt: float, rel_tol: float, *, rotation: bool
    ) -> list[Violation]:
        if x is None:
            self.restart(None)
            return []
        if rotation:
            x = quat_normalize(x)
        if self.x is None or self.x.shape != x.shape:
            self.restart(None)
            self.x = x
            self.scale = max(1.0, float(np.max(np.abs(x))))
            return []
        v = quat_to_rotvec(quat_multiply(x, quat_conjugate(self.x))) / dt if rotation else (x - self.x) / dt
        a = None if self.v is None else (v - self.v) / dt
        jerk = None if a is None or self.a is None else (a - self.a) / dt
        self.scale = max(self.scale, float(np.max(np.abs(x))))
        found = []
        for order, (label, value) in enumerate(
            (("velocity", v), ("acceleration", a), ("jerk", jerk)), start=1
        ):
            if value is None:
                continue
            limit = self.limits[order - 1]
            # Round-off of differencing float64 coordinates: a few ulps per difference, / dt^k.
            slack = (2**order) * 4 * _EPS * self.scale / dt**order
            if np.ndim(limit) == 0:
                mag = float(np.linalg.norm(value))
                if mag > float(limit) * (1 + rel_tol) + slack:
                    found.append(
                        Violation(
                            i,
                            label,
                            mag,
                            float(limit),
                            f"{name} {label} {mag:.9g} > limit {float(limit):.9g}",
                        )
                    )
            else:
                over = np.abs(value) - np.asarray(limit) * (1 + rel_tol) - slack
                k = int(np.argmax(over))
                if over[k] > 0:
                    found.append(
                        Violation(
                            i,
                            label,
                            float(abs(value[k])),
                            float(limit[k]),
                            f"{name}[{k}] {label} {abs(value[k]):.9g} > limit {float(limit[k]):.9g}",
                        )
                    )
        self.x, self.v, self.a = x, v, a
        return found


def _records(steps: Iterable[StepRecord | Mapping[str, Any]]) -> Iterator[StepRecord]:
    for step in steps:
        yield step if isinstance(step, StepRecord) else StepRecord.from_json(step)


def _command(
    target: Target | None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, float | None]:
    """A command's end-effector position, quaternion, joints and gripper (None: not given)."""
    if target is None:
        return None, None, None, None
    pos = quat = None
    if target.ee is not None:
        pos, quat = _vec(target.ee.position), _vec(target.ee.quaternion)
    return pos, quat, _vec(target.joints), None if target.gripper is None else float(target.gripper)


def _vec(x: Any) -> np.ndarray | None:
    return None if x is None else np.asarray(x, dtype=float)


def _config(limits: SafetyConfig | Mapping[str, Any]) -> SafetyConfig:
    if isinstance(limits, SafetyConfig):
        return limits
    data: Mapping[str, Any] | Sequence[Any] = (
        limits.get("config", limits) if isinstance(limits, Mapping) else limits
    )
    if (
        isinstance(limits, Mapping)
        and "config" in limits
        and isinstance(data, Mapping)
        and "tool" not in data
    ):
        # A limits report written before safety.tool existed: that shield bounded the TCP only.
        data = {**data, "tool": {"points": []}}
    return SafetyConfig.from_mapping(data)  # type: ignore[arg-type]

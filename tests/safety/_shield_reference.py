# safety/shield.py as of 22fbb8f (before the compiled end-effector kernels), kept verbatim as the oracle of
# test_shield_reference.py, on the numpy motion filter (_motion_reference) and zones of that revision: do not edit,
# except for a fix made to safety/shield.py as well (one so far: _escape_step stops a command that is out of its
# zone until braking fits in a box that excludes the zones; it aimed at the target and could go back in).
"""The shield: every target passes here before it reaches a driver, and nothing gets past it.

Called by the agent's control task once per tick with the target for *now*, the measured state
and the tick's real ``dt``. It trusts nothing in the target (the server, the network and the
policy may all be wrong) and answers with a :class:`~safety.types.Decision`: the safe target,
whether to hold, whether the e-stop is latched, and which rules fired.

Order of the rules, cheapest refusals first: e-stop, missing, stale, malformed, non-finite; then
the target is made allowed (workspace and keep-out, tilt, joint limits and soft zone, tracking
bound); then the motion filter (:mod:`safety.motion`) moves the last command toward it within
the velocity, acceleration and jerk limits while staying able to brake inside the allowed
set; then the joint check of end-effector commands (through an injected IK), the zone check of
joint commands (through an injected FK) and the gripper.
A hold reseeds the filter at the measured state, so leaving a hold never jumps.

Commands keep ``keep_out_margin_m`` away from every keep-out zone, so the arm's tracking error
does not carry it in; an arm measured inside a zone anyway is reported (``keep_out`` and a
warning). A seed outside the allowed set (the arm strayed into a zone, out of the workspace or
past a joint's margin band, and a hold restarted there) is left monotonically: each axis may
only move out (a ratchet in the motion filter), toward the nearest way out at the rate limits,
whatever the target; once out, the filter's box excludes the zone again (issue 10, kind 8).
A joint command is checked the same way through the arm's forward kinematics, when given: its
end-effector position must be in the workspace and out of every grown zone, or, from a seed
outside them, no deeper than the command before (else a hold); without FK the joint path is
checked against the joint band only (the agent refuses joint policies with keep-out zones then).
Orientations are compared and differenced as rotations, whatever their sign or representative
(issue 10, kind 5).

The tool (``safety.tool``): its points, placed by a command's pose, stay at or above the
workspace floor and out of every grown zone, for end-effector commands and (through the FK)
joint commands alike. An end-effector target is first moved so that its tool is out at its own
orientation and at the last command's (clamp mode; in reject mode a target whose tool is in
is held); the motion filter's floor for the TCP is raised by how far the tool reaches below it
at either orientation, whatever the rotation about the vertical (as far as braking from the
current state allows); and every command is checked last: no tool point deeper than the
command before it (after a seed: than the seed's), else a hold (``workspace`` for the floor,
``keep_out`` for a zone). From a seed with the tool in (the arm tilted into the floor's band),
commands thus only bring it out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from safety.config import SafetyConfig, tool_tilt
from safety.estop import EStop
from safety.rotations import (
    quat_conjugate,
    quat_multiply,
    quat_nearest,
    quat_normalize,
    quat_slerp,
    quat_to_matrix,
    quat_to_rotvec,
    rotvec_to_quat,
)
from safety.types import Decision, Measured, Pose, Target

from ._motion_reference import Axes, StepResult, _stop1, stop_distance
from ._zones_reference import Zones

__all__ = ["ESTOP_COUNTED_KINDS", "FK", "IK", "SAFETY_RULE_KINDS", "Shield"]

#: Every value ``Decision.fired`` may hold (a closed set: the agent uses them as metric labels).
SAFETY_RULE_KINDS: tuple[str, ...] = (
    "estop",  # the latched e-stop is active
    "no_target",  # nothing to execute (hold)
    "stale",  # target older than stale_after_s (hold)
    "stall",  # the tick's dt exceeds max_dt_s: the loop stalled (hold, restart from the arm)
    "invalid",  # malformed: wrong shape, both or neither of ee/joints, zero quaternion, bad dt
    "non_finite",  # NaN or inf anywhere (hold)
    "workspace",  # outside the workspace box: clamped, or held in reject mode
    "keep_out",  # inside a keep-out zone, or motion routed around one
    "tilt",  # tool axis tilted beyond max_tilt_rad: clamped
    "joint_limit",  # joint target clamped to the margin band or slowed in the soft zone; IK pose beyond it
    "ik",  # the IK found no joints for an end-effector command (hold)
    "tracking",  # target or command too far from the measured state
    "velocity",
    "acceleration",
    "jerk",
    "gripper",  # gripper command clamped to its range or rate
)

#: A hold caused by one of these kinds counts toward ``estop_after_interventions``: that many
#: consecutive refused targets latch the e-stop. Clamps and rate limiting (the shield doing its
#: normal job on a coarse policy) and watchdog holds (no target, stale) never count.
ESTOP_COUNTED_KINDS: frozenset[str] = frozenset(
    {"invalid", "non_finite", "workspace", "keep_out", "tilt", "joint_limit", "ik", "tracking"}
)

IK = Callable[[Pose, np.ndarray], "np.ndarray | None"]
"""``ik(pose, q_seed) -> joints | None``: joint positions reaching ``pose``, near ``q_seed``."""

FK = Callable[[np.ndarray], Pose]
"""``fk(joints) -> Pose``: the end-effector pose (the frame the workspace and the keep-out zones
bound) at joint positions ``joints`` (radians, shape ``(dof,)``)."""

logger = logging.getLogger(__name__)

_SQRT3 = math.sqrt(3.0)
_INF3 = np.full(3, np.inf)
_NO3 = np.zeros(3, dtype=bool)
_UNIT_QUAT = np.array([0.0, 0.0, 0.0, 1.0])


class Shield:
    """Filters targets against a :class:`SafetyConfig`; one instance per arm, not thread-safe.

    Example::

        shield = Shield(SafetyConfig.from_mapping(cfg["safety"]), ik=my_ik)
        shield.reset(measured)                     # at start, and after an e-stop reset
        decision = shield.filter(target, measured, now_s, dt_s)   # every control tick
    """

    def __init__(
        self,
        config: SafetyConfig,
        *,
        ik: IK | None = None,
        fk: FK | None = None,
        estop: EStop | None = None,
    ) -> None:
        self.config = config
        self.estop = estop if estop is not None else EStop()
        self._ik = ik
        self._fk = fk
        # The FK penetration (Zones.penetration) of the last joint command: the next may be no
        # deeper. None after a seed: then computed from the seed's joints (_fk_seed) when needed.
        self._fk_pen: np.ndarray | None = None
        self._fk_seed: np.ndarray | None = None
        self._fk_pen_zero = False  # whether _fk_pen is all zeros (then a cheaper check will do)
        # The tilt a joint command's tool may have (rad): max_tilt_rad, or more while the last
        # command (after a seed: the seed) was tilted beyond it; None after a seed, until needed.
        self._fk_tilt_bound: float | None = None
        self._fk_memo: tuple[np.ndarray, Pose] | None = None  # (q, fk(q)) within one joint command
        self._zones = Zones(
            config.workspace, config.keep_out, config.keep_out_margin_m, config.tool.as_array()
        )
        # The tool's depths (Zones.tool_penetration) of the last end-effector command: the next
        # may be no deeper. None after a seed: then the seed pose's (_tool_seed).
        self._tool_pen: np.ndarray | None = None
        self._tool_pen_zero = False  # whether _tool_pen is known to be all zeros
        self._tool_seed: Pose | None = None
        t, r, j = config.translation, config.rotation, config.joints
        # Per-axis limits at norm / sqrt(3): the norm of the 3-vector then never exceeds the limit.
        # One 6-axis group, translation then rotation, so each tick is one vectorised step.
        self._ee = Axes(
            *(
                np.concatenate([np.full(3, x / _SQRT3), np.full(3, y / _SQRT3)])
                for x, y in (
                    (t.max_velocity, r.max_velocity),
                    (t.max_acceleration, r.max_acceleration),
                    (t.max_jerk, r.max_jerk),
                )
            )
        )
        self._joints = Axes(
            np.asarray(j.max_velocity), np.asarray(j.max_acceleration), np.asarray(j.max_jerk)
        )
        self._q_lo = np.asarray(j.min, dtype=float) + j.margin_rad
        self._q_hi = np.asarray(j.max, dtype=float) - j.margin_rad
        self._q_lo_list, self._q_hi_list = self._q_lo.tolist(), self._q_hi.tolist()
        # Joint speed allowed to an end-effector command's IK solution.
        self._joint_step = np.asarray(j.max_velocity, dtype=float) * j.ik_velocity_factor
        self._ik_q: np.ndarray | None = None
        self._nominal_z = quat_to_matrix(np.asarray(config.orientation.nominal_quaternion))[:, 2]
        self._quat = np.array([0.0, 0.0, 0.0, 1.0])
        # How far ahead along a long turn the rotation aims: twice the braking distance from
        # full speed, at least 0.2 rad.
        self._rot_lookahead = max(
            0.2,
            2.0
            * float(
                stop_distance(self._ee.vmax[3:4], np.zeros(1), self._ee.amax[3:4], self._ee.jmax[3:4])[0]
            ),
        )
        # The farthest the filter can travel braking along z, from any state it can be in.
        self._worst_stop_z = float(
            stop_distance(self._ee.vmax[2:3], self._ee.amax[2:3], self._ee.amax[2:3], self._ee.jmax[2:3])[0]
        )
        self._tool_buf = np.zeros(1 + len(self._zones.keep_out))
        self._set_box(self._zones.lo, self._zones.hi)
        self._mode: str | None = None  # "ee" or "joints" once seeded
        self._gripper: float | None = None
        self._consecutive = 0
        self._prev_aim: np.ndarray | None = None
        self._prev_quat: np.ndarray | None = None
        self._prev_q: np.ndarray | None = None
        # Ratchets (up_only, down_only) while a command is outside the allowed set: it was
        # seeded there (the arm had strayed in), and may only move out. None once out.
        self._escape_ee: tuple[np.ndarray, np.ndarray] | None = None
        self._escape_joints: tuple[np.ndarray, np.ndarray] | None = None
        self._arm_in_zone: int | None = None  # the zone the measured arm is in, for one warning

    # --- public -----------------------------------------------------------------------------

    def reset(self, measured: Measured) -> None:
        """Seed the filter at rest at the measured state (at start, when leaving a hold, after an
        e-stop reset). The count of consecutive refused targets survives it: a caller that resets
        on every hold must not keep a refusing policy from ever reaching the e-stop. A measured
        state inside a (grown) keep-out zone, outside the workspace or past a joint's margin
        band is left monotonically: no command goes deeper than the one before."""
        self._seed(measured)

    def limits_report(self) -> dict[str, Any]:
        """The effective limits, JSON-serialisable: what a recording stores beside its steps."""
        return {
            "format": "vla-deploy/safety-limits/1",
            "config": self.config.to_dict(),
            "rule_kinds": list(SAFETY_RULE_KINDS),
            "estop_counted_kinds": sorted(ESTOP_COUNTED_KINDS),
            "enforced": {
                "translation_per_axis": [float(x[0]) for x in (self._ee.vmax, self._ee.amax, self._ee.jmax)],
                "rotation_per_axis": [float(x[3]) for x in (self._ee.vmax, self._ee.amax, self._ee.jmax)],
                "joint_band": [self._q_lo.tolist(), self._q_hi.tolist()],
            },
        }

    def filter(self, target: Target | None, measured: Measured, now_s: float, dt_s: float) -> Decision:
        """The safe command for this tick. Never raises on a bad target: bad input is a hold."""
        if not _measured_ok(measured):
            # Without a trustworthy state there is nothing safe to hold at: stop.
            self.estop.trigger("measured robot state is not finite")
            return Decision(target=None, hold=True, estop=True, fired=("non_finite", "estop"))
        if self.estop.active:
            return self._hold(measured, now_s, ("estop",), estop=True)
        if not (math.isfinite(dt_s) and dt_s > 0):
            return self._count(self._hold(measured, now_s, ("invalid",)), measured, now_s)
        if dt_s > self.config.max_dt_s:
            return self._hold(measured, now_s, ("stall",))
        if target is None:
            return self._hold(measured, now_s, ("no_target",))
        try:
            t_s = float(target.time_s)
        except (TypeError, ValueError):
            return self._count(self._hold(measured, now_s, ("invalid",)), measured, now_s)
        if not math.isfinite(t_s):
            return self._count(self._hold(measured, now_s, ("non_finite",)), measured, now_s)
        if now_s - t_s > self.config.stale_after_s:
            return self._hold(measured, now_s, ("stale",))
        bad = _malformed(target, self._joints.vmax.size)
        if bad is not None:
            return self._count(self._hold(measured, now_s, (bad,)), measured, now_s)

        mode = "ee" if target.ee is not None else "joints"
        if self._mode != mode:
            self._seed(measured, mode)
        fired: list[str] = []
        out: tuple[Pose | None, np.ndarray | None] | None
        if mode == "ee":
            out = self._filter_ee(target, measured, dt_s, fired)
        else:
            out = self._filter_joints(target, measured, dt_s, fired)
        if out is None:
            return self._count(self._hold(measured, now_s, tuple(dict.fromkeys(fired))), measured, now_s)
        ee, joints = out
        gripper = self._filter_gripper(target.gripper, measured, dt_s, fired)
        safe = Target(time_s=now_s, ee=ee, joints=joints, gripper=gripper)
        return self._count(Decision(target=safe, fired=tuple(dict.fromkeys(fired))), measured, now_s)

    # --- end effector -----------------------------------------------------------------------

    def _filter_ee(
        self, target: Target, measured: Measured, dt: float, fired: list[str]
    ) -> tuple[Pose, None] | None:
        cfg = self.config
        assert target.ee is not None
        pos = np.asarray(target.ee.position, dtype=float)
        # q and -q are one orientation: take the one nearest the last command, so a target
        # whose sign flips (a rotation vector crossing +-pi gives -q) changes nothing below.
        quat = quat_normalize(target.ee.quaternion)
        if float(quat.dot(self._quat)) <= 0.0:  # rarely: only then pay for the call
            quat = quat_nearest(quat, self._quat)
        m_pos = np.asarray(measured.ee.position, dtype=float)
        m_quat = np.asarray(measured.ee.quaternion, dtype=float)
        if self._zones.raw_keep_out:
            self._check_arm_in_zone(m_pos, fired)

        # The last command must still be near the arm: if not, the arm is blocked or lagging.
        track = cfg.tracking
        if (
            _dist(self._ee.p[:3], m_pos) > track.max_translation_m
            or _angle(self._quat, m_quat) > track.max_rotation_rad
        ):
            fired.append("tracking")
            return None

        kind = self._zones.violation(pos)
        if kind is not None:
            fired.append(kind)
            projected = None if cfg.on_workspace_violation == "reject" else self._zones.project(pos)
            if projected is None:
                if self._escape_ee is None:
                    return None
                # Leaving a zone the arm was seeded in does not depend on the target: go on out.
                projected = self._ee.p[:3].copy()
            pos = projected

        max_tilt = cfg.orientation.max_tilt_rad
        if max_tilt is not None:
            tilt = tool_tilt(np.asarray(cfg.orientation.nominal_quaternion), quat)
            if tilt > max_tilt:
                fired.append("tilt")
                quat = self._untilt(quat, tilt, max_tilt)

        zones = self._zones
        tool_floor = -math.inf
        if not (zones.tool_clear(pos.tolist()) and zones.tool_clear(self._ee.p[:3].tolist())):
            k_target, k_last, tool_floor = zones.tool_tick(pos, quat, self._quat)
            if k_target >= 0 or k_last >= 0:
                moved = self._tool_target(pos, quat, k_target, fired)
                if moved is None:
                    return None
                pos = moved

        # The allowed target before the clamps that depend on the arm and the filter (tracking,
        # box): its motion is the target's own, which the filter may follow (see below).
        prev_aim, prev_quat = self._prev_aim, self._prev_quat
        self._prev_aim, self._prev_quat = pos, quat
        pos_free, quat_free = pos, quat

        step = pos - m_pos
        dist = math.sqrt(float(step.dot(step)))
        angle = _angle(m_quat, quat)
        if dist > track.max_translation_m or angle > track.max_rotation_rad:
            fired.append("tracking")
            if track.on_violation == "hold":
                return None
            if dist > track.max_translation_m:
                pos = m_pos + step * (track.max_translation_m / dist)
            if angle > track.max_rotation_rad:
                quat = quat_nearest(quat_slerp(m_quat, quat, track.max_rotation_rad / angle), self._quat)
                if max_tilt is not None:  # the way from the arm to the target may leave the cone
                    tilt = tool_tilt(np.asarray(cfg.orientation.nominal_quaternion), quat)
                    if tilt > max_tilt:
                        fired.append("tilt")
                        quat = self._untilt(quat, tilt, max_tilt)

        # Translation moves within a box that is wholly allowed (workspace minus keep-out);
        # rotation in coordinates of the last command (world-frame rotation vectors, no walls).
        ee = self._ee
        lo, hi = self._box
        direction = None
        if self._escape_ee is not None:
            escaping = self._escape_step(pos, fired)
            lo, hi = self._box
            if escaping is not None:
                direction, pos = escaping
        # Leaving the zone it was seeded in (direction set), the box stays as seeded until out.
        inside = direction is None and all(
            a <= x <= b for a, x, b in zip(lo.tolist(), pos.tolist(), hi.tolist(), strict=True)
        )
        if direction is None and not inside:
            # The target is beyond the current box: look for a larger one around here. Taken
            # only if braking from the current state stays inside it, so the filter stays viable.
            cand_lo, cand_hi = self._zones.free_box(ee.p[:3], pos)
            if cand_lo is not lo and not (bool((cand_lo == lo).all()) and bool((cand_hi == hi).all())):
                down, up = ee.envelope()
                if bool((down[:3] >= cand_lo).all() and (up[:3] <= cand_hi).all()):
                    self._set_box(cand_lo, cand_hi)
                    lo, hi = self._box
        lo6 = self._lo6
        if tool_floor > -math.inf:
            # The TCP's floor for the tool at either orientation, whatever the turn about the
            # vertical between them; raised only as far as braking from here stays above it.
            floor = tool_floor
            if floor > lo[2]:
                z = float(ee.p[2])
                if z - self._worst_stop_z < floor:  # else braking stays above it
                    # Where braking down from here may reach (Axes.envelope's, on z alone).
                    low = z - float(
                        _stop1(-float(ee.v[2]), -float(ee.a[2]), float(ee.amax[2]), float(ee.jmax[2]))
                    )
                    floor = min(floor, low)
                if floor > lo[2]:
                    lo = lo.copy()
                    lo[2] = floor
                    lo6 = lo6.copy()
                    lo6[2] = floor
                    if inside and pos[2] < floor:
                        inside = False
        # Inside the box the clamp would give pos itself, value for value.
        aim = pos if inside else np.minimum(np.maximum(pos, lo), hi)
        if not inside and bool((aim != pos).any()) and direction is None:
            fired.append("keep_out" if self.config.keep_out else "workspace")
        ee.p[3:] = 0.0
        err = err_full = quat_to_rotvec(quat_multiply(quat, quat_conjugate(self._quat)))
        turn = math.sqrt(float(err.dot(err)))
        if turn > self._rot_lookahead:
            # Aim along the geodesic, a little ahead: the filter moves each axis on its own, and
            # a partial step on the large axis of a large rotation with full steps on the small
            # ones is not a step along it (rotations do not commute): over a long turn the error
            # on the small axes grew tick after tick (a 3 rad turn about the vertical tilted the
            # tool 0.02 rad off its cone). Ahead by more than the braking distance, so the
            # filter does not slow down for it.
            err = err * (self._rot_lookahead / turn)

        def target_velocity() -> np.ndarray:
            # How fast the allowed target moves, from the last two: lets the filter rejoin a
            # moving target rather than trail it by a braking distance. Only a hint for the aim.
            if prev_aim is None or prev_quat is None:
                return np.zeros(6)
            turn = quat_to_rotvec(quat_multiply(quat_free, quat_conjugate(prev_quat)))
            return np.concatenate([pos_free - prev_aim, turn]) / dt

        ratchet = None
        if direction is not None:
            up, down = direction
            ratchet = (np.concatenate([up, _NO3]), np.concatenate([down, _NO3]))
        x_new, res = ee.step(np.concatenate([aim, err]), dt, lo6, self._hi6, target_velocity, ratchet)
        _record(res, fired, "workspace")
        p_new = x_new[:3]
        if not res.changed or bool(res.direct[3:].all()):
            q_new = quat
            turned = err_full  # what the line below would compute again for q_new = quat
        else:
            q_new = quat_normalize(quat_multiply(rotvec_to_quat(x_new[3:]), self._quat))
            turned = quat_to_rotvec(quat_multiply(q_new, quat_conjugate(self._quat)))
        if self._tool_pen_zero and zones.tool_clear(p_new.tolist()):
            pass  # far from the floor and every zone: every depth stays zero
        elif zones.has_tool:
            kind = self._tool_check(p_new, q_new)
            if kind is not None:  # a turn the translation could not rise for in time
                fired.append(kind)
                return None
        # Commit what a recording will see: the increment between the quaternions sent.
        ee.commit(np.concatenate([p_new, turned]), dt)
        self._quat = q_new
        pose = Pose(position=p_new, quaternion=q_new)

        # Joint limits of an end-effector command. With IK (predictive): refuse a command whose
        # joints leave the margin band, or go deeper into it when the arm is already there, so a
        # policy can always back out. Without IK only the measured joints are known: the arm is
        # already in the band, and any command may make it worse, so hold (the e-stop follows).
        m_q = np.asarray(measured.joints, dtype=float)
        if self._ik is not None:
            # Seeded like a driver seeds its own IK: at the joints of the last command (the same
            # branch), or at the measured joints after a hold.
            base = self._ik_q if self._ik_q is not None else m_q
            # Compared with the last command's joints (not the arm's, which lag behind them):
            # tick to tick, no joint goes deeper past its margin band, and once inside it never
            # leaves it again.
            m_pen = self._penetration(base)
            try:
                q = self._ik(pose, base)
            except Exception:  # a solver that raises is a solver that found nothing
                logger.debug("IK raised for %s", pose, exc_info=True)
                q = None
            if q is None or not _finite(q) or np.shape(q) != m_q.shape:
                fired.append("ik")
                return None
            q = np.asarray(q, dtype=float)
            if bool((self._penetration(q) > m_pen + 1e-9).any()):
                fired.append("joint_limit")
                return None
            # A slow end-effector motion near a singularity can need fast joints: an arm that
            # cannot follow them lags along a joint path that strays in Cartesian space (out of
            # the workspace). Hold instead (joints.ik_velocity_factor).
            if bool((np.abs(q - base) > self._joint_step * dt).any()):
                fired.append("velocity")
                return None
            self._ik_q = q
        elif m_q.shape == self._q_lo.shape and any(
            # _penetration(m_q) > 0 on some joint, in plain floats
            x < q_lo or x > q_hi
            for x, q_lo, q_hi in zip(m_q.tolist(), self._q_lo_list, self._q_hi_list, strict=True)
        ):
            fired.append("joint_limit")
            return None
        return pose, None

    def _tool_target(
        self, pos: np.ndarray, quat: np.ndarray, k_target: int, fired: list[str]
    ) -> np.ndarray | None:
        """``pos`` moved so that the tool is out at the target's orientation ``quat`` and at the
        last command's (clamp mode; at ``quat`` alone if no point suits both); None (hold) if
        the tool is in at ``quat`` (``k_target`` >= 0, as Zones.tool_tick) and reject mode or no
        position can take it out."""
        zones = self._zones
        kind = None if k_target < 0 else ("workspace" if k_target == 0 else "keep_out")
        if kind is not None:
            fired.append(kind)
            if self.config.on_workspace_violation == "reject":
                return None
        moved = zones.project_tool(pos, (quat, self._quat))
        if moved is None:
            moved = zones.project_tool(pos, (quat,))
        if moved is None:
            if kind is None:
                return pos
            fired.append(kind)
            return None
        if kind is None and bool((moved != pos).any()):
            fired.append(zones.tool_violation(pos, self._quat) or "workspace")
        return moved

    def _tool_check(self, p: np.ndarray, quat: np.ndarray) -> str | None:
        """``"workspace"`` (a tool point below the floor) or ``"keep_out"`` if the command pose
        ``(p, quat)`` puts a tool point deeper than the command before it (after a seed: than
        the seed's pose); None if allowed, and then its depths become the next bound."""
        zones = self._zones
        if self._tool_pen is None:
            seed = self._tool_seed
            self._tool_pen = (
                zones.tool_penetration(np.asarray(seed.position, dtype=float), np.asarray(seed.quaternion))
                if seed is not None
                else np.zeros(1 + len(zones.keep_out))
            )
        k = zones.tool_over(p, quat, self._tool_pen, self._tool_buf)
        if k >= 0:
            return "workspace" if k == 0 else "keep_out"
        self._tool_pen, self._tool_buf = self._tool_buf, self._tool_pen
        self._tool_pen_zero = not bool(self._tool_pen.any())
        return None

    def _penetration(self, q: np.ndarray) -> np.ndarray:
        """How far each joint is outside the margin band (0 inside); zeros if the shape is off."""
        if q.shape != self._q_lo.shape:
            return np.zeros(self._q_lo.shape)
        out: np.ndarray = np.maximum(np.maximum(self._q_lo - q, q - self._q_hi), 0.0)
        return out

    def _set_box(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """The translation box the motion filter keeps to; rotation axes have no walls."""
        self._box = (lo, hi)
        self._lo6 = np.concatenate([lo, -_INF3])
        self._hi6 = np.concatenate([hi, _INF3])

    def _escape_step(
        self, pos: np.ndarray, fired: list[str]
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray] | None:
        """While the last command is outside the allowed set: the ratchet and the aim (the way
        out); None once it is out and a box that excludes every zone is taken (then never in
        again). Called only after a seed outside the allowed set, so it costs nothing otherwise.
        """
        assert self._escape_ee is not None
        ee = self._ee
        p = ee.p[:3]
        esc = self._zones.escape(p)
        up, down = self._escape_ee
        if esc is None:
            # Out: take the box around here that excludes every zone, once braking stays in it
            # (at once in practice: a ratcheted axis never brakes backwards).
            cand_lo, cand_hi = self._zones.free_box(p, pos)
            low, high = ee.envelope()
            if bool((low[:3] >= cand_lo).all() and (high[:3] <= cand_hi).all()):
                self._set_box(cand_lo, cand_hi)
                self._escape_ee = None
                return None
            # The one change since 22fbb8f (a fix, made in safety/shield.py too): out, but
            # braking not yet inside a box that excludes the zones, stop here on the ratchet.
            aim = p
        else:
            # A ratchet is only ever relaxed (a zone left stays left: the box excludes it).
            up, down = up & esc[0], down & esc[1]
            self._escape_ee = (up, down)
            aim = esc[2]
            fired.append(self._zones.violation(p) or "keep_out")
        aim = np.where(up, np.maximum(aim, p), aim)
        aim = np.where(down, np.minimum(aim, p), aim)
        return (up, down), aim

    def _check_arm_in_zone(self, m_pos: np.ndarray, fired: list[str]) -> None:
        """The margin's check: the measured arm inside a configured zone strayed further than
        ``keep_out_margin_m`` from commands that kept out of the grown zone. Reported as
        ``keep_out``, with one warning per entry."""
        hit = self._zones.arm_inside(m_pos)
        if hit is None:
            self._arm_in_zone = None
            return
        fired.append("keep_out")
        i, depth = hit
        if self._arm_in_zone != i:
            zone = self._zones.raw_keep_out[i]
            logger.warning(
                "The arm is %.1f mm inside safety.keep_out[%d] (%s %r): its tracking error exceeds "
                "safety.keep_out_margin_m=%g; commands only move it out",
                depth * 1000,
                i,
                zone.kind,
                zone.name,
                self.config.keep_out_margin_m,
            )
        self._arm_in_zone = i

    def _untilt(self, quat: np.ndarray, tilt: float, max_tilt: float) -> np.ndarray:
        """Rotate the tool axis back onto the cone of half-angle ``max_tilt`` (shortest way)."""
        z = quat_to_matrix(quat)[:, 2]
        axis = np.cross(z, self._nominal_z)
        n = float(np.linalg.norm(axis))
        if n < 1e-12:  # pointing exactly away from nominal: any perpendicular axis will do
            helper = np.array([1.0, 0.0, 0.0]) if abs(self._nominal_z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
            axis = np.cross(self._nominal_z, helper)
            n = float(np.linalg.norm(axis))
        return quat_normalize(quat_multiply(rotvec_to_quat(axis / n * (tilt - max_tilt)), quat))

    # --- joints -----------------------------------------------------------------------------

    def _filter_joints(
        self, target: Target, measured: Measured, dt: float, fired: list[str]
    ) -> tuple[None, np.ndarray] | None:
        cfg = self.config
        assert target.joints is not None
        q = np.asarray(target.joints, dtype=float)
        m_q = np.asarray(measured.joints, dtype=float)
        jt = self._joints
        track = cfg.tracking
        # Per joint in plain floats, the same operations as the numpy expressions they replaced
        # (on 7 values numpy's per-call cost was most of the work; bench/shield_cost.py).
        p_l, m_l = jt.p.tolist(), m_q.tolist()
        if max(abs(a - b) for a, b in zip(p_l, m_l, strict=True)) > track.max_joint_rad:
            fired.append("tracking")
            return None

        lo, hi = self._q_lo, self._q_hi
        soft = cfg.joints.soft_zone_rad
        free: list[float] = []  # clamped into the band
        out: list[float] = []  # and slowed in the soft zone
        worst = 0.0  # max |out - measured|
        for x, p_j, m_j, lo_j, hi_j in zip(
            q.tolist(), p_l, m_l, self._q_lo_list, self._q_hi_list, strict=True
        ):
            c = min(max(x, lo_j), hi_j)
            free.append(c)
            # Soft zone: near a limit, motion toward it is scaled by the fraction of the zone left.
            if soft > 0:
                scale = min(max(((hi_j - p_j) if c > p_j else (p_j - lo_j)) / soft, 0.0), 1.0)
                if scale < 1.0:
                    c = p_j + (c - p_j) * scale
            out.append(c)
            worst = max(worst, abs(c - m_j))
        # The target's own motion (before the soft zone, which depends on the filter's state).
        prev_q, q_free = self._prev_q, np.array(free)
        self._prev_q = q_free
        if out != q.tolist():
            fired.append("joint_limit")
            q = np.array(out)

        if worst > track.max_joint_rad:
            off = q - m_q
            fired.append("tracking")
            if track.on_violation == "hold":
                return None
            q = m_q + np.minimum(np.maximum(off, -track.max_joint_rad), track.max_joint_rad)

        ratchet = None
        if self._escape_joints is not None:
            # Seeded past a margin band: that joint only moves back, and once every joint is in
            # the band (and braking stays in it) the band's walls hold it there.
            up, down = self._escape_joints
            up, down = up & (jt.p < lo), down & (jt.p > hi)
            low, high = jt.envelope()
            if not (up.any() or down.any()) and bool((low >= lo).all() and (high <= hi).all()):
                self._escape_joints = None
            else:
                self._escape_joints = ratchet = (up, down)
        q_new, res = jt.step(
            q, dt, lo, hi, None if prev_q is None else lambda: (q_free - prev_q) / dt, ratchet
        )
        _record(res, fired, "joint_limit")
        if self._fk is not None:
            if self._zones.raw_keep_out:
                self._check_arm_in_zone(np.asarray(measured.ee.position, dtype=float), fired)
            self._fk_memo = None  # the tilt and the zone checks share one FK call of q_new
            tilt = self._fk_tilt(q_new)
            if tilt is not None and tilt > self._fk_tilt_limit() + 1e-9:
                fired.append("tilt")  # the tool's tilt is bounded for joint commands too
                self._fk_memo = None
                return None
            kind = self._fk_check(q_new)
            self._fk_memo = None
            if kind is not None:
                fired.append(kind)
                return None
            if tilt is not None:
                self._fk_tilt_bound = max(tilt, self._fk_tilt_limit_rad())
        jt.commit(q_new, dt)
        return None, q_new

    def _fk_tilt_limit_rad(self) -> float:
        limit = self.config.orientation.max_tilt_rad
        assert limit is not None
        return float(limit)

    def _fk_tilt(self, q: np.ndarray) -> float | None:
        """The tilt (rad) of the tool axis at joints ``q`` through the FK, from
        ``orientation.nominal_quaternion``; None without a tilt limit; inf if the FK fails (a
        tilt not known is not known to be allowed)."""
        if self.config.orientation.max_tilt_rad is None:
            return None
        assert self._fk is not None
        try:
            quat = np.asarray(self._fk_of(q).quaternion, dtype=float)
        except Exception:
            logger.debug("FK raised for %s", q, exc_info=True)
            return math.inf
        if quat.shape != (4,) or not _finite(quat):
            return math.inf
        return float(tool_tilt(np.asarray(self.config.orientation.nominal_quaternion), quat))

    def _fk_tilt_limit(self) -> float:
        """How tilted (rad) a joint command's tool may be: ``max_tilt_rad``, or the last allowed
        command's (after a seed: the seed's) tilt when that was beyond it, so that from a tilted
        pose joint commands only straighten the tool (as the keep-out zones' depth bound)."""
        if self._fk_tilt_bound is None:
            seed = self._fk_tilt(self._fk_seed) if self._fk_seed is not None else None
            limit = self._fk_tilt_limit_rad()
            self._fk_tilt_bound = limit if seed is None or not math.isfinite(seed) else max(limit, seed)
        return self._fk_tilt_bound

    def _fk_of(self, q: np.ndarray) -> Pose:
        """``fk(q)``, once per joint command: the tilt and the zone checks of the same array
        ``q`` share the call (raises what the FK raises)."""
        assert self._fk is not None
        memo = self._fk_memo
        if memo is not None and memo[0] is q:
            return memo[1]
        pose = self._fk(q)
        self._fk_memo = (q, pose)
        return pose

    def _fk_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The end-effector position and quaternion of joints ``q`` through the FK; None if it
        fails (the quaternion is checked only when the tool has points)."""
        assert self._fk is not None
        try:
            pose = self._fk_of(q)
            p = np.asarray(pose.position, dtype=float)
            quat = np.asarray(pose.quaternion, dtype=float) if self._zones.has_tool else _UNIT_QUAT
        except Exception:  # an FK that raises gives no position: the command cannot be checked
            logger.debug("FK raised for %s", q, exc_info=True)
            return None
        if p.shape != (3,) or not _finite(p) or quat.shape != (4,) or not _finite(quat):
            return None
        if not float(quat.dot(quat)) > 1e-12:
            return None
        return p, quat

    def _fk_penetration(self, p: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """Zones.penetration of the end effector, then (with a tool) Zones.tool_penetration."""
        pen = self._zones.penetration(p)
        if not self._zones.has_tool:
            return pen
        return np.concatenate([pen, self._zones.tool_penetration(p, quat)])

    def _fk_check(self, q: np.ndarray) -> str | None:
        """``"workspace"`` or ``"keep_out"`` if joint command ``q`` puts the end effector outside
        the workspace or inside a grown zone, or a tool point (at the FK's orientation) below
        the floor or inside a grown zone, deeper than the command before it (after a seed: than
        the seed); None if allowed, and then its depths become the next command's bound."""
        zones = self._zones
        n_zones = len(zones.keep_out)
        if self._fk_pen is None:
            seed = self._fk_pose(self._fk_seed) if self._fk_seed is not None else None
            # A seed whose FK fails allows no depth at all (strict).
            self._fk_pen = (
                self._fk_penetration(*seed)
                if seed is not None
                else np.zeros(3 + n_zones + ((1 + n_zones) if zones.has_tool else 0))
            )
            self._fk_pen_zero = not bool(self._fk_pen.any())
        pose = self._fk_pose(q)
        if pose is None:
            return "workspace"  # a position not known is not known to be inside the workspace
        p, quat = pose
        if self._fk_pen_zero and zones.violation(p) is None and zones.tool_violation(p, quat) is None:
            return None  # the common case, on plain floats: allowed, and the depths stay zero
        pen = self._fk_penetration(p, quat)
        over = pen - self._fk_pen
        k = int(np.argmax(over))
        if over[k] > 1e-9:
            # Past the workspace box (TCP), or a tool point below the floor: workspace.
            return "workspace" if k < 3 or k == 3 + n_zones else "keep_out"
        self._fk_pen = pen
        self._fk_pen_zero = not bool(pen.any())
        return None

    # --- gripper, holds, bookkeeping --------------------------------------------------------

    def _filter_gripper(
        self, g: float | None, measured: Measured, dt: float, fired: list[str]
    ) -> float | None:
        if g is None:
            return None
        lim = self.config.gripper
        out = min(max(float(g), lim.min), lim.max)
        if self._gripper is not None:
            step = lim.max_rate_per_s * dt
            out = min(max(out, self._gripper - step), self._gripper + step)
        if abs(out - g) > lim.tolerance:  # rounding (1.00000002 from float32) is no intervention
            fired.append("gripper")
        self._gripper = out
        return out

    def _hold(
        self, measured: Measured, now_s: float, fired: tuple[str, ...], *, estop: bool = False
    ) -> Decision:
        self._seed(measured, self._mode)
        ee = measured.ee if self._mode != "joints" else None
        joints = np.asarray(measured.joints, dtype=float) if self._mode == "joints" else None
        g = float(measured.gripper) if math.isfinite(measured.gripper) else None
        hold = Target(time_s=now_s, ee=ee, joints=joints, gripper=g)
        return Decision(target=hold, hold=True, estop=estop, fired=fired)

    def _count(self, decision: Decision, measured: Measured, now_s: float) -> Decision:
        """Latch the e-stop after too many consecutive severe interventions."""
        limit = self.config.estop_after_interventions
        if not decision.hold or ESTOP_COUNTED_KINDS.isdisjoint(decision.fired):
            self._consecutive = 0
            return decision
        self._consecutive += 1
        if limit and self._consecutive >= limit:
            self.estop.trigger(
                f"{self._consecutive} consecutive safety interventions (last: {', '.join(decision.fired)})"
            )
            self._consecutive = 0  # counted afresh once the operator resets the e-stop
            return self._hold(measured, now_s, (*decision.fired, "estop"), estop=True)
        return decision

    def _seed(self, measured: Measured, mode: str | None = None) -> None:
        p = np.asarray(measured.ee.position, dtype=float)
        self._ee.seed(np.concatenate([p, np.zeros(3)]))
        self._quat = quat_normalize(measured.ee.quaternion)
        self._joints.seed(np.asarray(measured.joints, dtype=float))
        self._set_box(*self._zones.free_box(p, p))
        esc = self._zones.escape(p)
        self._escape_ee = None if esc is None else (esc[0], esc[1])
        q = self._joints.p
        outside_lo, outside_hi = q < self._q_lo, q > self._q_hi
        self._escape_joints = (outside_lo, outside_hi) if (outside_lo.any() or outside_hi.any()) else None
        self._gripper = float(measured.gripper) if math.isfinite(measured.gripper) else None
        self._mode = mode
        # The last allowed targets, for their velocity; forgotten on a hold (nothing to follow).
        self._prev_aim = self._prev_quat = self._prev_q = None
        self._ik_q = None
        # The FK of the seed's joints, for the joint commands' depth bound: only when needed.
        self._fk_pen = None
        self._fk_tilt_bound = None
        self._fk_seed = self._joints.p.copy() if self._fk is not None else None
        self._tool_pen = None
        self._tool_pen_zero = False  # known only once _tool_check has computed the seed's
        self._tool_seed = measured.ee


def _record(res: StepResult, fired: list[str], position_kind: str | None) -> None:
    if not res.changed:
        return
    for flag, kind in (
        (res.velocity, "velocity"),
        (res.acceleration, "acceleration"),
        (res.jerk, "jerk"),
        (res.position, position_kind),
    ):
        if flag and kind is not None:
            fired.append(kind)


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    d = a - b
    return math.sqrt(float(d.dot(d)))


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Rotation angle between two unit quaternions (cheap form, for bounds)."""
    d = min(1.0, abs(float(a.dot(b))))
    return 2.0 * math.acos(d)


def _finite(x: Any) -> bool:
    # Plain floats: cheaper than numpy reductions on a handful of values.
    return all(map(math.isfinite, np.asarray(x, dtype=float).ravel().tolist()))


def _measured_ok(m: Measured) -> bool:
    try:
        qq = float(np.dot(m.ee.quaternion, m.ee.quaternion))
        # A finite sum of squares has finite terms: the element-wise check only when it is not.
        return (
            _finite(m.ee.position)
            and (math.isfinite(qq) or _finite(m.ee.quaternion))
            and _finite(m.joints)
            and 0.25 < qq < math.inf  # finite terms whose squares overflow: no norm to divide by
        )
    except (TypeError, ValueError):
        return False


def _malformed(t: Target, dof: int) -> str | None:
    """``invalid`` or ``non_finite`` if the target cannot be used as it is, else None."""
    if (t.ee is None) == (t.joints is None):
        return "invalid"
    try:
        if t.gripper is not None and not math.isfinite(float(t.gripper)):
            return "non_finite"
        if t.ee is not None:
            p = np.asarray(t.ee.position, dtype=float)
            q = np.asarray(t.ee.quaternion, dtype=float)
            if p.shape != (3,) or q.shape != (4,):
                return "invalid"
            qq = float(q.dot(q))
            if not (_finite(p) and (math.isfinite(qq) or _finite(q))):
                return "non_finite"
            if not 1e-6 <= qq < math.inf:  # too short to normalise, or its norm overflows
                return "invalid"
        else:
            j = np.asarray(t.joints, dtype=float)
            if j.shape != (dof,):
                return "invalid"
            if not _finite(j):
                return "non_finite"
    except (TypeError, ValueError):
        return "invalid"
    return None

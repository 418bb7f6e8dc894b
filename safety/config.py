"""What the shield enforces: one frozen config, every default in one place.

Built from the agent config's ``[safety]`` table with :meth:`SafetyConfig.from_mapping` (the
shared loader, ``safety.config_loader``, shapes the table) and checked by ``SafetyConfig``'s
constructor, so a typo or an impossible limit fails before the arm moves, whether the config came
from a file or from code, with a message that names the field and the value. Defaults are for a Franka Panda on a table, deliberately
well below the arm's documented limits (kept here as ``PANDA_*`` for reference) for a first run.

The tool (``[safety.tool]``): the shield bounds the TCP by the workspace box, and the tool's
extent by the floor and the zones. A command is allowed only if the TCP is inside the
workspace box (as always) and every tool point, placed by the command's pose
(``position + R(quaternion) @ point``), is at or above the workspace's ``min`` z and outside
every keep-out zone grown by ``keep_out_margin_m`` (the TCP itself counts as a point). The
workspace's x/y walls and ceiling bound the TCP only. Against planes (the floor, half-spaces)
the check is exact for the convex hull of the points (a hull's lowest point is a vertex);
against box and sphere zones it is exact for the points themselves: add points for a tool with
long edges near such zones. The default, :data:`FRANKA_HAND_POINTS`, bounds the Franka Hand
as dm-robotics-panda models it (``dm_robotics/panda/assets/panda/panda_hand.xml``, mounted on
the flange rotated -pi/4 about its axis, TCP 0.1034 m along it, as ``robot_agent.sim`` does):
the four lower corners of the two fingers' extent over their whole stroke (each finger's
collision box at ``pos 0 0.015 0.032 size 0.012 0.015 0.022`` in a finger frame 0.0584 m along
the hand axis, the finger sliding 0..0.04 m; its visual mesh reaches 13.1 mm past the TCP,
the collision box 9.4 mm: 14 mm is used), and the eight corners of the hand's bounding box
(x +-0.032, y +-0.108, z from 0.032 to 0.131 m behind the TCP). The arm's links are not
points: they stay the FK's and the joint limits' business.

Example::

    [safety]
    on_workspace_violation = "clamp"   # or "reject": hold instead of moving to the nearest safe point
    stale_after_s = 0.1
    keep_out_margin_m = 0.005          # commands stay this far (m) from every keep-out zone

    [safety.workspace]
    min = [0.25, -0.35, 0.02]
    max = [0.75, 0.35, 0.70]

    [[safety.keep_out]]
    kind = "sphere"
    name = "camera mount"
    center = [0.5, 0.3, 0.4]
    radius = 0.08

    [[safety.keep_out]]
    kind = "half_space"      # stay where dot(normal, p) >= offset
    name = "table"
    normal = [0, 0, 1]
    offset = 0.03

    [safety.translation]
    max_velocity = 0.5       # m/s, norm of the end-effector's linear velocity

    [safety.tool]
    # Points (m, in the TCP frame: z along the tool axis, toward the fingertips) that bound the
    # tool; every one of them stays above the workspace floor and out of every keep-out zone.
    # Default: the Franka Hand's (FRANKA_HAND_POINTS); points = [] for a bare flange.
    points = [[0.012, 0.07, 0.014], [-0.012, 0.07, 0.014], [0.012, -0.07, 0.014], [-0.012, -0.07, 0.014]]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

import numpy as np

from .arms import PANDA
from .config_loader import build
from .errors import SafetyConfigError
from .jsonable import jsonable
from .rotations import quat_to_matrix
from .types import Pose

__all__ = [
    "FRANKA_HAND_POINTS",
    "PANDA_CARTESIAN_LIMITS",
    "PANDA_HOME_JOINTS",
    "PANDA_JOINT_ACCELERATION",
    "PANDA_JOINT_JERK",
    "PANDA_JOINT_MAX",
    "PANDA_JOINT_MIN",
    "PANDA_JOINT_RATES",
    "PANDA_JOINT_VELOCITY",
    "Box",
    "CartesianLimits",
    "GripperLimits",
    "JointLimits",
    "KeepOut",
    "KeepOutBox",
    "KeepOutHalfSpace",
    "KeepOutSphere",
    "OrientationLimit",
    "SafetyConfig",
    "ToolGeometry",
    "TrackingLimits",
]

# The Franka Emika Panda's documented limits, from its table in safety.arms (the source is named
# there). Radians and seconds.
PANDA_JOINT_MIN = PANDA.joint_min
PANDA_JOINT_MAX = PANDA.joint_max
PANDA_JOINT_VELOCITY = PANDA.joint_velocity
PANDA_JOINT_ACCELERATION = PANDA.joint_acceleration
PANDA_JOINT_JERK = PANDA.joint_jerk
# (translation m/s, m/s^2, m/s^3), (rotation rad/s, rad/s^2, rad/s^3)
PANDA_CARTESIAN_LIMITS = PANDA.cartesian
# Per joint: (velocity rad/s, acceleration rad/s^2, jerk rad/s^3), the three tables above.
PANDA_JOINT_RATES = (PANDA_JOINT_VELOCITY, PANDA_JOINT_ACCELERATION, PANDA_JOINT_JERK)
# The usual ready pose; panda_py.fk puts the flange-plus-hand frame at about (0.307, 0, 0.487),
# pointing down, quaternion (1, 0, 0, 0).
PANDA_HOME_JOINTS = PANDA.home_joints

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box, metres in the robot base frame."""

    min: Vec3 = (0.25, -0.35, 0.02)
    max: Vec3 = (0.75, 0.35, 0.70)

    def __post_init__(self) -> None:
        _as_floats(self, "min", "max")

    def contains(self, p: Sequence[float] | np.ndarray, tol: float = 0.0) -> bool:
        return all(lo - tol <= x <= hi + tol for lo, x, hi in zip(self.min, p, self.max, strict=True))


@dataclass(frozen=True)
class KeepOutBox:
    """A box the end effector must never enter (a fixture, a camera, a second robot)."""

    min: Vec3
    max: Vec3
    name: str = ""
    kind: Literal["box"] = "box"

    def __post_init__(self) -> None:
        _as_floats(self, "min", "max")


@dataclass(frozen=True)
class KeepOutSphere:
    """A ball the end effector must never enter."""

    center: Vec3
    radius: float
    name: str = ""
    kind: Literal["sphere"] = "sphere"

    def __post_init__(self) -> None:
        _as_floats(self, "center")


@dataclass(frozen=True)
class KeepOutHalfSpace:
    """Everything below a plane: the end effector stays where ``dot(normal, p) >= offset``.

    ``normal`` points into the allowed side and is normalised when built (``offset`` with it, so
    distances are in metres), e.g. a table top at z = 0.03 m is ``normal = [0, 0, 1], offset = 0.03``.
    """

    normal: Vec3
    offset: float
    name: str = ""
    kind: Literal["half_space"] = "half_space"

    def __post_init__(self) -> None:
        _as_floats(self, "normal")
        try:
            n = np.asarray(self.normal, dtype=float)
            norm = float(np.linalg.norm(n))
            offset = float(self.offset)
        except (TypeError, ValueError):
            return  # SafetyConfig's checks name the field
        if n.shape == (3,) and math.isfinite(norm) and norm > 1e-9 and not isinstance(self.offset, bool):
            unit = n / norm
            object.__setattr__(self, "normal", (float(unit[0]), float(unit[1]), float(unit[2])))
            object.__setattr__(self, "offset", offset / norm)


KeepOut = Union[KeepOutBox, KeepOutSphere, KeepOutHalfSpace]  # noqa: UP007 (a runtime alias)


# The Franka Hand's extent in its TCP frame (metres; z along the tool axis, toward the fingertips),
# from dm-robotics-panda's model (dm_robotics/panda/assets/panda/panda_hand.xml; TCP at 0.1034 m
# along the hand axis): the fingertips over the fingers' whole stroke (x +-0.012, y +-0.070: a
# finger's collision box spans y 0.000..0.030 closed, 0.040..0.070 open; the finger mesh ends
# 13.1 mm past the TCP, rounded out to 14 mm), then the hand's bounding box (x +-0.032, y +-0.108,
# 32 to 131 mm behind the TCP). Measured on the compiled MuJoCo scene (robot_agent.sim).
FRANKA_HAND_POINTS: tuple[Vec3, ...] = (
    (0.012, 0.070, 0.014),
    (-0.012, 0.070, 0.014),
    (0.012, -0.070, 0.014),
    (-0.012, -0.070, 0.014),
    (0.032, 0.108, -0.032),
    (-0.032, 0.108, -0.032),
    (0.032, -0.108, -0.032),
    (-0.032, -0.108, -0.032),
    (0.032, 0.108, -0.131),
    (-0.032, 0.108, -0.131),
    (0.032, -0.108, -0.131),
    (-0.032, -0.108, -0.131),
)


@dataclass(frozen=True)
class ToolGeometry:
    """Points (metres, TCP frame, shape ``(n, 3)``) that bound the tool the arm carries.

    Every point of every command stays at or above the workspace floor (its ``min`` z) and out
    of every keep-out zone grown by ``keep_out_margin_m`` (see the module docstring). Default:
    the Franka Hand's (:data:`FRANKA_HAND_POINTS`); ``points = []`` bounds the TCP only (a bare
    flange, or a tool whose extent the workspace box already allows for).
    """

    points: tuple[Vec3, ...] = FRANKA_HAND_POINTS

    def __post_init__(self) -> None:
        value = self.points
        if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str | bytes):
            try:
                pts = tuple(tuple(float(x) for x in p) for p in value)
            except (TypeError, ValueError):
                return  # SafetyConfig's checks name the point
            object.__setattr__(self, "points", pts)

    def as_array(self) -> np.ndarray:
        """The points as a float64 array of shape ``(n, 3)`` (``(0, 3)`` for none)."""
        return np.asarray(self.points, dtype=float).reshape(-1, 3)


@dataclass(frozen=True)
class CartesianLimits:
    """Bounds on the norm of a velocity, acceleration and jerk (translation: m, rotation: rad).

    The shield enforces each axis at limit / sqrt(3), which keeps the norm within the limit.
    """

    max_velocity: float
    max_acceleration: float
    max_jerk: float


@dataclass(frozen=True)
class JointLimits:
    """Joint position and rate limits, one value per joint (radians, seconds).

    Targets are clamped to ``[min + margin_rad, max - margin_rad]``; inside the ``soft_zone_rad``
    next to that band, motion toward the limit is scaled down linearly (as MoveIt Servo and
    Polymetis do), so the arm slows before it stops.
    """

    min: tuple[float, ...] = PANDA_JOINT_MIN
    max: tuple[float, ...] = PANDA_JOINT_MAX
    max_velocity: tuple[float, ...] = tuple(0.5 * v for v in PANDA_JOINT_VELOCITY)
    max_acceleration: tuple[float, ...] = tuple(0.3 * v for v in PANDA_JOINT_ACCELERATION)
    max_jerk: tuple[float, ...] = tuple(0.02 * v for v in PANDA_JOINT_JERK)
    margin_rad: float = 0.05
    soft_zone_rad: float = 0.15
    # With an IK, an end-effector command whose joint solution moves faster than this many
    # times ``max_velocity`` is held: near a singularity a slow Cartesian motion needs fast
    # joints, and an arm that cannot follow them strays off the commanded path (out of the
    # workspace). 2 = the Panda's own maximum with the default (half-speed) joint limits.
    ik_velocity_factor: float = 2.0

    def __post_init__(self) -> None:
        _as_floats(self, "min", "max", "max_velocity", "max_acceleration", "max_jerk")

    @property
    def dof(self) -> int:
        return len(self.min)


@dataclass(frozen=True)
class OrientationLimit:
    """Optional bound on the tilt of the tool axis (its z axis) away from a nominal orientation.

    Rotation about the tool axis is free; ``max_tilt_rad = None`` switches the rule off.
    """

    nominal_quaternion: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # pointing down
    max_tilt_rad: float | None = None

    def __post_init__(self) -> None:
        _as_floats(self, "nominal_quaternion")


@dataclass(frozen=True)
class GripperLimits:
    """Gripper command range (0 = closed, 1 = open) and rate (range units per second).

    ``tolerance`` (range units): a command moved by less than this to fit the range or the rate
    is rounding, not a safety intervention (``gripper`` does not fire; the clamped value is still
    what is sent). The default, 1e-3 (0.1 % of the range: 80 um of a Franka Hand's 80 mm stroke),
    is below what a gripper can resolve and above what a policy's float32 outputs and their
    interpolation leave around an exact 0 or 1: the demo policy's "open" is 0.99986..1.00008 once
    interpolated (float32 alone gives 1.00000002); counted, that was ~40 interventions a second.
    """

    min: float = 0.0
    max: float = 1.0
    max_rate_per_s: float = 2.0
    tolerance: float = 1e-3


@dataclass(frozen=True)
class TrackingLimits:
    """How far a target may be from the measured state; ``on_violation``: clamp or hold."""

    max_translation_m: float = 0.10
    max_rotation_rad: float = 0.5
    max_joint_rad: float = 0.3
    on_violation: Literal["clamp", "hold"] = "clamp"


@dataclass(frozen=True)
class SafetyConfig:
    """The ``[safety]`` section of the agent config. Every default lives here.

    ``estop_after_interventions``: this many consecutive ticks whose target was refused (a hold
    for a bad value, a limit in reject mode, IK failure, tracking) latch the e-stop; 0 disables
    it. Clamping and rate limiting never count: smoothing a coarse policy is the shield's job,
    and neither do watchdog holds (no target, stale).

    ``keep_out_margin_m``: commands keep this far (metres) from every keep-out zone, so that the
    arm's own tracking error (it lags and sags behind its commands: about 2 mm on the sim arm
    during a fast flip of the tool) does not carry it into the zone. Set it above the tracking
    error of your arm at the configured speeds. The shield checks the bound: a tick whose
    *measured* position is inside a zone itself (the arm strayed further than the margin) fires
    ``keep_out`` and logs a warning naming the zone, the depth and the margin; from a hold
    there the commands only move the arm out. The workspace box bounds commands exactly: set
    it inside what the arm may reach by your tracking error.
    """

    workspace: Box = field(default_factory=Box)
    keep_out: tuple[KeepOut, ...] = ()
    keep_out_margin_m: float = 0.005
    on_workspace_violation: Literal["clamp", "reject"] = "clamp"
    orientation: OrientationLimit = field(default_factory=OrientationLimit)
    tool: ToolGeometry = field(default_factory=ToolGeometry)
    translation: CartesianLimits = field(default_factory=lambda: CartesianLimits(0.5, 2.0, 100.0))
    rotation: CartesianLimits = field(default_factory=lambda: CartesianLimits(1.0, 4.0, 200.0))
    joints: JointLimits = field(default_factory=JointLimits)
    gripper: GripperLimits = field(default_factory=GripperLimits)
    tracking: TrackingLimits = field(default_factory=TrackingLimits)
    stale_after_s: float = 0.1
    # A tick longer than this means the loop stalled: the arm sat still, so a step sized for the
    # long dt would be a jump. Hold and start again from the measured state instead.
    max_dt_s: float = 0.1
    estop_after_interventions: int = 50

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None, *, section: str = "safety") -> SafetyConfig:
        """Build from a parsed TOML table; unknown keys and bad values raise SafetyConfigError.

        A section (``[safety.translation]``) overrides only the keys it names; ``keep_out`` is a
        list of tables picked by ``kind`` (box, sphere, half_space).
        """
        return build(cls, data or {}, SafetyConfigError, section=section)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable effective limits; ``from_mapping(to_dict())`` gives the same config."""
        out = dataclasses.asdict(self)
        out["keep_out"] = [dataclasses.asdict(z) for z in self.keep_out]
        result: dict[str, Any] = jsonable(out)
        return result

    def validate_against(
        self,
        *,
        home: Pose | Sequence[float] | None = None,
        home_joints: Sequence[float] | None = None,
        robot_joint_min: Sequence[float] | None = None,
        robot_joint_max: Sequence[float] | None = None,
        robot_cartesian_limits: Sequence[Sequence[float]] | None = PANDA_CARTESIAN_LIMITS,
        robot_joint_rates: Sequence[Sequence[float]] | None = PANDA_JOINT_RATES,
    ) -> None:
        """Check the limits against a robot: the home pose must be reachable and allowed, the
        joint range inside the robot's, the Cartesian limits at most the robot's.

        Called by the agent once it knows the robot (its home pose and hard joint limits). A
        home :class:`Pose` must also keep every ``tool`` point above the floor and out of the zones.
        ``robot_cartesian_limits`` is ``((m/s, m/s^2, m/s^3), (rad/s, rad/s^2, rad/s^3))`` for the
        tool's translation and rotation, by default the Panda's documented ones
        (:data:`PANDA_CARTESIAN_LIMITS`); ``None`` skips that check. ``robot_joint_rates`` is
        ``(velocity, acceleration, jerk)``, one value per joint (rad/s, rad/s^2, rad/s^3), by
        default the Panda's (:data:`PANDA_JOINT_RATES`), checked when the robot has as many
        joints as ``safety.joints``; ``None`` skips it.
        Raises SafetyConfigError naming the limit and the pose that do not fit.
        """
        if robot_cartesian_limits is not None:
            for group, arm in zip(("translation", "rotation"), robot_cartesian_limits, strict=True):
                ours = getattr(self, group)
                for name, limit in zip(("max_velocity", "max_acceleration", "max_jerk"), arm, strict=True):
                    value = float(getattr(ours, name))
                    if value > float(limit):
                        raise SafetyConfigError(
                            f"safety.{group}.{name} is {value:g}, above the robot's own limit {float(limit):g}",
                            field=f"safety.{group}.{name}",
                        )
        if robot_joint_rates is not None:
            for name, arm in zip(
                ("max_velocity", "max_acceleration", "max_jerk"), robot_joint_rates, strict=True
            ):
                ours = getattr(self.joints, name)
                if len(arm) != len(ours):
                    continue  # another arm than the table's
                for k, (value, limit) in enumerate(zip(ours, arm, strict=True)):
                    if float(value) > float(limit):
                        raise SafetyConfigError(
                            f"safety.joints.{name}[{k}] is {float(value):g}, above the robot's own limit "
                            f"{float(limit):g}",
                            field=f"safety.joints.{name}[{k}]",
                        )
        if home is not None:
            p = np.asarray(home.position if isinstance(home, Pose) else home, dtype=float)
            shown = _fmt(p)
            if not self.workspace.contains(p):
                raise SafetyConfigError(
                    f"safety.workspace min={_fmt(self.workspace.min)} max={_fmt(self.workspace.max)} "
                    f"does not contain the home pose position {shown}",
                    field="safety.workspace",
                )
            for i, zone in enumerate(self.keep_out):
                if _zone_contains(zone, p):
                    raise SafetyConfigError(
                        f"safety.keep_out[{i}] ({zone.kind} {zone.name!r}) contains the home pose position {shown}",
                        field=f"safety.keep_out[{i}]",
                    )
            if isinstance(home, Pose) and self.tool.points:
                pts = p + self.tool.as_array() @ quat_to_matrix(np.asarray(home.quaternion, dtype=float)).T
                k = int(np.argmin(pts[:, 2]))
                if pts[k, 2] < self.workspace.min[2]:
                    raise SafetyConfigError(
                        f"safety.tool.points[{k}] is at z = {pts[k, 2]:.4f} at the home pose, below the "
                        f"workspace floor {self.workspace.min[2]:g}",
                        field=f"safety.tool.points[{k}]",
                    )
                for i, zone in enumerate(self.keep_out):
                    for k, x in enumerate(pts):
                        if _zone_contains(zone, x):
                            raise SafetyConfigError(
                                f"safety.keep_out[{i}] ({zone.kind} {zone.name!r}) contains "
                                f"safety.tool.points[{k}] at the home pose: {_fmt(x)}",
                                field=f"safety.keep_out[{i}]",
                            )
            tilt = self.orientation.max_tilt_rad
            if isinstance(home, Pose) and tilt is not None:
                angle = tool_tilt(np.asarray(self.orientation.nominal_quaternion), home.quaternion)
                if angle > tilt:
                    raise SafetyConfigError(
                        f"safety.orientation.max_tilt_rad is {tilt}, the home pose is tilted {angle:.3f} rad "
                        f"from the nominal orientation {_fmt(self.orientation.nominal_quaternion)}",
                        field="safety.orientation.max_tilt_rad",
                    )
        j = self.joints
        if home_joints is not None:
            q = np.asarray(home_joints, dtype=float)
            if q.shape != (j.dof,):
                raise SafetyConfigError(
                    f"safety.joints has {j.dof} joints, the robot's home pose has {q.size}: {_fmt(q)}",
                    field="safety.joints",
                )
            lo = np.asarray(j.min) + j.margin_rad
            hi = np.asarray(j.max) - j.margin_rad
            bad = np.flatnonzero((q < lo) | (q > hi))
            if bad.size:
                k = int(bad[0])
                raise SafetyConfigError(
                    f"safety.joints: home joint {k} is {q[k]:.4f} rad, outside [{lo[k]:.4f}, {hi[k]:.4f}] "
                    f"(min/max with margin_rad={j.margin_rad})",
                    field=f"safety.joints.min[{k}]",
                )
        for name, robot, ours, outside in (
            ("min", robot_joint_min, j.min, float.__lt__),
            ("max", robot_joint_max, j.max, float.__gt__),
        ):
            if robot is None:
                continue
            if len(robot) != j.dof:
                raise SafetyConfigError(
                    f"safety.joints.{name} has {j.dof} joints, the robot has {len(robot)}",
                    field=f"safety.joints.{name}",
                )
            for k, (o, r) in enumerate(zip(ours, robot, strict=True)):
                if outside(float(o), float(r)):
                    raise SafetyConfigError(
                        f"safety.joints.{name}[{k}] is {o}, beyond the robot's own limit {r}",
                        field=f"safety.joints.{name}[{k}]",
                    )


def tool_tilt(nominal: np.ndarray, q: np.ndarray) -> float:
    """Angle in radians between the tool z axes of two orientations (rotation about it is free)."""
    a = quat_to_matrix(nominal)[:, 2]
    b = quat_to_matrix(q)[:, 2]
    cross = np.cross(a, b)
    return math.atan2(math.sqrt(float(cross @ cross)), float(a @ b))


# --- loading ---------------------------------------------------------------------------------------


def _as_floats(obj: Any, *names: str) -> None:
    """Store the sequences of numbers among ``obj``'s fields ``names`` as tuples of floats (TOML gives
    lists, code may give arrays); anything else is left as is for :func:`_validate` to name."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
            continue
        try:
            object.__setattr__(obj, name, tuple(float(v) for v in value))
        except (TypeError, ValueError):
            continue


# --- validation ---------------------------------------------------------------------------------

_TOOL_REACH_M = 1.0  # a tool point farther from the TCP than this is a typo (mm for m), not a tool


def _fmt(v: Sequence[float] | np.ndarray) -> str:
    return "(" + ", ".join(f"{float(x):.4g}" for x in v) + ")"


def _need(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise SafetyConfigError(f"{where} {message}", field=where)


def _vector(v: Any, n: int | None, where: str) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError) as exc:
        raise SafetyConfigError(f"{where} must be numbers, got {v!r}", field=where) from exc
    _need(a.ndim == 1 and (n is None or a.size == n), where, f"must have {n} values, got {v!r}")
    _need(bool(np.all(np.isfinite(a))), where, f"must be finite, got {v!r}")
    return a


def _positive(x: Any, where: str, *, allow_zero: bool = False) -> None:
    ok = isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
    ok = ok and (x >= 0 if allow_zero else x > 0)
    _need(ok, where, f"must be a {'non-negative' if allow_zero else 'positive'} finite number, got {x!r}")


def _validate_box(lo: Any, hi: Any, where: str) -> None:
    a = _vector(lo, 3, f"{where}.min")
    b = _vector(hi, 3, f"{where}.max")
    for k in range(3):
        _need(a[k] < b[k], f"{where}.min", f"is {_fmt(a)}, not below max {_fmt(b)} on axis {'xyz'[k]}")


def _validate_zone(zone: KeepOut, where: str) -> None:
    if isinstance(zone, KeepOutBox):
        _validate_box(zone.min, zone.max, where)
    elif isinstance(zone, KeepOutSphere):
        _vector(zone.center, 3, f"{where}.center")
        _positive(zone.radius, f"{where}.radius")
    else:
        n = _vector(zone.normal, 3, f"{where}.normal")
        _need(float(np.linalg.norm(n)) > 1e-9, f"{where}.normal", f"must not be zero, got {zone.normal!r}")
        _need(
            isinstance(zone.offset, int | float) and math.isfinite(zone.offset),
            f"{where}.offset",
            f"must be a finite number, got {zone.offset!r}",
        )


def _zone_contains(zone: KeepOut, p: np.ndarray) -> bool:
    if isinstance(zone, KeepOutBox):
        return bool(np.all(p > np.asarray(zone.min)) and np.all(p < np.asarray(zone.max)))
    if isinstance(zone, KeepOutSphere):
        return float(np.linalg.norm(p - np.asarray(zone.center))) < zone.radius
    return float(np.dot(zone.normal, p)) < zone.offset


def _validate(c: SafetyConfig) -> None:
    _validate_box(c.workspace.min, c.workspace.max, "safety.workspace")
    for i, zone in enumerate(c.keep_out):
        _need(
            isinstance(zone, KeepOutBox | KeepOutSphere | KeepOutHalfSpace),
            f"safety.keep_out[{i}]",
            f"must be a keep-out zone, got {zone!r}",
        )
        _validate_zone(zone, f"safety.keep_out[{i}]")
    _positive(c.keep_out_margin_m, "safety.keep_out_margin_m", allow_zero=True)
    _need(
        c.on_workspace_violation in ("clamp", "reject"),
        "safety.on_workspace_violation",
        f"must be 'clamp' or 'reject', got {c.on_workspace_violation!r}",
    )
    q = _vector(c.orientation.nominal_quaternion, 4, "safety.orientation.nominal_quaternion")
    _need(
        abs(float(np.linalg.norm(q)) - 1.0) < 1e-3,
        "safety.orientation.nominal_quaternion",
        f"must be a unit quaternion (x, y, z, w), got {c.orientation.nominal_quaternion!r}",
    )
    if c.orientation.max_tilt_rad is not None:
        t = c.orientation.max_tilt_rad
        _positive(t, "safety.orientation.max_tilt_rad")
        _need(t <= math.pi, "safety.orientation.max_tilt_rad", f"must be at most pi, got {t!r}")
    pts = c.tool.points
    _need(
        isinstance(pts, tuple) and all(isinstance(p, tuple) for p in pts),
        "safety.tool.points",
        f"must be a list of [x, y, z] points (m), got {pts!r}",
    )
    for k, p in enumerate(pts):
        v = _vector(p, 3, f"safety.tool.points[{k}]")
        _need(
            float(np.linalg.norm(v)) <= _TOOL_REACH_M,
            f"safety.tool.points[{k}]",
            f"is {_fmt(v)}, {float(np.linalg.norm(v)):.3g} m from the TCP (at most {_TOOL_REACH_M} m)",
        )
    for group in ("translation", "rotation"):
        lim = getattr(c, group)
        for name in ("max_velocity", "max_acceleration", "max_jerk"):
            _positive(getattr(lim, name), f"safety.{group}.{name}")
    j = c.joints
    lo = _vector(j.min, None, "safety.joints.min")
    hi = _vector(j.max, j.dof, "safety.joints.max")
    _need(j.dof > 0, "safety.joints.min", "must list at least one joint")
    for name in ("max_velocity", "max_acceleration", "max_jerk"):
        v = _vector(getattr(j, name), j.dof, f"safety.joints.{name}")
        _need(bool(np.all(v > 0)), f"safety.joints.{name}", f"must be positive, got {getattr(j, name)!r}")
    _positive(j.margin_rad, "safety.joints.margin_rad", allow_zero=True)
    _positive(j.soft_zone_rad, "safety.joints.soft_zone_rad", allow_zero=True)
    _positive(j.ik_velocity_factor, "safety.joints.ik_velocity_factor")
    for k in range(j.dof):
        _need(
            hi[k] - lo[k] > 2 * j.margin_rad,
            f"safety.joints.min[{k}]",
            f"is {lo[k]}, max is {hi[k]}: no room left inside margin_rad={j.margin_rad}",
        )
    grip = c.gripper
    _need(
        isinstance(grip.min, int | float) and isinstance(grip.max, int | float) and grip.min < grip.max,
        "safety.gripper.min",
        f"is {grip.min!r}, must be below max {grip.max!r}",
    )
    _positive(grip.max_rate_per_s, "safety.gripper.max_rate_per_s")
    _positive(grip.tolerance, "safety.gripper.tolerance", allow_zero=True)
    _need(
        grip.tolerance < 0.01 * (grip.max - grip.min),
        "safety.gripper.tolerance",
        f"is {grip.tolerance!r}, must be below 1% of the gripper range ({grip.max - grip.min!r})",
    )
    track = c.tracking
    _positive(track.max_translation_m, "safety.tracking.max_translation_m")
    _positive(track.max_rotation_rad, "safety.tracking.max_rotation_rad")
    _positive(track.max_joint_rad, "safety.tracking.max_joint_rad")
    _need(
        track.on_violation in ("clamp", "hold"),
        "safety.tracking.on_violation",
        f"must be 'clamp' or 'hold', got {track.on_violation!r}",
    )
    _positive(c.stale_after_s, "safety.stale_after_s")
    _positive(c.max_dt_s, "safety.max_dt_s")
    n = c.estop_after_interventions
    _need(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0,
        "safety.estop_after_interventions",
        f"must be a non-negative integer (0 disables it), got {n!r}",
    )

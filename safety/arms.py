"""The arms' own documented limits, one table per model, defined here and nowhere else.

Safety is the bottom layer: the shield's defaults (``safety.config``), the simulated Panda
(``robot_agent.sim``) and the drivers (``robot_agent.drivers``) all read these tables, so a limit
the manufacturer publishes is typed in once. Units are SI: radians, seconds, metres.

Sources:

- Franka Emika Panda: "Robot and interface specifications", Franka Control Interface
  documentation (frankaemika.github.io/docs/control_parameters.html), the same values as
  libfranka's ``rate_limiting.h``; the home pose is libfranka's and panda-python's ready pose
  (``panda_py.constants.JOINT_POSITION_START``).
- UFACTORY xArm 5, 6, 7: the xArm user manual (UFACTORY, "xArm User Manual", section
  "Specifications": joint ranges, maximum joint speed 180 deg/s, maximum TCP speed 1 m/s),
  the same joint ranges as the xArm Python SDK's ``XCONF.Robot.JOINT_LIMITS`` for the standard
  models (device types 5, 6 and 7). UFACTORY publishes no joint acceleration or jerk limits and
  no full Cartesian rate limits, so those fields are empty (``None``) for the xArm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["PANDA", "XARM", "XARM5", "XARM6", "XARM7", "ArmLimits"]

Rates = tuple[float, float, float]  # (velocity, acceleration, jerk)


@dataclass(frozen=True)
class ArmLimits:
    """One arm model's documented limits, one value per joint where per joint.

    ``joint_min``/``joint_max`` in rad, ``joint_velocity`` rad/s, ``joint_acceleration`` rad/s^2,
    ``joint_jerk`` rad/s^3 (empty: not published); ``cartesian`` is ``((m/s, m/s^2, m/s^3),
    (rad/s, rad/s^2, rad/s^3))`` for the tool's translation and rotation (``None``: not published
    in full); ``tcp_max_velocity`` m/s; ``home_joints`` the pose the arm starts from (rad).
    Raises ``ValueError`` when the tables disagree in length or the home pose is outside them.

    Example: ``ArmLimits("one joint", (-1.0,), (1.0,), (2.0,), (0.0,), tcp_max_velocity=1.0)``.
    """

    model: str
    joint_min: tuple[float, ...]
    joint_max: tuple[float, ...]
    joint_velocity: tuple[float, ...]
    home_joints: tuple[float, ...]
    joint_acceleration: tuple[float, ...] = ()
    joint_jerk: tuple[float, ...] = ()
    cartesian: tuple[Rates, Rates] | None = None
    tcp_max_velocity: float = math.inf

    def __post_init__(self) -> None:
        n = len(self.joint_min)
        for name in ("joint_max", "joint_velocity", "joint_acceleration", "joint_jerk", "home_joints"):
            value = getattr(self, name)
            if len(value) != n and not (name in ("joint_acceleration", "joint_jerk") and not value):
                raise ValueError(f"{self.model}: {name} has {len(value)} values, joint_min has {n}")
        for k, (lo, hi, home) in enumerate(
            zip(self.joint_min, self.joint_max, self.home_joints, strict=True)
        ):
            if not lo <= home <= hi:
                raise ValueError(f"{self.model}: home joint {k} is {home}, outside [{lo}, {hi}]")

    @property
    def dof(self) -> int:
        """The number of joints."""
        return len(self.joint_min)

    @property
    def joint_rates(self) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None:
        """``(velocity, acceleration, jerk)`` per joint, or ``None`` unless all three are published
        (the shape ``SafetyConfig.validate_against(robot_joint_rates=...)`` takes)."""
        if not self.joint_acceleration or not self.joint_jerk:
            return None
        return (self.joint_velocity, self.joint_acceleration, self.joint_jerk)


#: Franka Emika Panda (source in the module docstring).
PANDA = ArmLimits(
    model="Franka Emika Panda",
    joint_min=(-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
    joint_max=(2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
    joint_velocity=(2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100),
    joint_acceleration=(15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0),
    joint_jerk=(7500.0, 3750.0, 5000.0, 6250.0, 7500.0, 10000.0, 10000.0),
    cartesian=((1.7, 13.0, 6500.0), (2.5, 25.0, 12500.0)),
    tcp_max_velocity=1.7,
    # The usual ready pose; panda_py.fk puts the flange-plus-hand frame at about
    # (0.307, 0, 0.487), pointing down, quaternion (1, 0, 0, 0).
    home_joints=(0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4),
)

_TURN = 2 * math.pi  # +-360 deg: the xArm's continuous joints
_SHOULDER = (-2.059488, 2.094395)  # -118 deg .. 120 deg
_ELBOW = (-3.92699, 0.191986)  # -225 deg .. 11 deg (xArm 5 and 6)
_ELBOW_7 = (-0.191986, 3.92699)  # -11 deg .. 225 deg (xArm 7, joint 4)
_WRIST = (-1.692969, math.pi)  # -97 deg .. 180 deg
_XARM_JOINT_SPEED = math.pi  # 180 deg/s, every joint
_XARM_TCP_SPEED = 1.0  # m/s


def _xarm(model: str, ranges: tuple[tuple[float, float], ...]) -> ArmLimits:
    return ArmLimits(
        model=model,
        joint_min=tuple(lo for lo, _ in ranges),
        joint_max=tuple(hi for _, hi in ranges),
        joint_velocity=(_XARM_JOINT_SPEED,) * len(ranges),
        tcp_max_velocity=_XARM_TCP_SPEED,
        home_joints=(0.0,) * len(ranges),  # the SDK's zero pose, inside every range
    )


#: UFACTORY xArm 5 (source in the module docstring).
XARM5 = _xarm("UFACTORY xArm 5", ((-_TURN, _TURN), _SHOULDER, _ELBOW, _WRIST, (-_TURN, _TURN)))
#: UFACTORY xArm 6.
XARM6 = _xarm(
    "UFACTORY xArm 6", ((-_TURN, _TURN), _SHOULDER, _ELBOW, (-_TURN, _TURN), _WRIST, (-_TURN, _TURN))
)
#: UFACTORY xArm 7.
XARM7 = _xarm(
    "UFACTORY xArm 7",
    ((-_TURN, _TURN), _SHOULDER, (-_TURN, _TURN), _ELBOW_7, (-_TURN, _TURN), _WRIST, (-_TURN, _TURN)),
)
#: The xArm tables by number of joints (the SDK's ``arm.axis``).
XARM: Mapping[int, ArmLimits] = MappingProxyType({5: XARM5, 6: XARM6, 7: XARM7})

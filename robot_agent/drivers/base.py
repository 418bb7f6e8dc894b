"""The small interface every arm implements: the simulated Panda, a Franka through panda-python,
a UFACTORY xArm through its SDK.

Methods block (real SDKs do); the agent calls them from one dedicated driver thread, never from
the event loop, and never concurrently. Every command reaching a robot has passed the safety
shield. Units are SI inside vla-deploy: metres, radians, seconds; quaternions are (x, y, z, w);
the gripper is a fraction, 0 = closed, 1 = open. Each driver converts to its SDK's units in one
place.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from safety.arms import ArmLimits
from safety.types import Pose

if TYPE_CHECKING:
    from robot_agent.config import RobotConfig

__all__ = ["Robot", "RobotState"]


@dataclass(frozen=True)
class RobotState:
    """One reading of the arm. ``fault`` is set when the driver reports an error (a Franka reflex,
    an xArm error code): the agent latches the e-stop on it."""

    time_s: float  # time.monotonic() when read
    joint_positions: np.ndarray
    joint_velocities: np.ndarray
    ee: Pose
    gripper: float
    external_torques: np.ndarray | None = None
    fault: str | None = None
    # Estimated external wrench on the end effector in the base frame: force (N), torque (N m).
    external_wrench: np.ndarray | None = None


class Robot(abc.ABC):
    """A robot arm. Built from a ``RobotConfig`` by its class method ``from_config``."""

    #: Joint position limits (lower, upper) in radians, from the manufacturer's documentation.
    joint_limits: tuple[np.ndarray, np.ndarray]
    #: The pose the arm starts from; a safety workspace must contain it.
    home_joints: np.ndarray
    #: The arm model's documented limits (a table of ``safety.arms``: joint ranges, velocity,
    #: acceleration, jerk and Cartesian limits where published), for checking the safety config
    #: against the arm it runs on; ``None`` when the model is not known.
    arm_limits: ArmLimits | None = None
    #: Optional kinematics hook, ``inverse_kinematics(pose, seed_joints) -> joints | None``: the
    #: joint positions reaching ``pose`` near ``seed_joints`` (None: no solution). A driver that
    #: has one defines it as a method; ``None`` means the arm offers none. The agent hands it to
    #: the safety shield, which then checks an end-effector command's joints *before* sending it
    #: (without it only the measured joints are known, and the arm can drift into a joint margin
    #: before the shield sees it). Pure and thread-safe: it is called from the control tick.
    inverse_kinematics: Callable[[Pose, np.ndarray], np.ndarray | None] | None = None
    #: Optional kinematics hook, ``forward_kinematics(joints) -> Pose``: the end-effector pose
    #: (the frame ``read_state`` reports and the safety workspace bounds) at ``joints``. Defined
    #: as a method by a driver that has one; ``None`` means the arm offers none. The agent hands
    #: it to the safety shield, which then checks every *joint* command's end-effector position
    #: against the workspace and the keep-out zones before sending it; without it a joint-space
    #: policy is refused when keep-out zones are configured. Pure and thread-safe, as above.
    forward_kinematics: Callable[[np.ndarray], Pose] | None = None

    @classmethod
    def from_config(cls, config: RobotConfig) -> Robot:
        """Build (not connect) the arm ``config`` (the ``[robot]`` section) describes. Touches
        no hardware. Raises ``ConfigError`` naming the field (``robot.ip``, ``robot.options.X``)
        that is missing or wrong.

        Every driver in ``robot_agent.drivers.DRIVERS`` implements it; a wrapper built around
        another ``Robot`` (recording, fault injection) has no config of its own and keeps this
        default, which raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{cls.__name__} is not built from a config")

    @abc.abstractmethod
    def connect(self) -> None:
        """Connect, enable and set the control mode. Called once before anything else; fails
        within the configured timeout with an error naming the address."""

    @abc.abstractmethod
    def read_state(self) -> RobotState:
        """Read the current state. Called every control tick."""

    @abc.abstractmethod
    def command_ee(self, pose: Pose) -> None:
        """Track an end-effector target (already through the shield)."""

    @abc.abstractmethod
    def command_joints(self, joints: np.ndarray) -> None:
        """Track a joint target (already through the shield)."""

    @abc.abstractmethod
    def command_gripper(self, opening: float) -> None:
        """Move the gripper to ``opening`` (0 closed, 1 open); must not block the control tick."""

    @abc.abstractmethod
    def hold(self) -> None:
        """Hold position: command the measured pose with zero velocity."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Controlled stop: come to rest and leave the control mode."""

    @abc.abstractmethod
    def emergency_stop(self) -> None:
        """Stop now, as fast as the arm allows. Called on any driver error; latched by the agent."""

    def reset_fault(self) -> None:
        """Clear a latched error on the arm (Franka ``recover``, xArm ``clean_error``). Only on an
        explicit operator reset."""

    def close(self) -> None:
        """Release the connection. Always called, in ``finally``."""

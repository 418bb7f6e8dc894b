"""The simulated Franka Panda as a ``Robot``: a thin adapter over :class:`robot_agent.sim.arm.SimArm`.

The simulator itself (kinematics, dynamics, clock, world, renderer) lives in ``robot_agent.sim``;
this module turns the ``[robot]`` section into a ``SimArm`` and maps the ``Robot`` calls onto it.

Options (``[robot.options]``; all optional)::

    realtime = true                 # false: manual clock, advance with step(dt)
    command_latency_s = 0.0
    state_noise_std = 0.0           # radians, on joint positions
    max_joint_velocity = 1.0        # fraction of the Panda limits (a number), or 7 values in rad/s
    max_joint_acceleration = 1.0    # fraction of the Panda limits, or 7 values in rad/s^2
    tracking_time_constant_s = 0.05
    physics_dt_s = 0.001
    gripper_speed = 1.0             # opening fraction per second
    seed = 0                        # noise and scenes; absent: random
    time_limit_s = 15.0             # the world's episode limit
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from typing_extensions import override

from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import (
    PANDA_HOME_JOINTS,
    PANDA_JOINT_LIMITS,
    PANDA_MAX_JOINT_ACCELERATION,
    PANDA_MAX_JOINT_VELOCITY,
    SimArm,
)
from robot_agent.sim.clock import Clock, ManualClock, WallClock
from robot_agent.sim.world import SimWorld
from safety.arms import PANDA
from safety.config_loader import build, check_types
from safety.types import Pose

if TYPE_CHECKING:
    from robot_agent.config import RobotConfig

__all__ = ["SimOptions", "SimRobot"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimOptions:
    """The ``[robot.options]`` keys of the simulated arm (the module docstring lists them), built
    by the shared loader: an unknown key, a wrong type or a value out of range raises
    :class:`ConfigError` naming ``robot.options.<key>``.

    ``max_joint_velocity`` and ``max_joint_acceleration``: a number is a fraction (0, 1] of the
    Panda's documented limits, 7 values give them per joint (rad/s, rad/s^2).
    """

    realtime: bool = True
    command_latency_s: float = 0.0
    state_noise_std: float = 0.0
    max_joint_velocity: float | tuple[float, ...] = 1.0
    max_joint_acceleration: float | tuple[float, ...] = 1.0
    tracking_time_constant_s: float = 0.05
    physics_dt_s: float = 0.001
    gripper_speed: float = 1.0
    seed: int | None = None  # None: random
    time_limit_s: float = 15.0

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="robot.options")
        for name in ("max_joint_velocity", "max_joint_acceleration"):
            value = getattr(self, name)
            if isinstance(value, float):
                if not 0.0 < value <= 1.0:
                    raise ConfigError(
                        f"robot.options.{name} is {value!r}: a fraction must be in (0, 1]",
                        field=f"robot.options.{name}",
                    )
            elif len(value) != 7 or not all(v > 0 for v in value):
                raise ConfigError(
                    f"robot.options.{name} is {list(value)!r}: give a fraction or 7 positive values",
                    field=f"robot.options.{name}",
                )

    def limit(self, name: str, panda: np.ndarray) -> np.ndarray:
        """Option ``name`` as per-joint values: a fraction scales the Panda's ``panda``."""
        value = getattr(self, name)
        return panda * value if isinstance(value, float) else np.asarray(value, dtype=float)


class SimRobot(Robot):
    """The simulated Panda (a new wall-clock ``SimArm`` when ``arm`` is not given).

    Besides the ``Robot`` calls it offers the simulator's conveniences for tests, data generation
    and evaluation: ``world``, ``clock``, ``step(dt)``, ``go_home()``, ``true_joints()``,
    ``true_ee()``, ``snapshot()``, and the counters ``ik_failures`` and ``rejected_commands``.
    """

    joint_limits = PANDA_JOINT_LIMITS
    home_joints = PANDA_HOME_JOINTS
    arm_limits = PANDA

    def __init__(self, arm: SimArm | None = None) -> None:
        self.arm = arm if arm is not None else SimArm()

    @override
    @classmethod
    def from_config(cls, config: RobotConfig) -> SimRobot:
        """Build from the ``[robot]`` section (:class:`SimOptions`); raises :class:`ConfigError`
        naming the option for an unknown key or a bad value."""
        opts = build(SimOptions, config.options or {}, ConfigError, section="robot.options")
        try:
            return cls(_arm_from_options(opts))
        except ValueError as exc:
            raise ConfigError(f"robot.options: {exc}", field="robot.options") from exc

    # -- Robot interface ---------------------------------------------------------------------
    @override
    def connect(self) -> None:
        self.arm.sync()
        logger.info("Simulated Panda ready (%s clock).", "wall" if self.arm.realtime else "manual")

    @override
    def read_state(self) -> RobotState:
        reading = self.arm.read()
        return RobotState(
            time_s=reading.time_s,
            joint_positions=reading.joint_positions,
            joint_velocities=reading.joint_velocities,
            ee=reading.ee,
            gripper=reading.gripper,
            fault="emergency stop (latched until reset_fault)" if reading.estopped else None,
        )

    @override
    def command_ee(self, pose: Pose) -> None:
        self.arm.command_pose(pose)

    @override
    def command_joints(self, joints: np.ndarray) -> None:
        self.arm.command_joints(joints)

    @override
    def command_gripper(self, opening: float) -> None:
        self.arm.command_gripper(opening)

    @override
    def hold(self) -> None:
        self.arm.hold()

    @override
    def stop(self) -> None:
        self.hold()
        logger.info("Simulated Panda stopping.")

    @override
    def emergency_stop(self) -> None:
        self.arm.emergency_stop()

    @override
    def reset_fault(self) -> None:
        self.arm.reset_fault()

    @override
    def close(self) -> None:
        self.hold()

    def inverse_kinematics(self, pose: Pose, seed: np.ndarray) -> np.ndarray | None:
        """The joints the arm would be sent to for ``pose`` near ``seed`` (7 rad); None when
        unreachable. Pure, so the shield may call it (see ``Robot.inverse_kinematics``)."""
        return self.arm.inverse_kinematics(pose, seed)

    def forward_kinematics(self, joints: np.ndarray) -> Pose:
        """The end-effector pose ``read_state`` reports, at ``joints`` (7 rad). Pure, so the
        shield may call it (see ``Robot.forward_kinematics``)."""
        return self.arm.forward_kinematics(joints)

    # -- the simulator's conveniences ---------------------------------------------------------
    @property
    def world(self) -> SimWorld:
        """The scene the arm moves in (reset, judged, drawn)."""
        return self.arm.world

    @property
    def clock(self) -> Clock:
        return self.arm.clock

    @property
    def estopped(self) -> bool:
        return self.arm.estopped

    @property
    def ik_failures(self) -> int:
        return self.arm.ik_failures

    @property
    def rejected_commands(self) -> int:
        return self.arm.rejected_commands

    def step(self, dt_s: float) -> None:
        """Advance a manual-clock simulation by ``dt_s`` seconds (``realtime = false`` only)."""
        self.arm.step(dt_s)

    def go_home(self) -> None:
        """Put the arm at home at rest with the gripper open, at once."""
        self.arm.go_home()

    def true_joints(self) -> np.ndarray:
        return self.arm.true_joints()

    def true_ee(self) -> Pose:
        """The gripper tip pose without noise (for the camera, the expert and the judge)."""
        return self.arm.true_ee()

    def snapshot(self) -> tuple[Pose, float, float]:
        """The true tip pose, gripper opening and sim time, all at one instant (for drawing)."""
        return self.arm.snapshot()


def _arm_from_options(opts: SimOptions) -> SimArm:
    clock: Clock = WallClock() if opts.realtime else ManualClock()
    world = SimWorld(clock=clock, seed=opts.seed, time_limit_s=opts.time_limit_s)
    return SimArm(
        clock=clock,
        world=world,
        command_latency_s=opts.command_latency_s,
        state_noise_std=opts.state_noise_std,
        max_joint_velocity=opts.limit("max_joint_velocity", PANDA_MAX_JOINT_VELOCITY),
        max_joint_acceleration=opts.limit("max_joint_acceleration", PANDA_MAX_JOINT_ACCELERATION),
        tracking_time_constant_s=opts.tracking_time_constant_s,
        physics_dt_s=opts.physics_dt_s,
        gripper_speed=opts.gripper_speed,
        seed=opts.seed,
    )

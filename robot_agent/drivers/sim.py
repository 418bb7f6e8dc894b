"""The simulated Franka Panda as a ``Robot``: a thin adapter over one of the two simulated arms.

- ``engine = "mujoco"`` (the default): :class:`robot_agent.sim.mujoco_arm.MujocoArm`, the Panda
  and its hand in MuJoCo (torque-driven, contact, grasping), judged by a pick-and-place world
  (:class:`robot_agent.sim.mujoco_task.PickPlaceWorld`); the ``sim`` camera renders its scene.
- ``engine = "kinematic"``: :class:`robot_agent.sim.arm.SimArm`, joint targets tracked first-order
  under velocity and acceleration limits, no contact, the "touch the cube" world
  (:class:`robot_agent.sim.world.SimWorld`). Fast; kept for the loop's unit tests.

The simulators live in ``robot_agent.sim``; this module turns the ``[robot]`` section into an arm
and maps the ``Robot`` calls onto it.

Options (``[robot.options]``; all optional; an option the chosen engine does not use is refused)::

    engine = "mujoco"               # "mujoco" | "kinematic"
    realtime = true                 # false: manual clock, advance with step(dt)
    command_latency_s = 0.0
    state_noise_std = 0.0           # radians (and rad/s), on the reported joints
    seed = 0                        # noise and scenes; absent: random
    time_limit_s = 25.0             # the world's episode limit; 15.0 with engine = "kinematic"

    # engine = "mujoco" only
    task = "pick_place"             # "pick_place" | "conveyor" (the named cube rides a belt)
    conveyor_speed = 0.04           # m/s, in (0, 0.2]; task = "conveyor" only
    control_mode = "cartesian_impedance"   # | "joint_impedance" (as the Franka driver's modes)

    # engine = "kinematic" only
    max_joint_velocity = 1.0        # fraction of the Panda limits (a number), or 7 values in rad/s
    max_joint_acceleration = 1.0    # fraction of the Panda limits, or 7 values in rad/s^2
    tracking_time_constant_s = 0.05
    physics_dt_s = 0.001            # MuJoCo steps at a fixed 2 ms
    gripper_speed = 1.0             # opening fraction per second
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
from typing_extensions import override

from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import (
    PANDA_HOME_JOINTS,
    PANDA_JOINT_LIMITS,
    PANDA_MAX_JOINT_ACCELERATION,
    PANDA_MAX_JOINT_VELOCITY,
    ArmReading,
    SimArm,
)
from robot_agent.sim.clock import Clock, ManualClock, WallClock
from robot_agent.sim.world import SimWorld
from safety.arms import PANDA
from safety.config_loader import build, check_types
from safety.types import Pose

if TYPE_CHECKING:
    from robot_agent.config import RobotConfig
    from robot_agent.evaluation import EpisodeWorld
    from robot_agent.sim.mujoco_arm import MujocoArm

__all__ = ["ENGINES", "TASKS", "SimArmLike", "SimOptions", "SimRobot"]

logger = logging.getLogger(__name__)

Engine = Literal["mujoco", "kinematic"]
Task = Literal["pick_place", "conveyor"]
ControlMode = Literal["cartesian_impedance", "joint_impedance"]
ENGINES: tuple[Engine, ...] = ("mujoco", "kinematic")
TASKS: tuple[Task, ...] = ("pick_place", "conveyor")

#: Each engine's defaults for the options only it uses (``None`` in :class:`SimOptions`).
DEFAULTS: dict[Engine, dict[str, object]] = {
    "mujoco": {
        "task": "pick_place",
        "control_mode": "cartesian_impedance",
        "time_limit_s": 25.0,  # pick and place: reach, grasp, carry, release
    },
    "kinematic": {
        "max_joint_velocity": 1.0,
        "max_joint_acceleration": 1.0,
        "tracking_time_constant_s": 0.05,
        "physics_dt_s": 0.001,
        "gripper_speed": 1.0,
        "time_limit_s": 15.0,  # touch a cube
    },
}
CONVEYOR_SPEED_M_S = 0.04
_ONLY = {
    "task": "mujoco",
    "control_mode": "mujoco",
    "conveyor_speed": "mujoco",
    "max_joint_velocity": "kinematic",
    "max_joint_acceleration": "kinematic",
    "tracking_time_constant_s": "kinematic",
    "physics_dt_s": "kinematic",
    "gripper_speed": "kinematic",
}


class SimArmLike(Protocol):
    """The calls :class:`SimRobot` makes of a simulated arm (``SimArm`` and ``MujocoArm`` both
    offer them). ``read`` returns the arm now; ``command_*`` queue targets (after the arm's
    command latency); ``step(dt)`` advances a manual clock."""

    @property
    def clock(self) -> Clock: ...
    @property
    def world(self) -> EpisodeWorld: ...
    @property
    def realtime(self) -> bool: ...
    @property
    def estopped(self) -> bool: ...
    @property
    def ik_failures(self) -> int: ...
    @property
    def rejected_commands(self) -> int: ...

    def read(self) -> ArmReading: ...
    def command_pose(self, pose: Pose) -> None: ...
    def command_joints(self, joints: np.ndarray) -> None: ...
    def command_gripper(self, opening: float) -> None: ...
    def hold(self) -> None: ...
    def emergency_stop(self) -> None: ...
    def reset_fault(self) -> None: ...
    def go_home(self) -> None: ...
    def inverse_kinematics(self, pose: Pose, seed: np.ndarray) -> np.ndarray | None: ...
    def forward_kinematics(self, joints: np.ndarray) -> Pose: ...
    def step(self, dt_s: float) -> None: ...
    def sync(self) -> None: ...
    def true_joints(self) -> np.ndarray: ...
    def true_ee(self) -> Pose: ...
    def snapshot(self) -> tuple[Pose, float, float]: ...


@dataclass(frozen=True)
class SimOptions:
    """The ``[robot.options]`` keys of the simulated arm (the module docstring lists them), built
    by the shared loader: an unknown key, a wrong type, a value out of range or an option the
    chosen ``engine`` does not use raises :class:`ConfigError` naming ``robot.options.<key>``.

    The options of one engine only are ``None`` here when not given: :meth:`value` gives the
    engine's default (:data:`DEFAULTS`). ``max_joint_velocity`` and ``max_joint_acceleration``:
    a number is a fraction (0, 1] of the Panda's documented limits, 7 values give them per joint
    (rad/s, rad/s^2).
    """

    engine: Engine = "mujoco"
    realtime: bool = True
    command_latency_s: float = 0.0
    state_noise_std: float = 0.0
    seed: int | None = None  # None: random
    time_limit_s: float | None = None  # None: the engine's (DEFAULTS)
    task: Task | None = None
    conveyor_speed: float | None = None
    control_mode: ControlMode | None = None
    max_joint_velocity: float | tuple[float, ...] | None = None
    max_joint_acceleration: float | tuple[float, ...] | None = None
    tracking_time_constant_s: float | None = None
    physics_dt_s: float | None = None
    gripper_speed: float | None = None

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="robot.options")
        for name, engine in _ONLY.items():
            if getattr(self, name) is not None and engine != self.engine:
                raise ConfigError(
                    f'robot.options.{name} is used by engine = "{engine}" only; '
                    f'this robot has engine = "{self.engine}"',
                    field=f"robot.options.{name}",
                )
        if self.conveyor_speed is not None:
            if self.task != "conveyor":
                raise ConfigError(
                    'robot.options.conveyor_speed is used by task = "conveyor" only; '
                    f'this robot has task = "{self.value("task")}"',
                    field="robot.options.conveyor_speed",
                )
            if not 0.0 < self.conveyor_speed <= 0.2:
                raise ConfigError(
                    f"robot.options.conveyor_speed is {self.conveyor_speed!r}: must be in (0, 0.2] m/s",
                    field="robot.options.conveyor_speed",
                )
        for name in ("command_latency_s", "state_noise_std"):
            if getattr(self, name) < 0.0:
                raise ConfigError(
                    f"robot.options.{name} is {getattr(self, name)!r}: must be >= 0",
                    field=f"robot.options.{name}",
                )
        if self.seed is not None and self.seed < 0:
            raise ConfigError(
                f"robot.options.seed is {self.seed!r}: must be >= 0 (numpy's seeds are non-negative)",
                field="robot.options.seed",
            )
        if self.time_limit_s is not None and not self.time_limit_s > 0.0:
            raise ConfigError(
                f"robot.options.time_limit_s is {self.time_limit_s!r}: must be > 0 s",
                field="robot.options.time_limit_s",
            )
        for name in ("max_joint_velocity", "max_joint_acceleration"):
            value = getattr(self, name)
            if value is None:
                continue
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

    def value(self, name: str) -> object:
        """Option ``name`` as given, else this engine's default (``None`` if it has none)."""
        given = getattr(self, name)
        if given is not None:
            return given
        if name == "conveyor_speed" and self.value("task") == "conveyor":
            return CONVEYOR_SPEED_M_S
        return DEFAULTS[self.engine].get(name)

    def number(self, name: str) -> float:
        """Option ``name`` (a number) as given or this engine's default. Raises ``KeyError`` for
        one this engine has no value of."""
        value = self.value(name)
        if not isinstance(value, float | int):
            raise KeyError(f"robot.options.{name} has no number for engine = {self.engine!r}")
        return float(value)

    def limit(self, name: str, panda: np.ndarray) -> np.ndarray:
        """Option ``name`` as per-joint values: a fraction (default 1) scales the Panda's ``panda``."""
        value = self.value(name)
        if value is None:
            value = 1.0
        return panda * value if isinstance(value, float | int) else np.asarray(value, dtype=float)


class SimRobot(Robot):
    """The simulated Panda (a new wall-clock MuJoCo arm when ``arm`` is not given).

    Besides the ``Robot`` calls it offers the simulator's conveniences for tests, data generation
    and evaluation: ``world``, ``clock``, ``step(dt)``, ``go_home()``, ``true_joints()``,
    ``true_ee()``, ``snapshot()``, and the counters ``ik_failures`` and ``rejected_commands``.
    ``engine`` says which arm it adapts (``"mujoco"`` or ``"kinematic"``).
    """

    joint_limits = PANDA_JOINT_LIMITS
    home_joints = PANDA_HOME_JOINTS
    arm_limits = PANDA

    def __init__(self, arm: SimArmLike | None = None) -> None:
        self.arm: SimArmLike = arm if arm is not None else _mujoco_arm(SimOptions())

    @property
    def engine(self) -> Engine:
        """``"kinematic"`` for a :class:`SimArm`, else ``"mujoco"``."""
        return "kinematic" if isinstance(self.arm, SimArm) else "mujoco"

    @override
    @classmethod
    def from_config(cls, config: RobotConfig) -> SimRobot:
        """Build from the ``[robot]`` section (:class:`SimOptions`); raises :class:`ConfigError`
        naming the option for an unknown key or a bad value, or ``robot.options.engine`` when the
        MuJoCo Panda model is not installed."""
        opts = build(SimOptions, config.options or {}, ConfigError, section="robot.options")
        try:
            return cls(_mujoco_arm(opts) if opts.engine == "mujoco" else _kinematic_arm(opts))
        except ValueError as exc:
            raise ConfigError(f"robot.options: {exc}", field="robot.options") from exc

    # -- Robot interface ---------------------------------------------------------------------
    @override
    def connect(self) -> None:
        self.arm.sync()
        logger.info(
            "Simulated Panda ready (%s engine, %s clock).",
            self.engine,
            "wall" if self.arm.realtime else "manual",
        )

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
    def world(self) -> EpisodeWorld:
        """The task the arm works at (reset, judged, drawn): a ``PickPlaceWorld`` (MuJoCo) or a
        ``SimWorld`` (kinematic)."""
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


def _clock(opts: SimOptions) -> Clock:
    return WallClock() if opts.realtime else ManualClock()


def _kinematic_arm(opts: SimOptions) -> SimArm:
    clock = _clock(opts)
    world = SimWorld(clock=clock, seed=opts.seed, time_limit_s=opts.number("time_limit_s"))
    return SimArm(
        clock=clock,
        world=world,
        command_latency_s=opts.command_latency_s,
        state_noise_std=opts.state_noise_std,
        max_joint_velocity=opts.limit("max_joint_velocity", PANDA_MAX_JOINT_VELOCITY),
        max_joint_acceleration=opts.limit("max_joint_acceleration", PANDA_MAX_JOINT_ACCELERATION),
        tracking_time_constant_s=opts.number("tracking_time_constant_s"),
        physics_dt_s=opts.number("physics_dt_s"),
        gripper_speed=opts.number("gripper_speed"),
        seed=opts.seed,
    )


def _mujoco_arm(opts: SimOptions) -> MujocoArm:
    """The MuJoCo arm for ``opts``; MuJoCo is imported only here (the kinematic engine does not
    need it). Raises :class:`ConfigError` naming ``robot.options.engine`` when the Panda model or
    MuJoCo is missing."""
    try:
        from robot_agent.sim.mujoco_arm import MujocoArm
        from robot_agent.sim.mujoco_scene import SceneError
        from robot_agent.sim.mujoco_task import PickPlaceWorld
    except ImportError as exc:  # pragma: no cover - mujoco is in the agent extra
        raise ConfigError(
            f'robot.options.engine = "mujoco" needs {exc.name or "mujoco"} (pip install vla-deploy[agent]); '
            'or set engine = "kinematic"',
            field="robot.options.engine",
        ) from exc
    clock = _clock(opts)
    conveyor = opts.value("task") == "conveyor"
    world = PickPlaceWorld(
        clock=clock,
        seed=opts.seed,
        conveyor=conveyor,
        conveyor_speed=opts.number("conveyor_speed") if conveyor else CONVEYOR_SPEED_M_S,
        time_limit_s=opts.number("time_limit_s"),
    )
    mode = opts.value("control_mode")
    assert mode in ("cartesian_impedance", "joint_impedance")  # SimOptions checked it
    try:
        return MujocoArm(
            clock=clock,
            world=world,
            control_mode=mode,
            command_latency_s=opts.command_latency_s,
            state_noise_std=opts.state_noise_std,
            seed=opts.seed,
        )
    except SceneError as exc:
        raise ConfigError(
            f'robot.options.engine = "mujoco": {exc}; or set engine = "kinematic"',
            field="robot.options.engine",
        ) from exc

"""The ``sim`` robot on MuJoCo (the default engine), through the ``Robot`` interface: built from
``[robot]``, it reads its state, and end-effector, joint and gripper commands move the physical arm
there. Manual clock: 1 s of physics runs in ~0.05 s here."""

from __future__ import annotations

import numpy as np
import panda_py
import pytest

from robot_agent.config import RobotConfig
from robot_agent.drivers import create_robot
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import PANDA_HOME_JOINTS
from robot_agent.sim.mujoco_arm import MujocoArm
from robot_agent.sim.mujoco_task import PickPlaceWorld
from safety.rotations import quat_to_matrix
from safety.types import Pose


def manual(**options: object) -> SimRobot:
    """A MuJoCo sim robot on a manual clock, as a ``[robot]`` section builds it."""
    robot = create_robot(RobotConfig(kind="sim", options={"realtime": False, "seed": 0, **options}))
    assert isinstance(robot, SimRobot)
    robot.connect()
    return robot


def rotation_error_rad(a: Pose, b: Pose) -> float:
    relative = quat_to_matrix(a.quaternion).T @ quat_to_matrix(b.quaternion)
    return float(np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0)))


def test_the_default_sim_robot_is_the_mujoco_panda_at_pick_and_place() -> None:
    robot = manual()
    assert robot.engine == "mujoco" and isinstance(robot.arm, MujocoArm)
    assert robot.arm.control_mode == "cartesian_impedance"
    world = robot.world
    assert isinstance(world, PickPlaceWorld)
    assert not world.conveyor and world.time_limit_s == 25.0
    assert world.target in world.instruction
    state = robot.read_state()
    np.testing.assert_allclose(state.joint_positions, PANDA_HOME_JOINTS, atol=1e-9)
    # The reported pose is panda_py's FK of the reported joints: the same TCP as the kinematic sim.
    np.testing.assert_allclose(state.ee.position, panda_py.fk(state.joint_positions)[:3, 3], atol=1e-9)
    np.testing.assert_allclose(state.ee.position, [0.3069, 0.0, 0.4873], atol=1e-3)
    assert state.gripper == pytest.approx(1.0) and state.fault is None
    assert state.time_s == 0.0
    robot.step(0.1)
    assert robot.read_state().time_s == pytest.approx(0.1)


@pytest.mark.parametrize("mode", ["cartesian_impedance", "joint_impedance"])
def test_command_ee_moves_the_arm_to_the_pose(mode: str) -> None:
    robot = manual(control_mode=mode)
    start = robot.read_state().ee
    goal = start.position + np.array([0.08, 0.05, -0.15])
    for s in np.linspace(0.0, 1.0, 50):  # small steps at 50 Hz, as the agent streams them
        robot.command_ee(Pose(start.position + (goal - start.position) * s, start.quaternion))
        robot.step(0.02)
    robot.step(1.5)
    reached = robot.read_state().ee
    # Measured: 1.5 mm (Cartesian impedance), 0.2 mm (joint impedance through the IK).
    assert np.linalg.norm(reached.position - goal) < 0.004
    assert rotation_error_rad(reached, start) < 0.03
    # No noise set: the reading is the truth (the FK of the joints and the model's TCP site agree to 1e-6 m).
    np.testing.assert_allclose(robot.true_ee().position, reached.position, atol=1e-5)
    assert robot.ik_failures == 0


def test_command_joints_moves_the_joints_there() -> None:
    robot = manual()
    target = PANDA_HOME_JOINTS + np.array([0.2, -0.1, 0.1, 0.2, -0.2, 0.1, 0.3])
    robot.command_joints(target)
    robot.step(2.0)
    state = robot.read_state()
    np.testing.assert_allclose(state.joint_positions, target, atol=0.03)  # measured: 0.016 rad
    np.testing.assert_allclose(state.joint_velocities, 0.0, atol=0.05)


def test_command_gripper_closes_and_opens_the_hand() -> None:
    robot = manual()
    robot.command_gripper(0.0)
    robot.step(1.0)
    assert robot.read_state().gripper == pytest.approx(0.0, abs=0.01)
    robot.command_gripper(0.5)
    robot.step(1.0)
    assert robot.read_state().gripper == pytest.approx(0.5, abs=0.01)


def test_command_latency_delays_the_motion() -> None:
    robot = manual(command_latency_s=0.1)
    robot.command_joints(PANDA_HOME_JOINTS + 0.2)
    robot.step(0.09)
    np.testing.assert_allclose(robot.true_joints(), PANDA_HOME_JOINTS, atol=1e-6)
    robot.step(0.1)
    assert np.max(np.abs(robot.true_joints() - PANDA_HOME_JOINTS)) > 0.01


def test_emergency_stop_brakes_and_latches_until_reset_fault() -> None:
    robot = manual()
    robot.command_joints(PANDA_HOME_JOINTS + 0.5)
    robot.step(0.2)
    robot.emergency_stop()
    assert robot.read_state().fault is not None and robot.estopped
    robot.step(0.5)
    braked = robot.true_joints()
    robot.command_joints(PANDA_HOME_JOINTS)
    robot.command_gripper(0.0)
    robot.step(0.5)
    np.testing.assert_allclose(robot.true_joints(), braked, atol=2e-3)
    assert robot.rejected_commands == 2 and robot.read_state().gripper == pytest.approx(1.0, abs=0.01)
    robot.reset_fault()
    assert robot.read_state().fault is None


def test_the_conveyor_task_runs_the_belt_under_the_named_cube() -> None:
    robot = manual(task="conveyor", conveyor_speed=0.05)
    world = robot.world
    assert isinstance(world, PickPlaceWorld) and world.conveyor and world.conveyor_speed == 0.05
    assert isinstance(robot.arm, MujocoArm) and robot.arm.ids.belt_actuator is not None
    before = world.target_cube.position
    robot.step(1.0)
    after = world.target_cube.position
    assert after[1] - before[1] == pytest.approx(0.05, abs=0.01)  # carried along +y at the belt's speed
    assert abs(after[0] - before[0]) < 0.005


def test_time_limit_and_seed_reach_the_world() -> None:
    a, b = manual(time_limit_s=40.0, seed=3), manual(seed=3)
    assert a.world.time_limit_s == 40.0  # type: ignore[attr-defined]
    assert a.world.reset(11) == b.world.reset(11)
    assert a.world.cubes == b.world.cubes  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"tracking_time_constant_s": 0.05}, "robot.options.tracking_time_constant_s"),
        ({"gripper_speed": 1.0}, "robot.options.gripper_speed"),
        ({"command_latency_s": -0.1}, "robot.options.command_latency_s"),
        ({"state_noise_std": -1.0}, "robot.options.state_noise_std"),
        ({"seed": -1}, "robot.options.seed"),
        ({"engine": "kinematic", "seed": -1}, "robot.options.seed"),
        ({"task": "conveyor", "conveyor_speed": 0.0}, "robot.options.conveyor_speed"),
    ],
)
def test_bad_options_are_one_line_naming_the_key(options: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        SimRobot.from_config(RobotConfig(options=options))
    assert info.value.field == field
    message = str(info.value)
    assert "\n" not in message and message.startswith(field)

"""The kinematic simulated Panda (``engine = "kinematic"``): real kinematics, limited tracking,
latency, hold, e-stop, config. The MuJoCo engine's driver tests are in ``test_sim_robot_mujoco.py``."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import panda_py
import pytest

from robot_agent.config import RobotConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import PANDA_HOME_JOINTS, PANDA_MAX_JOINT_ACCELERATION, PANDA_MAX_JOINT_VELOCITY
from safety.rotations import quat_to_matrix
from safety.types import Pose


def manual(**options: object) -> SimRobot:
    return SimRobot.from_config(
        RobotConfig(options={"engine": "kinematic", "realtime": False, "seed": 0, **options})
    )


def run(robot: SimRobot, seconds: float, dt: float = 0.01) -> list[np.ndarray]:
    """Step the manual clock, returning the true joints after each step."""
    out = []
    for _ in range(round(seconds / dt)):
        robot.step(dt)
        out.append(robot.true_joints())
    return out


def test_reported_pose_is_panda_fk_of_the_joints_with_the_hand_tcp() -> None:
    robot = manual()
    state = robot.read_state()
    np.testing.assert_allclose(state.joint_positions, PANDA_HOME_JOINTS)
    transform = panda_py.fk(state.joint_positions)
    np.testing.assert_allclose(state.ee.position, transform[:3, 3], atol=1e-12)
    np.testing.assert_allclose(quat_to_matrix(state.ee.quaternion), transform[:3, :3], atol=1e-9)
    # Home: tip 0.307 m ahead, 0.487 m up (flange 0.590 m minus the 0.1034 m hand TCP), pointing down.
    np.testing.assert_allclose(state.ee.position, [0.3069, 0.0, 0.4873], atol=1e-3)
    assert transform[2, 2] == pytest.approx(-1.0)
    assert state.gripper == 1.0 and state.fault is None


def test_command_ee_reaches_the_pose_through_ik() -> None:
    robot = manual()
    start = robot.read_state().ee
    goal = start.position + np.array([0.1, 0.05, -0.2])
    for s in np.linspace(0.0, 1.0, 50):  # small steps, as the agent sends them
        robot.command_ee(Pose(start.position + (goal - start.position) * s, start.quaternion))
        robot.step(0.02)
    run(robot, 1.0)
    state = robot.read_state()
    np.testing.assert_allclose(state.ee.position, goal, atol=1e-3)
    np.testing.assert_allclose(panda_py.fk(state.joint_positions)[:3, 3], goal, atol=1e-3)
    assert robot.ik_failures == 0


def test_unreachable_target_is_refused_and_the_last_target_kept(caplog: pytest.LogCaptureFixture) -> None:
    robot = manual()
    before = robot.read_state()
    with caplog.at_level(logging.WARNING, logger="robot_agent.sim.arm"):
        robot.command_ee(Pose(np.array([2.0, 0.0, 0.5]), before.ee.quaternion))
        robot.command_ee(Pose(np.array([2.0, 0.1, 0.5]), before.ee.quaternion))
    run(robot, 0.5)
    np.testing.assert_allclose(robot.read_state().joint_positions, before.joint_positions, atol=1e-9)
    assert robot.ik_failures == 2
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1  # once per streak
    with pytest.raises(ValueError, match="non-finite"):
        robot.command_ee(Pose(np.array([np.nan, 0.0, 0.5]), before.ee.quaternion))


@pytest.mark.parametrize("fraction", [1.0, 0.3])
def test_tracking_converges_within_velocity_and_acceleration_limits(fraction: float) -> None:
    robot = manual(max_joint_velocity=fraction, max_joint_acceleration=fraction)
    target = PANDA_HOME_JOINTS + np.array([0.8, -0.4, 0.5, 0.6, -0.7, 0.5, 0.9])
    robot.command_joints(target)
    dt = 0.002
    qs = np.array([PANDA_HOME_JOINTS, *run(robot, 4.0, dt)])
    v = np.diff(qs, axis=0) / dt
    a = np.diff(v, axis=0) / dt
    assert np.all(np.abs(v) <= PANDA_MAX_JOINT_VELOCITY * fraction + 1e-6)
    assert np.all(np.abs(a) <= PANDA_MAX_JOINT_ACCELERATION * fraction + 1e-6)
    np.testing.assert_allclose(qs[-1], target, atol=1e-4)
    # The big moves saturate the velocity limit (the limit is what shapes the motion).
    assert np.max(np.abs(v[:, 6])) == pytest.approx(PANDA_MAX_JOINT_VELOCITY[6] * fraction, rel=1e-3)
    # Brakes in time: overshoot only from the 1 ms integration step (a few milliradians).
    overshoot = (qs - target) * np.sign(target - PANDA_HOME_JOINTS)
    assert np.max(overshoot) < 5e-3


def test_command_latency_delays_the_motion() -> None:
    robot = manual(command_latency_s=0.1)
    robot.command_joints(PANDA_HOME_JOINTS + 0.2)
    run(robot, 0.09, 0.001)
    np.testing.assert_allclose(robot.true_joints(), PANDA_HOME_JOINTS, atol=1e-12)
    run(robot, 0.05, 0.001)
    assert np.all(robot.true_joints() > PANDA_HOME_JOINTS + 1e-4)


def test_state_noise_is_on_the_reading_not_the_arm() -> None:
    robot = manual(state_noise_std=0.01)
    readings = np.array([robot.read_state().joint_positions for _ in range(200)])
    assert 0.005 < readings.std(axis=0).mean() < 0.02
    np.testing.assert_allclose(readings.mean(axis=0), PANDA_HOME_JOINTS, atol=0.005)
    np.testing.assert_allclose(robot.true_joints(), PANDA_HOME_JOINTS)


def test_hold_stops_the_arm_near_where_it_was() -> None:
    robot = manual()
    robot.command_joints(PANDA_HOME_JOINTS + 1.0)
    run(robot, 0.3)
    moving = robot.read_state()
    assert np.max(np.abs(moving.joint_velocities)) > 0.5
    robot.hold()
    qs = run(robot, 1.0)
    np.testing.assert_allclose(robot.read_state().joint_velocities, 0.0, atol=1e-3)
    # Braking from speed under the acceleration limit: a short way past, then back, no further.
    assert np.max(np.abs(qs[-1] - moving.joint_positions)) < 0.1
    np.testing.assert_allclose(qs[-1], qs[-20], atol=5e-4)


def test_emergency_stop_freezes_and_latches_until_reset_fault() -> None:
    robot = manual()
    robot.command_joints(PANDA_HOME_JOINTS + 1.0)
    run(robot, 0.3)
    robot.emergency_stop()
    frozen = robot.true_joints()
    state = robot.read_state()
    assert state.fault is not None and "emergency stop" in state.fault
    np.testing.assert_allclose(state.joint_velocities, 0.0)
    robot.command_joints(PANDA_HOME_JOINTS)
    robot.command_ee(Pose(np.array([0.5, 0.0, 0.3]), np.array([1.0, 0, 0, 0])))
    run(robot, 0.5)
    np.testing.assert_allclose(robot.true_joints(), frozen)
    assert robot.rejected_commands == 2
    robot.reset_fault()
    assert robot.read_state().fault is None
    robot.command_joints(PANDA_HOME_JOINTS)
    run(robot, 2.0)
    np.testing.assert_allclose(robot.true_joints(), PANDA_HOME_JOINTS, atol=1e-4)


def test_gripper_moves_at_its_speed() -> None:
    robot = manual(gripper_speed=2.0)
    robot.command_gripper(0.0)
    run(robot, 0.25)
    assert robot.read_state().gripper == pytest.approx(0.5, abs=0.02)
    run(robot, 0.5)
    assert robot.read_state().gripper == 0.0


def test_world_reset_sends_the_arm_home_and_the_world_sees_the_tip() -> None:
    robot = manual()
    robot.command_joints(PANDA_HOME_JOINTS + 0.3)
    run(robot, 1.0)
    robot.world.reset(3)
    np.testing.assert_allclose(robot.true_joints(), PANDA_HOME_JOINTS)
    np.testing.assert_allclose(robot.world.tip, robot.true_ee().position)


def test_realtime_robot_advances_on_the_wall_clock() -> None:
    robot = SimRobot.from_config(RobotConfig(options={"engine": "kinematic"}))
    with pytest.raises(RuntimeError, match="wall clock"):
        robot.step(0.1)
    t0 = robot.read_state().time_s
    robot.command_joints(PANDA_HOME_JOINTS + 0.05)
    # Poll (bounded) until the arm has moved: the model advances with time.monotonic().
    deadline = time.monotonic() + 5.0
    while not np.all((state := robot.read_state()).joint_positions > PANDA_HOME_JOINTS + 0.049):
        if time.monotonic() > deadline:
            pytest.fail("the wall-clock sim never reached its target")
        time.sleep(0.005)
    assert state.time_s > t0


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"bogus": 1}, "bogus"),
        ({"max_joint_velocity": 1.5}, "max_joint_velocity"),
        ({"max_joint_acceleration": [1, 2]}, "max_joint_acceleration"),
        ({"command_latency_s": -1.0}, "command_latency_s"),
        ({"physics_dt_s": 0.0}, "physics_dt_s"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SimRobot.from_config(RobotConfig(options={"engine": "kinematic", **options}))


def test_limits_are_the_documented_panda_ones() -> None:
    lower, upper = SimRobot.joint_limits
    assert lower[3] == pytest.approx(-3.0718) and upper[5] == pytest.approx(3.7525)
    assert np.all(lower < SimRobot.home_joints) and np.all(SimRobot.home_joints < upper)
    np.testing.assert_allclose(
        SimRobot.home_joints, [0, -math.pi / 4, 0, -3 * math.pi / 4, 0, math.pi / 2, math.pi / 4]
    )


@pytest.mark.parametrize(
    "goal", [(0.49, 0.0, 0.10), (0.39, 0.04, 0.07), (0.60, -0.20, 0.06), (0.40, 0.22, 0.06)]
)
def test_ik_is_continuous_along_small_steps_through_the_shoulder_singularity(
    goal: tuple[float, float, float],
) -> None:
    # Straight down-and-forward paths from home cross joint 2 = 0, where the closed form alone
    # flips branch or loses precision; 3 mm steps must give small joint steps all the way.
    robot = manual()
    home = robot.read_state().ee
    q = robot.true_joints()
    crossed = False
    for s in np.linspace(0.0, 1.0, 150)[1:]:
        pose = Pose(home.position + (np.array(goal) - home.position) * s, home.quaternion)
        q_next = robot.inverse_kinematics(pose, q)
        assert q_next is not None, f"no IK at {pose.position}"
        np.testing.assert_allclose(panda_py.fk(q_next)[:3, 3], pose.position, atol=1e-3)
        assert np.max(np.abs(q_next - q)) < 0.05
        crossed |= bool(np.sign(q_next[1]) != np.sign(q[1]))
        q = q_next
    assert robot.ik_failures == 0
    if goal[0] < 0.5:
        assert crossed  # the case that matters was exercised

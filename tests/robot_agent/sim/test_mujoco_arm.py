"""The MuJoCo Panda: impedance laws, torque limits, e-stop, hold, latency, noise, determinism,
contact watch. One arm per module (a scene takes about 1 s to build), reset per test.

Tolerances are what the model gives, measured (3 s after a step command): joint 7 has 1.2 N m of
friction (frictionloss in dm-robotics-panda's model) against a 50 N m/rad spring, so it stops up to
1.2 / 50 = 0.024 rad short (measured 0.011 rad, MuJoCo's friction is soft); the other joints within
2e-4 rad; the Cartesian law within 0.7 mm and 0.4 degree.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from robot_agent.sim.clock import ManualClock
from robot_agent.sim.mujoco_arm import MujocoArm
from robot_agent.sim.mujoco_scene import JOINT_TORQUE_LIMITS
from robot_agent.sim.mujoco_task import PickPlaceWorld
from robot_agent.sim.world import Cube
from safety.rotations import quat_to_matrix
from safety.types import Pose
from tests.robot_agent.sim._mujoco_script import DOWN, go

FAR = np.array([1.0, 0.8, -1.0, 0.8, 1.5, 0.8, 1.5])  # a step from home that saturates every joint


def make_arm(**kwargs: float) -> MujocoArm:
    clock = ManualClock()
    return MujocoArm(clock=clock, world=PickPlaceWorld(clock=clock, seed=3), seed=7, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shared_arm() -> MujocoArm:
    return make_arm()


@pytest.fixture
def arm(shared_arm: MujocoArm) -> Iterator[MujocoArm]:
    shared_arm.reset_fault()
    shared_arm.control_mode = "cartesian_impedance"
    shared_arm.command_latency_s = 0.0
    shared_arm.world.reset(seed=5)
    yield shared_arm
    shared_arm._step_observers.clear()


def joint_speed(arm: MujocoArm) -> float:
    return float(np.abs(arm.data.qvel[arm.ids.arm_dof]).max())


def test_joint_impedance_converges_to_a_joint_target(arm: MujocoArm) -> None:
    target = arm.home_joints + np.array([0.3, -0.2, 0.2, 0.3, -0.3, 0.3, 0.4])
    arm.command_joints(target)
    arm.step(3.0)
    error = np.abs(arm.true_joints() - target)
    assert error[:6].max() < 2e-3
    assert error[6] < 0.024  # joint 7's friction against its 50 N m/rad spring
    assert joint_speed(arm) < 0.01


def test_cartesian_impedance_tracks_a_pose_target(arm: MujocoArm) -> None:
    target = arm.true_ee().position + np.array([0.15, 0.15, -0.25])
    arm.command_pose(Pose(target, DOWN))
    arm.step(3.0)
    ee = arm.true_ee()
    assert np.linalg.norm(ee.position - target) < 2e-3
    cos_angle = (np.trace(quat_to_matrix(ee.quaternion).T @ quat_to_matrix(DOWN)) - 1) / 2
    assert np.degrees(np.arccos(min(1.0, cos_angle))) < 1.0


@pytest.mark.parametrize("mode", ["joints", "pose"])
def test_torques_never_exceed_the_documented_limits(arm: MujocoArm, mode: str) -> None:
    peak = np.zeros(7)

    def watch(a: MujocoArm) -> None:
        peak[:] = np.maximum(peak, np.abs(a.data.actuator_force[a.ids.arm_actuators]))

    arm.add_step_observer(watch)
    if mode == "joints":
        arm.command_joints(arm.home_joints + FAR)
    else:
        arm.command_pose(Pose(arm.true_ee().position + np.array([0.3, 0.3, -0.4]), DOWN))
    arm.step(1.0)
    assert np.all(peak <= JOINT_TORQUE_LIMITS + 1e-9)
    assert np.any(peak >= JOINT_TORQUE_LIMITS - 1e-9)  # the command did saturate


def test_emergency_stop_brakes_refuses_commands_and_reset_fault_resumes(arm: MujocoArm) -> None:
    arm.command_joints(arm.home_joints + FAR)
    arm.step(0.3)
    assert joint_speed(arm) > 1.5  # a fast motion (measured 1.9 rad/s)
    at_stop = arm.true_ee().position
    arm.emergency_stop()
    travel = 0.0
    for _ in range(100):
        arm.step(0.002)
        travel = max(travel, float(np.linalg.norm(arm.true_ee().position - at_stop)))
    assert travel < 0.02  # measured 1.1 cm
    arm.step(0.3)
    assert joint_speed(arm) < 0.01
    held = arm.true_joints()
    before = arm.rejected_commands
    arm.command_joints(arm.home_joints)
    arm.command_pose(Pose(arm.true_ee().position + np.array([0, 0, 0.1]), DOWN))
    arm.command_gripper(0.0)
    assert arm.rejected_commands == before + 3
    arm.step(0.5)
    assert np.abs(arm.true_joints() - held).max() < 0.005
    assert arm.read().estopped
    arm.reset_fault()
    assert not arm.estopped
    arm.command_joints(arm.home_joints)
    arm.step(3.0)
    assert np.abs(arm.true_joints() - arm.home_joints)[:6].max() < 2e-3


def test_hold_keeps_the_arm_still(arm: MujocoArm) -> None:
    arm.command_joints(arm.home_joints + FAR)
    arm.step(0.3)
    arm.hold()
    arm.step(0.5)
    settled = arm.true_joints()
    arm.step(1.0)
    assert np.abs(arm.true_joints() - settled).max() < 0.01  # joint 7 creeps through its friction
    assert joint_speed(arm) < 0.01


def test_command_latency_delays_a_command_by_the_configured_time(arm: MujocoArm) -> None:
    arm.command_latency_s = 0.1
    arm.step(0.5)  # at rest at home
    moved: list[float] = []

    def watch(a: MujocoArm) -> None:
        if not moved and joint_speed(a) > 1e-3:
            moved.append(float(a.data.time))  # the physics time of this step's end

    arm.add_step_observer(watch)
    t0 = float(arm.data.time)
    arm.command_joints(arm.home_joints + FAR)
    arm.step(0.3)
    assert moved, "the command never took effect"
    # the first step driven by the command is the one from t0 + 0.1 s to t0 + 0.102 s
    assert moved[0] - t0 == pytest.approx(0.1 + arm.physics_dt_s, abs=1e-9)


def test_same_seed_same_commands_bit_identical_and_noise_only_on_readings() -> None:
    a, b = make_arm(), make_arm()
    for arm in (a, b):
        arm.world.reset(seed=5)
        go(arm, arm.true_ee().position + np.array([0.1, 0.1, -0.2]), 0.0, 1.0)
        arm.command_joints(arm.home_joints + FAR)
        arm.step(0.5)
    np.testing.assert_array_equal(a.data.qpos, b.data.qpos)
    a.state_noise_std = 0.01
    offsets = []
    for arm in (a, b):
        arm.command_joints(arm.home_joints)
    for _ in range(200):
        offsets.append(a.read().joint_positions - a.true_joints())
        b.read()
        a.step(0.002)
        b.step(0.002)
    np.testing.assert_array_equal(a.data.qpos, b.data.qpos)  # the physics never sees the noise
    assert np.std(offsets) == pytest.approx(0.01, rel=0.1)
    assert np.array_equal(b.read().joint_positions, b.true_joints())


def test_table_force_rises_when_pushed_into_the_table_and_lowest_point_falls(arm: MujocoArm) -> None:
    assert arm.arm_geom_lowest_z() > 0.05  # home: 0.10 m
    assert arm.peak_table_force_n == 0.0
    go(arm, np.array([0.45, -0.35, 0.10]), 1.0, 1.0)  # a clear spot beside the cubes
    go(arm, np.array([0.45, -0.35, -0.03]), 1.0, 1.0)
    assert arm.arm_geom_lowest_z() < 0.005
    assert arm.peak_table_force_n > 10.0


def test_clean_pick_never_touches_the_table(arm: MujocoArm) -> None:
    arm.world.set_scene([Cube("red", (0.5, 0.0, 0.02)), Cube("green", (0.4, 0.2, 0.02)), Cube("blue", (0.6, -0.2, 0.02))], "red")
    go(arm, np.array([0.5, 0.0, 0.15]), 1.0, 1.5)
    go(arm, np.array([0.5, 0.0, 0.025]), 1.0, 0.8)
    arm.step(0.3)
    go(arm, arm.true_ee().position, 0.0, 0.6)
    go(arm, arm.true_ee().position + np.array([0, 0, 0.15]), 0.0, 1.0)
    assert arm.world.cube("red").position[2] > 0.1  # it was picked
    assert arm.peak_table_force_n == 0.0
    assert arm.arm_geom_lowest_z() > 0.1

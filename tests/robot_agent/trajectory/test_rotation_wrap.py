"""Rotations across the pi wrap of rotation vectors (issue 10, kind 5), agent side.

The scenario of the issue: the reference orientation is the tool pointing down, and the policy
turns the tool about its axis +2 degrees per action past 180 degrees from there. The waypoints'
rotation vectors (relative to the reference) used to jump from +3.107 to -3.107 rad about z and
the interpolated target spun 360 degrees the wrong way within 0.1 s. Here chunks arrive as they
would from a policy (every 50 ms, 10 actions of 0.1 s, capture 30 ms before arrival) for every
action space with a rotation, every blend mode and every interpolation, and the target's
angular velocity at 100 Hz must stay near the 0.35 rad/s the waypoints imply.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from robot_agent.action_space import ActionSpace
from robot_agent.drivers.base import RobotState
from robot_agent.trajectory import Trajectory
from safety.rotations import quat_angle, quat_multiply, quat_to_rotvec, rotvec_to_quat
from safety.types import Pose

DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # tool pointing down: pi about x
DT = 0.1  # policy period
TICK = 0.01  # control period
STEP = math.radians(2.0)  # per action
RATE = STEP / DT  # rad/s the waypoints imply
START_YAW = math.radians(160.0)  # the turn passes 180 degrees after 1 s
LIMITS = (np.full(7, 2.0), np.full(7, 20.0), np.full(7, 400.0))


def yaw(t: float) -> float:
    return START_YAW + RATE * t


def orientation(t: float) -> np.ndarray:
    """The tool turned about its (vertical) axis by yaw(t), from the reference."""
    return quat_multiply(rotvec_to_quat(np.array([0.0, 0.0, yaw(t)])), DOWN)


def robot_state(t: float) -> RobotState:
    return RobotState(
        time_s=t,
        joint_positions=np.zeros(7),
        joint_velocities=np.zeros(7),
        ee=Pose(position=np.array([0.4, 0.0, 0.3]), quaternion=orientation(t)),
        gripper=1.0,
    )


def actions(space: ActionSpace, capture: float) -> np.ndarray:
    """A chunk from a policy that follows the turn exactly, in its own action space."""
    rows = []
    cap_q = orientation(capture)
    for k in range(10):
        q = orientation(capture + k * DT)
        if space.is_delta:
            rot = quat_to_rotvec(quat_multiply(q, np.array([-cap_q[0], -cap_q[1], -cap_q[2], cap_q[3]])))
            rows.append([0.0, 0.0, 0.0, *rot, 1.0])
        else:
            rows.append([0.4, 0.0, 0.3, *quat_to_rotvec(q), 1.0])  # base frame, angle in [0, pi]
    return np.array(rows)


def run(space: ActionSpace, traj: Trajectory, seconds: float = 2.0) -> list[np.ndarray]:
    """Chunks every 50 ms (captured 30 ms before); the target quaternion at every tick."""
    quats: list[np.ndarray] = []
    next_chunk = 0.0
    for i in range(int(seconds / TICK)):
        now = i * TICK
        if now >= next_chunk - 1e-9:
            capture = max(now - 0.03, 0.0)
            waypoints = space.to_waypoints(actions(space, capture), robot_state(capture))
            start = space.waypoint_of(robot_state(now))
            traj.add_chunk(waypoints, capture, DT, now, start=start)
            next_chunk += 0.05
        value = traj.sample(now)
        assert value is not None
        quats.append(space.target_of(value, now).ee.quaternion)
    return quats


@pytest.mark.parametrize("name", ["ee_absolute", "ee_delta"])
@pytest.mark.parametrize("blend_mode", ["replace", "crossfade", "ensemble"])
@pytest.mark.parametrize("interpolation", ["linear", "cubic", "minimum_jerk", "ruckig"])
def test_turning_past_pi_never_spins_the_target(name: str, blend_mode: str, interpolation: str) -> None:
    space = ActionSpace(name, 7, 7, reference=DOWN)
    traj = Trajectory(
        blend_mode=blend_mode,
        interpolation=interpolation,
        control_dt=TICK,
        ruckig_limits=LIMITS,
        unwrap=space.unwrap_waypoints,
    )
    quats = run(space, traj)
    speeds = np.array([quat_angle(a, b) / TICK for a, b in itertools.pairwise(quats)])
    # The wrong-way spin was 2*pi in 0.1 s (63 rad/s). Once moving (after 0.3 s, the turn
    # crossing pi at 1 s), the target turns exactly as fast as the waypoints do; before, the
    # smooth curves leave the held pose at rest and catch up a little faster.
    settled = int(0.3 / TICK)
    np.testing.assert_allclose(speeds[settled:], RATE, rtol=0.02)
    assert speeds[:settled].max() <= 1.6 * RATE, speeds[:settled].max()
    # And the turn really went past 180 degrees, the right way (the tool keeps turning +z).
    assert quat_angle(quats[-1], orientation(2.0 * (1 - TICK / 2))) < math.radians(6.0)


def test_issue_example_waypoints_continue_past_pi() -> None:
    """The example: ee_absolute, reference tool-down, +2 degrees per action past 180 degrees.
    The waypoints' rotation about z goes 3.107, 3.142, 3.176 (was 3.107, -3.107, ...)."""
    space = ActionSpace("ee_absolute", 7, 7, reference=DOWN)
    capture = (math.radians(176.0) - START_YAW) / RATE  # yaw 176 deg: the chunk spans 176..194
    waypoints = space.to_waypoints(actions(space, capture), robot_state(capture))
    expected = math.radians(176.0) + STEP * np.arange(10)
    np.testing.assert_allclose(waypoints[:, 5], expected, atol=1e-9)
    np.testing.assert_allclose(waypoints[:, 3:5], 0.0, atol=1e-9)


def test_a_chunk_on_the_other_branch_joins_the_plan_without_a_turn() -> None:
    """The plan is at +3.2 rad about z (past pi, unwrapped); a chunk converted afresh from a
    capture reads -3.08 rad (its principal value, the same rotation): it is taken next to the
    plan, not 6.28 rad away from it."""
    space = ActionSpace("ee_delta", 7, 7, reference=DOWN)
    traj = Trajectory(interpolation="minimum_jerk", control_dt=TICK, unwrap=space.unwrap_waypoints)
    base = np.array([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 1.0])
    ramp = np.tile(base, (10, 1))
    ramp[:, 5] = 3.1 + 0.01 * np.arange(10)
    traj.add_chunk(ramp, 0.0, DT, 0.0, start=ramp[0])
    other = ramp.copy()
    other[:, 5] = ramp[:, 5] - 2 * math.pi  # same rotations, the other representative
    traj.add_chunk(other, 0.2, DT, 0.25, start=ramp[0])
    values = np.array([traj.sample(0.25 + k * TICK) for k in range(60)])
    assert np.abs(np.diff(values[:, 5])).max() < 0.01
    assert values[-1, 5] > math.pi


def test_without_unwrap_the_same_chunk_would_spin() -> None:
    """What the unwrap prevents (and why the agent must pass it): the same two chunks, taken
    as they come, drive the rotation vector across 2*pi within the fade."""
    traj = Trajectory(interpolation="minimum_jerk", control_dt=TICK)
    base = np.array([0.4, 0.0, 0.3, 0.0, 0.0, 0.0, 1.0])
    ramp = np.tile(base, (10, 1))
    ramp[:, 5] = 3.1 + 0.01 * np.arange(10)
    traj.add_chunk(ramp, 0.0, DT, 0.0, start=ramp[0])
    other = ramp.copy()
    other[:, 5] -= 2 * math.pi
    traj.add_chunk(other, 0.2, DT, 0.25, start=ramp[0])
    values = np.array([traj.sample(0.25 + k * TICK) for k in range(60)])
    assert np.abs(np.diff(values[:, 5])).max() > 0.1


def test_joint_waypoints_are_not_wrapped() -> None:
    """A joint going from 3.1 to 3.2 rad is not the same command as -3.08: joints never wrap."""
    space = ActionSpace("joint_absolute", 8, 7)
    traj = Trajectory(interpolation="cubic", control_dt=TICK, unwrap=space.unwrap_waypoints)
    chunk = np.zeros((10, 8))
    chunk[:, 0] = 3.1 + 0.02 * np.arange(10)
    waypoints = space.to_waypoints(chunk, robot_state(0.0))
    np.testing.assert_array_equal(space.unwrap_waypoints(waypoints, -waypoints[0]), waypoints)
    traj.add_chunk(waypoints, 0.0, DT, 0.0, start=waypoints[0])
    np.testing.assert_allclose(traj.sample(0.9)[0], 3.28)

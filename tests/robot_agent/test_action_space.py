from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_agent.action_space import ActionSpace, state_vector
from robot_agent.errors import SpecMismatch
from robot_agent.robot import RobotState
from safety.rotations import quat_angle, quat_multiply, rotvec_to_quat
from safety.types import Pose

# A gripper pointing down: rotation by pi about x, right on the rotation-vector discontinuity.
DOWN = np.array([1.0, 0.0, 0.0, 0.0])


def state(position=(0.3, 0.0, 0.5), quat=DOWN, joints=None, gripper=0.8) -> RobotState:
    q = np.arange(7) * 0.1 if joints is None else np.asarray(joints, float)
    return RobotState(
        time_s=1.0,
        joint_positions=q,
        joint_velocities=np.zeros(7),
        ee=Pose(position=np.array(position, float), quaternion=np.array(quat, float)),
        gripper=gripper,
    )


def test_ee_delta_is_displacement_from_the_pose_at_capture() -> None:
    space = ActionSpace("ee_delta", 7, 7, reference=DOWN)
    capture = state()
    actions = np.array([[0.01, -0.02, 0.03, 0.0, 0.0, 0.0, 0.5]])
    target = space.target_of(space.to_waypoints(actions, capture)[0], 2.0)
    np.testing.assert_allclose(target.ee.position, [0.31, -0.02, 0.53])
    assert quat_angle(target.ee.quaternion, DOWN) < 1e-12
    assert target.gripper == 0.5 and target.time_s == 2.0


def test_ee_delta_rotation_is_applied_in_the_base_frame() -> None:
    """R = exp(drot) * R_capture: a base-frame yaw turns a downward gripper about the world z."""
    space = ActionSpace("ee_delta", 7, 7, reference=DOWN)
    drot = np.array([0.0, 0.0, 0.3])
    waypoint = space.to_waypoints(np.array([[0, 0, 0, *drot, 1.0]]), state())[0]
    quat = space.target_of(waypoint, 0.0).ee.quaternion
    expected = quat_multiply(rotvec_to_quat(drot), DOWN)
    assert quat_angle(quat, expected) < 1e-12
    # and not in the tool frame (which would be R_capture * exp(drot)): for DOWN that is a -z yaw
    assert quat_angle(quat, quat_multiply(DOWN, rotvec_to_quat(drot))) > 0.5


def test_ee_waypoints_near_a_downward_gripper_are_small_and_continuous() -> None:
    """Waypoints are relative to the reference orientation, so tiny rotations either side of pi
    give tiny, nearby values rather than jumping across the discontinuity."""
    space = ActionSpace("ee_absolute", 7, 7, reference=DOWN)
    a = space.to_waypoints(np.array([[0.3, 0, 0.5, math.pi - 1e-3, 0, 0, 1]]), state())[0]
    b = space.to_waypoints(np.array([[0.3, 0, 0.5, -(math.pi - 1e-3), 0, 0, 1]]), state())[0]
    assert np.abs(a[3:6]).max() < 2e-3 and np.abs(b[3:6]).max() < 2e-3
    assert np.abs(a[3:6] - b[3:6]).max() < 3e-3


@pytest.mark.parametrize(
    ("name", "actions"),
    [
        ("ee_delta", [[0.01, 0.02, -0.01, 0.05, -0.02, 0.1, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]),
        ("ee_absolute", [[0.4, 0.1, 0.3, 3.0, 0.1, 0.0, 0.2], [0.35, -0.1, 0.2, -3.0, 0.0, 0.2, 1.0]]),
        ("joint_absolute", [[0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.7, 1.0]]),
        ("joint_delta", [[0.01, -0.02, 0.0, 0.03, 0.0, 0.0, -0.01, 0.5]]),
    ],
)
def test_actions_round_trip_through_waypoints(name: str, actions: list[list[float]]) -> None:
    """prev_actions are sent back in the policy's own space: to_actions inverts to_waypoints."""
    arr = np.array(actions)
    space = ActionSpace(name, arr.shape[1], 7, reference=DOWN)
    capture = state()
    back = space.to_actions(space.to_waypoints(arr, capture), capture)
    if name.startswith("ee"):
        np.testing.assert_allclose(back[:, :3], arr[:, :3], atol=1e-6)
        for got, want in zip(back[:, 3:6], arr[:, 3:6], strict=True):
            assert quat_angle(rotvec_to_quat(got), rotvec_to_quat(want)) < 1e-5
        np.testing.assert_allclose(back[:, 6], arr[:, 6], atol=1e-7)
    else:
        np.testing.assert_allclose(back, arr, atol=1e-6)


def test_joint_delta_adds_to_the_joints_at_capture() -> None:
    space = ActionSpace("joint_delta", 8, 7)
    capture = state()
    target = space.target_of(space.to_waypoints(np.array([[0.1] * 7 + [0.0]]), capture)[0], 0.0)
    np.testing.assert_allclose(target.joints, capture.joint_positions + 0.1)
    assert target.ee is None and target.gripper == 0.0


def test_waypoint_of_the_measured_state_is_the_hold_pose() -> None:
    space = ActionSpace("ee_delta", 7, 7, reference=DOWN)
    s = state(position=(0.4, 0.1, 0.2))
    target = space.target_of(space.waypoint_of(s), 0.0)
    np.testing.assert_allclose(target.ee.position, s.ee.position)
    assert quat_angle(target.ee.quaternion, s.ee.quaternion) < 1e-12
    assert target.gripper == s.gripper


@pytest.mark.parametrize(
    ("name", "dim", "message"),
    [
        ("ee_velocity", 7, "action_space 'ee_velocity' is not supported"),
        ("ee_delta", 6, "action_dim is 6, ee_delta on this arm needs 7"),
        ("joint_absolute", 7, "action_dim is 7, joint_absolute on this arm needs 8"),
    ],
)
def test_specs_that_do_not_fit_are_refused_by_name(name: str, dim: int, message: str) -> None:
    with pytest.raises(SpecMismatch, match=message):
        ActionSpace(name, dim, 7)


def test_state_vector_follows_the_spec_names() -> None:
    s = state(position=(0.3, -0.1, 0.5), quat=DOWN, gripper=0.25)
    vec = state_vector(s, ["gripper", "ee_z", "joint_3", "ee_rx", "ee_y"])
    assert vec.dtype == np.float32
    np.testing.assert_allclose(vec, [0.25, 0.5, 0.3, math.pi, -0.1], atol=1e-6)


def test_state_vector_refuses_an_unknown_name() -> None:
    with pytest.raises(SpecMismatch, match="'ee_vx'"):
        state_vector(state(), ["ee_vx"])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-0.5, 0.5), min_size=6, max_size=6))
def test_ee_delta_round_trip_property(delta: list[float]) -> None:
    space = ActionSpace("ee_delta", 7, 7, reference=DOWN)
    capture = state()
    arr = np.array([[*delta, 1.0]])
    back = space.to_actions(space.to_waypoints(arr, capture), capture)
    np.testing.assert_allclose(back[0, :3], arr[0, :3], atol=1e-6)
    assert quat_angle(rotvec_to_quat(back[0, 3:6]), rotvec_to_quat(arr[0, 3:6])) < 1e-5

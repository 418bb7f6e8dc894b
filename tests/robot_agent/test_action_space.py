from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_agent.action_space import (
    ActionSpace,
    StateVectorBuilder,
    state_vector,
    unwrap_rotvecs,
)
from robot_agent.drivers.base import RobotState
from robot_agent.errors import SpecMismatch
from safety.rotations import quat_angle, quat_multiply, quat_to_rotvec, rotvec_to_quat
from safety.types import Pose
from vla import vocabulary
from vla.vocabulary import ACTION_SPACES, STATE_NAMES

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
        (
            "ee_delta",
            6,
            "action_dim is 6, ee_delta on this arm needs 7 ([dx, dy, dz, drx, dry, drz, gripper])",
        ),
        (
            "ee_absolute",
            8,
            "action_dim is 8, ee_absolute on this arm needs 7 ([x, y, z, rx, ry, rz, gripper])",
        ),
        ("joint_absolute", 7, "action_dim is 7, joint_absolute on this arm needs 8 (7 joints + gripper)"),
    ],
)
def test_specs_that_do_not_fit_are_refused_by_name(name: str, dim: int, message: str) -> None:
    with pytest.raises(SpecMismatch, match=re.escape(message)):
        ActionSpace(name, dim, 7)


@pytest.mark.parametrize("name", ACTION_SPACES)
def test_every_action_space_of_the_contract_converts(name: str) -> None:
    """A word added to ``vla.vocabulary`` without its conversion here fails: ``to_actions``
    inverts ``to_waypoints`` for each space of the contract, at its size on a 7-joint arm."""
    space = ActionSpace(name, vocabulary.action_dim(name, 7), 7, reference=DOWN)
    actions = np.full((2, space.action_dim), 0.05)
    actions[:, -1] = 1.0
    if not space.is_delta and space.is_ee:
        actions[:, :3] = [0.3, 0.0, 0.5]
    capture = state()
    np.testing.assert_allclose(
        space.to_actions(space.to_waypoints(actions, capture), capture), actions, atol=1e-6
    )


def test_every_state_name_of_the_contract_is_filled() -> None:
    s = state(position=(0.3, -0.1, 0.5), quat=np.array([0.0, 0.0, 0.0, 1.0]), gripper=0.25)
    vec = state_vector(s, STATE_NAMES)
    np.testing.assert_allclose(vec, [*(np.arange(7) * 0.1), 0.3, -0.1, 0.5, 0.0, 0.0, 0.0, 0.25], atol=1e-6)


@pytest.mark.parametrize("name", ["joint_7", "joint_x", "ee_vx"])
def test_a_name_outside_the_contract_is_refused_before_the_first_state(name: str) -> None:
    with pytest.raises(SpecMismatch, match=f"state name '{name}' is not one the agent can fill"):
        StateVectorBuilder([name])
    with pytest.raises(SpecMismatch, match=f"'{name}'"):
        state_vector(state(), [name])


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


# --- rotations across the pi wrap (issue 10, kind 5) ----------------------------------------------
Z = np.array([0.0, 0.0, 1.0])


def turned(angle: float, axis: np.ndarray = Z) -> np.ndarray:
    """DOWN turned by ``angle`` about the base-frame ``axis`` (a tool turning about itself)."""
    return quat_multiply(rotvec_to_quat(angle * axis), DOWN)


@pytest.mark.parametrize(
    ("rotvec", "near", "expected"),
    [
        # past pi about z: the principal -3.107 z, next to +3.107 z, is +3.176 z
        (-(math.pi - 0.035) * Z, (math.pi - 0.035) * Z, (math.pi + 0.035) * Z),
        # nothing to do next to the principal value
        (0.3 * Z, 0.2 * Z, 0.3 * Z),
        # two turns along: the representative 4*pi further along the axis
        (0.1 * Z, (4 * math.pi + 0.05) * Z, (4 * math.pi + 0.1) * Z),
        # the identity next to a whole turn: the point of the 2*pi sphere along `near`
        (np.zeros(3), np.array([0.0, 6.0, 0.0]), np.array([0.0, 2 * math.pi, 0.0])),
        (np.zeros(3), np.array([0.0, 3.0, 0.0]), np.zeros(3)),
    ],
)
def test_unwrap_takes_the_representative_nearest(
    rotvec: np.ndarray, near: np.ndarray, expected: np.ndarray
) -> None:
    np.testing.assert_allclose(unwrap_rotvecs(rotvec[None, :], near)[0], expected, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3).filter(lambda v: np.linalg.norm(v) > 0.1),
    st.floats(-3.0, 3.0),
    st.floats(0.01, 0.3),
)
def test_unwrapping_principal_values_recovers_a_continuous_turn(
    axis: list[float], start: float, step: float
) -> None:
    """A turn about a fixed axis through several multiples of pi, read back as principal
    rotation vectors (angle in [0, pi], which jump): unwrapped in sequence from the true first
    value, they are the turn itself (and each is the same rotation as its principal value)."""
    u = np.array(axis) / np.linalg.norm(axis)
    angles = start + step * np.arange(int(4 * math.pi / step))
    truth = angles[:, None] * u
    principal = np.array([quat_to_rotvec(rotvec_to_quat(r)) for r in truth])
    out = unwrap_rotvecs(principal, truth[0])
    np.testing.assert_allclose(out, truth, atol=1e-9)
    for got, raw in zip(out, principal, strict=True):
        assert quat_angle(rotvec_to_quat(got), rotvec_to_quat(raw)) < 1e-9


@pytest.mark.parametrize("name", ["ee_absolute", "ee_delta"])
def test_chunk_waypoints_turn_continuously_past_pi(name: str) -> None:
    """Kind 5's example in both end-effector spaces: +2 degrees per action from 176 degrees
    (reference tool-down) gives 3.072, 3.107, 3.142, 3.176, ... about z, no jump to -3.107."""
    space = ActionSpace(name, 7, 7, reference=DOWN)
    capture = state(quat=turned(math.radians(176.0)))
    angles = math.radians(176.0) + math.radians(2.0) * np.arange(10)
    if name == "ee_delta":  # relative to the capture, base frame
        rot = [(a - math.radians(176.0)) * Z for a in angles]
        acts = np.array([[0.0, 0.0, 0.0, *r, 1.0] for r in rot])
    else:  # base-frame rotation vectors, as a policy would send them (angle in [0, pi])
        acts = np.array([[0.3, 0.0, 0.5, *quat_to_rotvec(turned(a)), 1.0] for a in angles])
    waypoints = space.to_waypoints(acts, capture)
    np.testing.assert_allclose(waypoints[:, 5], angles, atol=1e-9)
    np.testing.assert_allclose(waypoints[:, 3:5], 0.0, atol=1e-9)


@pytest.mark.parametrize("name", ["ee_absolute", "ee_delta"])
def test_prev_actions_are_continuous_across_pi(name: str) -> None:
    """prev_actions (to_actions of the plan's rest) turning past pi: rows are continuous and the
    same rotations as the waypoints. The agent passes the state vector's rotation as
    ``near_rotvec`` (here 0.5 rad past the representative opposite the principal one, as after
    a turn past pi): ee_absolute starts on that representative; ee_delta ignores it and starts
    next to no rotation (0.0 rad, not the 2*pi one nearest ``near_rotvec``)."""
    space = ActionSpace(name, 7, 7, reference=DOWN)
    angles = math.radians(180.0) + math.radians(2.0) * np.arange(12)
    waypoints = np.array([[0.3, 0.0, 0.5, 0.0, 0.0, a, 1.0] for a in angles])
    capture = state(quat=turned(angles[0]))
    opposite = -quat_to_rotvec(capture.ee.quaternion)
    near = opposite * (1.0 + 0.5 / math.pi)
    out = space.to_actions(waypoints, capture, near_rotvec=near)
    steps = np.linalg.norm(np.diff(out[:, 3:6].astype(float), axis=0), axis=1)
    assert steps.max() < 0.1, steps
    first = out[0, 3:6].astype(float)
    if name == "ee_absolute":
        np.testing.assert_allclose(first, opposite, atol=1e-5)
    else:
        assert np.linalg.norm(first) < 1e-5
    for row, a in zip(out, angles, strict=True):
        rot = rotvec_to_quat(row[3:6])
        quat = rot if name == "ee_absolute" else quat_multiply(rot, capture.ee.quaternion)
        assert quat_angle(quat, turned(a)) < 1e-5


def test_issue_example_state_vector_stays_continuous_across_observations() -> None:
    """Kind 5's example: a tool held down, sensor noise of 1e-4 rad either side of pi. Read
    afresh, ee_rx flips between +3.1415 and -3.1415; the builder keeps it next to the last one."""
    names = ["ee_rx", "ee_ry", "ee_rz", "gripper"]
    noise = 1e-4 * np.array([1, -1, 1, -1, -1, 1])
    readings = [state(quat=quat_multiply(rotvec_to_quat(np.array([e, 0.0, 0.0])), DOWN)) for e in noise]
    fresh = np.array([state_vector(s, names) for s in readings])
    assert np.abs(np.diff(fresh[:, 0])).max() > 6.0  # the flip the builder removes
    builder = StateVectorBuilder(names)
    built = np.array([builder.build(s) for s in readings])
    np.testing.assert_allclose(np.abs(built[:, 0]), math.pi + noise * np.sign(built[0, 0]), atol=1e-6)
    assert np.abs(np.diff(built[:, 0])).max() < 3e-4
    np.testing.assert_allclose(built[:, 3], 0.8)


def test_state_vector_follows_a_tool_turning_through_a_whole_turn() -> None:
    """Yaw of a downward tool from 0 to 400 degrees: the base-frame rotation vector is pi about
    a horizontal axis turning at half the rate; the builder's ee_r* never jump."""
    builder = StateVectorBuilder(["ee_rx", "ee_ry", "ee_rz"])
    angles = np.radians(np.arange(0.0, 400.0, 1.0))
    built = np.array([builder.build(state(quat=turned(a))) for a in angles]).astype(float)
    assert np.linalg.norm(np.diff(built, axis=0), axis=1).max() < 0.03
    for vec, a in zip(built, angles, strict=True):
        assert quat_angle(rotvec_to_quat(vec), turned(a)) < 1e-5
    np.testing.assert_allclose(builder.rotvec, built[-1], atol=1e-6)


def test_state_vector_builder_reset_forgets_the_last_orientation() -> None:
    builder = StateVectorBuilder(["ee_rx"])
    assert builder.rotvec is None
    builder.build(state(quat=turned(3.0)))
    builder.reset()
    assert builder.rotvec is None
    np.testing.assert_allclose(builder.build(state()), state_vector(state(), ["ee_rx"]))


def test_state_vector_builder_refuses_an_unknown_name_at_once() -> None:
    with pytest.raises(SpecMismatch, match="'ee_vx'"):
        StateVectorBuilder(["gripper", "ee_vx"])


def test_joint_waypoints_are_never_unwrapped() -> None:
    """Joints past pi are distinct commands (a joint with more than a turn of range)."""
    space = ActionSpace("joint_absolute", 8, 7)
    acts = np.zeros((3, 8))
    acts[:, 6] = [3.1, 3.2, 3.3]
    waypoints = space.to_waypoints(acts, state())
    np.testing.assert_array_equal(waypoints[:, 6], [3.1, 3.2, 3.3])
    np.testing.assert_array_equal(space.unwrap_waypoints(waypoints, -waypoints[0]), waypoints)


def test_unwrap_leaves_a_non_finite_rotation_to_the_shield() -> None:
    """A NaN has no nearest representative; it comes back as it was (the shield holds on it)
    instead of raising inside the chunk intake, and the rows after it are left as they are."""
    rows = np.array([[np.nan, 0.0, 0.0], [0.0, 0.0, 0.5]])
    out = unwrap_rotvecs(rows, Z)
    assert np.isnan(out[0, 0])
    np.testing.assert_array_equal(out[1], rows[1])
    np.testing.assert_array_equal(unwrap_rotvecs(Z[None, :], np.array([np.inf, 0.0, 0.0]))[0], Z)

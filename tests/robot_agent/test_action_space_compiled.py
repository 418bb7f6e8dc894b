"""A chunk's rotations convert in four calls, bit for bit as row by row (issue 13: chunk intake).

``ActionSpace.to_waypoints`` and ``to_actions`` made four ``safety.rotations`` calls per action
(each a few numpy calls on 3- and 4-element arrays); they now take the dot products of all rows
in one numpy call (``_row_dots``: the same BLAS ``ddot``) and the rest of the maths in compiled
loops on Python's operations and libm's functions. The old row-by-row code is kept here as the
oracle: the same waypoints and actions, every bit, and the same exception where a row is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_agent import action_space
from robot_agent.action_space import ActionSpace, unwrap_rotvecs
from robot_agent.drivers.base import RobotState
from safety.rotations import quat_conjugate, quat_multiply, quat_to_rotvec, rotvec_to_quat
from safety.types import Pose


def old_to_waypoints(space: ActionSpace, actions: np.ndarray, capture: RobotState) -> np.ndarray:
    """``ActionSpace.to_waypoints`` (end effector) before issue 13."""
    actions = np.asarray(actions, dtype=float)
    out = np.empty((actions.shape[0], space.waypoint_dim))
    out[:, -1] = actions[:, -1]
    if space.is_delta:
        out[:, :3] = capture.ee.position + actions[:, :3]
        cap_q = capture.ee.quaternion
        for k in range(actions.shape[0]):
            out[k, 3:6] = space._local(quat_multiply(rotvec_to_quat(actions[k, 3:6]), cap_q))
    else:
        out[:, :3] = actions[:, :3]
        for k in range(actions.shape[0]):
            out[k, 3:6] = space._local(rotvec_to_quat(actions[k, 3:6]))
    out[:, 3:6] = unwrap_rotvecs(out[:, 3:6], space._local(capture.ee.quaternion))
    return out


def old_to_actions(
    space: ActionSpace, waypoints: np.ndarray, capture: RobotState, near_rotvec: np.ndarray | None
) -> np.ndarray:
    """``ActionSpace.to_actions`` (end effector) before issue 13."""
    waypoints = np.asarray(waypoints, dtype=float)
    out = np.empty((waypoints.shape[0], space.action_dim), dtype=np.float32)
    out[:, -1] = waypoints[:, -1]
    cap_inv = quat_conjugate(capture.ee.quaternion)
    for k in range(waypoints.shape[0]):
        quat = quat_multiply(rotvec_to_quat(waypoints[k, 3:6]), space._ref)
        if space.is_delta:
            out[k, :3] = waypoints[k, :3] - capture.ee.position
            out[k, 3:6] = quat_to_rotvec(quat_multiply(quat, cap_inv))
        else:
            out[k, :3] = waypoints[k, :3]
            out[k, 3:6] = quat_to_rotvec(quat)
    if space.is_delta:
        near = np.zeros(3)
    elif near_rotvec is None:
        near = quat_to_rotvec(capture.ee.quaternion)
    else:
        near = np.asarray(near_rotvec, dtype=float)
    out[:, 3:6] = unwrap_rotvecs(out[:, 3:6].astype(float), near)
    return out


@pytest.fixture(params=["compiled", "interpreted"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "interpreted":
        for name in ("_quats_of", "_rotvecs_of", "_unchanged_rows"):
            kernel = getattr(action_space, name)
            monkeypatch.setattr(action_space, name, getattr(kernel, "py_func", kernel))
    yield str(request.param)


def same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True), (got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want)), (got, want)


def outcome(call: object) -> tuple[str, object]:
    try:
        return "value", call()  # type: ignore[operator]
    except Exception as exc:
        return "raised", repr(exc)


def unit_quaternion(seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=4)
    return q / np.linalg.norm(q)


def capture_state(seed: int) -> RobotState:
    rng = np.random.default_rng(seed)
    return RobotState(
        time_s=0.0,
        joint_positions=np.zeros(7),
        joint_velocities=np.zeros(7),
        ee=Pose(position=rng.normal(0.0, 0.3, 3), quaternion=unit_quaternion(seed + 1)),
        gripper=0.5,
    )


# Rotation vectors: small, near the identity's 1e-8, around pi, huge, non-finite.
scales = st.one_of(
    st.floats(0.0, 0.3),
    st.floats(5e-9, 2e-8),
    st.floats(math.pi - 1e-3, math.pi + 1e-3),
    st.floats(-7.0, 7.0),
    st.sampled_from([0.0, -0.0, 1e154, 1e200, math.inf, math.nan]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["ee_delta", "ee_absolute"]),
    n=st.integers(0, 12),
    seed=st.integers(0, 2**32 - 1),
    scale=scales,
    near=st.booleans(),
)
def test_conversions_give_the_row_by_row_values(
    kernels: str, name: str, n: int, seed: int, scale: float, near: bool
) -> None:
    rng = np.random.default_rng(seed)
    space = ActionSpace(name, 7, 7, reference=unit_quaternion(seed + 2))
    capture = capture_state(seed + 3)
    with np.errstate(all="ignore"):
        actions = np.column_stack(
            [rng.normal(0.0, 0.05, (n, 3)), rng.normal(0.0, 1.0, (n, 3)) * scale, rng.uniform(0.0, 1.0, n)]
        ).astype(np.float32 if seed % 2 else np.float64)  # a policy's float32, or float64
        got = outcome(lambda: space.to_waypoints(actions, capture))
        want = outcome(lambda: old_to_waypoints(space, actions, capture))
        assert got[0] == want[0], (got, want)
        if want[0] == "raised":
            assert got == want
            return
        waypoints = want[1]
        assert isinstance(waypoints, np.ndarray) and isinstance(got[1], np.ndarray)
        same(got[1], waypoints)
        near_rotvec = rng.normal(size=3) if near else None
        got = outcome(lambda: space.to_actions(waypoints, capture, near_rotvec=near_rotvec))
        want = outcome(lambda: old_to_actions(space, waypoints, capture, near_rotvec))
    assert got[0] == want[0], (got, want)
    if want[0] == "raised":
        assert got == want
    else:
        assert isinstance(got[1], np.ndarray) and isinstance(want[1], np.ndarray)
        same(got[1], want[1])


@pytest.mark.parametrize("columns", [3, 4])
def test_row_dots_are_ndarray_dot(columns: int) -> None:
    """The premise of the batched conversions: matmul's vector-by-vector case is ndarray.dot."""
    rng = np.random.default_rng(columns)
    rows = rng.normal(size=(20000, columns)) * rng.uniform(0.0, 10.0, (20000, 1))
    same(action_space._row_dots(rows), np.array([float(r.dot(r)) for r in rows]))

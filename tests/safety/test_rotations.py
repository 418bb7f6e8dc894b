"""Rotation maths: closed forms on known rotations, and round trips as properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safety import rotations as r

finite = st.floats(-1.0, 1.0, allow_nan=False)
quats = st.tuples(finite, finite, finite, finite).filter(lambda q: sum(v * v for v in q) > 1e-3)
rotvecs = st.tuples(*[st.floats(-3.0, 3.0, allow_nan=False)] * 3).filter(
    lambda v: sum(x * x for x in v) < (math.pi - 1e-3) ** 2
)


def same_rotation(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> bool:
    return bool(np.allclose(a, b, atol=tol) or np.allclose(a, -b, atol=tol))


@pytest.mark.parametrize(
    ("rotvec", "quat"),
    [
        ([0, 0, 0], [0, 0, 0, 1]),  # identity
        ([math.pi / 2, 0, 0], [math.sin(math.pi / 4), 0, 0, math.cos(math.pi / 4)]),  # 90 deg about x
        ([0, 0, math.pi], [0, 0, 1, 0]),  # half turn about z
        ([0, -0.3, 0], [0, -math.sin(0.15), 0, math.cos(0.15)]),  # small turn about -y
    ],
)
def test_rotvec_to_quat_known(rotvec: list[float], quat: list[float]) -> None:
    np.testing.assert_allclose(r.rotvec_to_quat(np.array(rotvec)), quat, atol=1e-12)


def test_quat_to_matrix_90_deg_about_z() -> None:
    m = r.quat_to_matrix(r.rotvec_to_quat(np.array([0, 0, math.pi / 2])))
    np.testing.assert_allclose(m @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_rpy_matches_ros_convention() -> None:
    # R = Rz(yaw) Ry(pitch) Rx(roll)
    roll, pitch, yaw = 0.1, -0.4, 2.0
    rx = r.quat_to_matrix(r.rotvec_to_quat(np.array([roll, 0, 0])))
    ry = r.quat_to_matrix(r.rotvec_to_quat(np.array([0, pitch, 0])))
    rz = r.quat_to_matrix(r.rotvec_to_quat(np.array([0, 0, yaw])))
    np.testing.assert_allclose(
        r.quat_to_matrix(r.rpy_to_quat(np.array([roll, pitch, yaw]))), rz @ ry @ rx, atol=1e-12
    )
    np.testing.assert_allclose(
        r.quat_to_rpy(r.rpy_to_quat(np.array([roll, pitch, yaw]))), [roll, pitch, yaw], atol=1e-12
    )


def test_tiny_angles_are_accurate() -> None:
    v = np.array([1e-10, -2e-10, 3e-10])
    np.testing.assert_allclose(r.quat_to_rotvec(r.rotvec_to_quat(v)), v, rtol=1e-9, atol=0)
    assert r.quat_angle(r.IDENTITY_QUATERNION, r.rotvec_to_quat(v)) == pytest.approx(
        float(np.linalg.norm(v)), rel=1e-9
    )


@pytest.mark.parametrize("q", [[0, 0, 0, 0], [math.nan, 0, 0, 1], [math.inf, 0, 0, 1]])
def test_normalize_rejects_degenerate(q: list[float]) -> None:
    with pytest.raises(ValueError, match="cannot normalise quaternion"):
        r.quat_normalize(np.array(q))


def test_identity_is_read_only() -> None:
    with pytest.raises(ValueError):
        r.IDENTITY_QUATERNION[0] = 1.0


@settings(max_examples=100, deadline=None)
@given(quats)
def test_matrix_round_trip(q: tuple[float, ...]) -> None:
    qn = r.quat_normalize(np.array(q))
    m = r.quat_to_matrix(qn)
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m) == pytest.approx(1.0, abs=1e-12)
    assert same_rotation(r.matrix_to_quat(m), qn)


@settings(max_examples=100, deadline=None)
@given(rotvecs)
def test_rotvec_round_trip(v: tuple[float, ...]) -> None:
    vec = np.array(v)
    q = r.rotvec_to_quat(vec)
    assert float(np.linalg.norm(q)) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(r.quat_to_rotvec(q), vec, atol=1e-9)
    assert r.quat_angle(r.IDENTITY_QUATERNION, q) == pytest.approx(float(np.linalg.norm(vec)), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(quats, quats)
def test_multiply_matches_matrix_product(a: tuple[float, ...], b: tuple[float, ...]) -> None:
    qa, qb = r.quat_normalize(np.array(a)), r.quat_normalize(np.array(b))
    np.testing.assert_allclose(
        r.quat_to_matrix(r.quat_multiply(qa, qb)), r.quat_to_matrix(qa) @ r.quat_to_matrix(qb), atol=1e-12
    )
    np.testing.assert_allclose(r.quat_multiply(qa, r.quat_conjugate(qa)), [0, 0, 0, 1], atol=1e-12)
    v = np.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(r.quat_rotate(qa, v), r.quat_to_matrix(qa) @ v, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(quats, quats, st.floats(0.0, 1.0))
def test_slerp_moves_along_the_short_arc(a: tuple[float, ...], b: tuple[float, ...], t: float) -> None:
    qa, qb = r.quat_normalize(np.array(a)), r.quat_normalize(np.array(b))
    total = r.quat_angle(qa, qb)
    qt = r.quat_slerp(qa, qb, t)
    assert r.quat_angle(qa, qt) == pytest.approx(t * total, abs=1e-9)
    assert r.quat_angle(qt, qb) == pytest.approx((1 - t) * total, abs=1e-9)
    assert same_rotation(r.quat_slerp(qa, qb, 0.0), qa)
    assert same_rotation(r.quat_slerp(qa, qb, 1.0), qb)


@settings(max_examples=100, deadline=None)
@given(rotvecs)
def test_rpy_round_trip(v: tuple[float, ...]) -> None:
    q = r.rotvec_to_quat(np.array(v))
    assert same_rotation(r.rpy_to_quat(r.quat_to_rpy(q)), q)

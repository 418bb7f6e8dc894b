"""Unwrapping rotation vectors skips the rows a compiled check vouches for, and gives the old
loop's values bit for bit (issue 13: chunk intake and request building).

The old loop (before issue 13) called ``rotvec_nearest`` on every row; ``_unchanged_rows`` calls a
row unchanged only when every decision ``rotvec_nearest`` takes on it is far from its boundary, so
on turns across the wrap, rows near the identity, rows near half a turn from their reference,
huge and non-finite rows the values are the old ones, compiled and interpreted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_agent import action_space
from robot_agent.action_space import unwrap_rotvecs
from safety import rotations
from safety.rotations import rotvec_nearest


def old_unwrap(rotvecs: np.ndarray, near: np.ndarray) -> np.ndarray:
    """``unwrap_rotvecs`` before issue 13: ``rotvec_nearest`` row after row."""
    out = np.array(rotvecs, dtype=float)
    previous = np.asarray(near, dtype=float)
    for k in range(out.shape[0]):
        if np.isfinite(out[k]).all() and np.isfinite(previous).all():
            out[k] = previous = rotvec_nearest(out[k], previous)
        else:
            out[k] = previous = np.array(out[k], dtype=float)
    return out


@pytest.fixture(params=["compiled", "interpreted"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "interpreted":
        check = action_space._unchanged_rows
        monkeypatch.setattr(action_space, "_unchanged_rows", getattr(check, "py_func", check))
    yield str(request.param)


def same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=True), (got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want)), (got, want)


axis = st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.floats(-1.0, 1.0)).filter(
    lambda u: math.hypot(*u) > 0.1
)
# Angles that matter: small, near the identity's 1e-8, around pi (the wrap) and 2 pi, huge.
angles = st.one_of(
    st.floats(0.0, 0.3),
    st.floats(5e-9, 2e-8),
    st.floats(math.pi - 1e-3, math.pi + 1e-3),
    st.floats(2 * math.pi - 1e-3, 2 * math.pi + 1e-3),
    st.floats(-10.0, 10.0),
    st.sampled_from([0.0, -0.0, math.pi, 1e200, math.inf, math.nan]),
)


def _row(spec: tuple[tuple[float, float, float], float]) -> np.ndarray:
    direction, angle = spec
    with np.errstate(invalid="ignore"):  # 0 * inf: a NaN component, wanted too
        return np.array(direction) / math.hypot(*direction) * angle


rows = st.tuples(axis, angles).map(_row)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(rows, min_size=0, max_size=12), rows)
def test_unwrap_gives_the_old_loops_values(kernel: str, sequence: list[np.ndarray], near: np.ndarray) -> None:
    rotvecs = np.array(sequence, dtype=float).reshape(len(sequence), 3)
    with np.errstate(all="ignore"):
        try:
            want = old_unwrap(rotvecs, near)
        except (OverflowError, ValueError) as exc:  # rotvec_nearest on a huge row
            with pytest.raises(type(exc)):
                unwrap_rotvecs(rotvecs, near)
            return
        got = unwrap_rotvecs(rotvecs, near)
    same(got, want)


def test_a_turn_past_pi_is_unwrapped_by_the_old_path_from_the_first_wrapped_row() -> None:
    """The compiled check vouches for the rows before the wrap only; the wrap and the rows after
    it are rotvec_nearest's."""
    angles = np.linspace(3.0, 3.3, 7)
    principal = np.array([[0.0, 0.0, a if a <= math.pi else a - 2 * math.pi] for a in angles])
    assert action_space._unchanged_rows(principal, principal[0]) == int(np.argmax(angles > math.pi))
    np.testing.assert_allclose(unwrap_rotvecs(principal, principal[0])[:, 2], angles, atol=1e-12)


def test_the_identity_threshold_is_rotations() -> None:
    assert action_space._SMALL_ANGLE == rotations._SMALL_ANGLE

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_agent.trajectory import HermiteCurve, LinearCurve, make_curve

TIMES = np.array([0.0, 0.1, 0.2, 0.35, 0.5])
VALUES = np.array([[0.0, 1.0], [0.1, 0.9], [0.3, 0.9], [0.2, 1.2], [0.25, 1.0]])


@pytest.mark.parametrize("kind", ["linear", "cubic", "minimum_jerk", "ruckig"])
def test_every_curve_passes_through_its_waypoints(kind: str) -> None:
    curve = make_curve(kind, TIMES, VALUES)
    for t, v in zip(TIMES, VALUES, strict=True):
        np.testing.assert_allclose(curve.sample(t), v, atol=1e-12)


def test_linear_is_the_straight_line_between_waypoints() -> None:
    curve = LinearCurve(TIMES, VALUES)
    np.testing.assert_allclose(curve.sample(0.05), (VALUES[0] + VALUES[1]) / 2)


def _derivative(curve, t: float, order: int, h: float = 1e-4) -> np.ndarray:
    if order == 1:
        return (curve.sample(t + h) - curve.sample(t - h)) / (2 * h)
    return (curve.sample(t + h) - 2 * curve.sample(t) + curve.sample(t - h)) / (h * h)


@pytest.mark.parametrize(
    ("order", "continuous_up_to"),
    [
        (3, 1),  # cubic: velocity continuous at the waypoints
        (5, 2),  # minimum jerk (quintic): acceleration continuous too
    ],
)
def test_hermite_continuity_at_inner_waypoints(order: int, continuous_up_to: int) -> None:
    curve = HermiteCurve(TIMES, VALUES, order=order)
    for t in TIMES[1:-1]:
        for d in range(1, continuous_up_to + 1):
            h = 1e-6
            left = _derivative(curve, t - 2 * h, d, h)
            right = _derivative(curve, t + 2 * h, d, h)
            np.testing.assert_allclose(left, right, atol=0.01, err_msg=f"derivative {d} at {t}")


def test_cubic_acceleration_jumps_where_minimum_jerk_does_not() -> None:
    t, h = TIMES[1], 1e-6
    cubic = HermiteCurve(TIMES, VALUES, order=3)
    jump = np.abs(_derivative(cubic, t - 2 * h, 2, h) - _derivative(cubic, t + 2 * h, 2, h)).max()
    assert jump > 1.0


def test_linear_velocity_jumps_where_hermite_does_not() -> None:
    linear = LinearCurve(TIMES, VALUES)
    t, h = TIMES[1], 1e-4
    jump = np.abs(_derivative(linear, t - 3 * h, 1, h) - _derivative(linear, t + 3 * h, 1, h)).max()
    assert jump > 0.5


def test_start_velocity_is_honoured() -> None:
    curve = HermiteCurve(TIMES, VALUES, order=5, start_velocity=np.array([2.0, -1.0]))
    np.testing.assert_allclose(_derivative(curve, 1e-3, 1, 1e-5), [2.0, -1.0], atol=0.05)


def test_single_waypoint_is_constant() -> None:
    curve = HermiteCurve(np.array([1.0]), np.array([[3.0, 4.0]]))
    np.testing.assert_allclose(curve.sample(1.0), [3.0, 4.0])


@pytest.mark.parametrize(
    ("times", "values"),
    [
        ([0.0, 0.0], [[0.0], [1.0]]),  # repeated time
        ([0.1, 0.0], [[0.0], [1.0]]),  # going back in time
        ([0.0, 0.1], [[0.0]]),  # count mismatch
    ],
)
def test_bad_waypoints_are_refused(times: list[float], values: list[list[float]]) -> None:
    with pytest.raises(ValueError):
        LinearCurve(np.array(times), np.array(values))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=12),
    st.floats(0.01, 0.5),
    st.sampled_from(["cubic", "minimum_jerk"]),
)
def test_smooth_curves_stay_near_their_waypoints(values: list[float], dt: float, kind: str) -> None:
    """No wild overshoot: finite-difference Hermite stays within the waypoints' range plus the
    largest step (a loose but real bound)."""
    times = dt * np.arange(len(values))
    arr = np.array(values)[:, None]
    curve = make_curve(kind, times, arr)
    step = np.abs(np.diff(arr[:, 0])).max()
    for t in np.linspace(times[0], times[-1], 50):
        v = curve.sample(t)[0]
        assert arr.min() - step - 1e-12 <= v <= arr.max() + step + 1e-12


@pytest.mark.parametrize("kind", ["linear", "cubic", "minimum_jerk"])
@pytest.mark.parametrize("t", [0.03, 0.15, 0.27, 0.42])  # inside each segment
def test_derivatives_are_those_of_the_sampled_curve(kind: str, t: float) -> None:
    """Velocity and acceleration by formula equal the central differences of ``sample``."""
    curve = make_curve(kind, TIMES, VALUES, start_velocity=np.array([0.5, -0.2]))
    p, v, a = curve.derivatives(t)
    np.testing.assert_allclose(p, curve.sample(t), atol=1e-12)
    np.testing.assert_allclose(v, _derivative(curve, t, 1, 1e-5), atol=1e-6)
    np.testing.assert_allclose(a, _derivative(curve, t, 2, 1e-4), atol=1e-3)


def test_given_velocities_and_accelerations_are_passed_through_exactly() -> None:
    """A quintic with the state given at each waypoint (how a blended plan is frozen) has that
    position, velocity and acceleration there, on both sides."""
    rng = np.random.default_rng(7)
    vel, acc = rng.normal(size=VALUES.shape), rng.normal(size=VALUES.shape)
    curve = HermiteCurve(TIMES, VALUES, order=5, velocities=vel, accelerations=acc)
    for k, t in enumerate(TIMES):
        p, v, a = curve.derivatives(t)
        np.testing.assert_allclose((p, v, a), (VALUES[k], vel[k], acc[k]), atol=1e-9)
        if k > 0:
            left = HermiteCurve(
                TIMES[: k + 1], VALUES[: k + 1], order=5, velocities=vel[: k + 1], accelerations=acc[: k + 1]
            )
            np.testing.assert_allclose(left.derivatives(t), (VALUES[k], vel[k], acc[k]), atol=1e-9)

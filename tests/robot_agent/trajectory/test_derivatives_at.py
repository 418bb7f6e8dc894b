"""The array path of the trajectory (``derivatives_at``, which freezes a fading plan) gives the
scalar path's values bit for bit, for every interpolation and blend mode, inside and outside the
curves' spans, during fades and after them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_agent.trajectory import Trajectory
from robot_agent.trajectory.interpolation import make_curve


def _scalar(plan: object, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    states = [plan.derivatives(float(t)) for t in ts]  # type: ignore[attr-defined]
    return tuple(np.array([s[i] for s in states]) for i in range(3))  # type: ignore[return-value]


@settings(max_examples=60, deadline=None)
@given(
    interpolation=st.sampled_from(["linear", "cubic", "minimum_jerk"]),
    blend_mode=st.sampled_from(["crossfade", "replace", "ensemble"]),
    seed=st.integers(0, 2**32 - 1),
    chunks=st.integers(1, 6),
)
def test_derivatives_at_equals_scalar_derivatives(
    interpolation: str, blend_mode: str, seed: int, chunks: int
) -> None:
    rng = np.random.default_rng(seed)
    traj = Trajectory(blend_mode=blend_mode, interpolation=interpolation, control_dt=0.004)
    now, dt = 10.0, 0.1
    for _ in range(chunks):
        waypoints = np.cumsum(rng.normal(0.0, 0.01, (10, 7)), axis=0)
        capture = now - rng.uniform(0.0, 0.05)
        traj.add_chunk(waypoints, capture, dt, now, start=np.zeros(7))
        plan = traj._plan
        assert plan is not None
        ts = np.sort(rng.uniform(now - 0.3, plan.end + 0.3, 40))
        ts = np.concatenate([ts, [plan.curve.start, plan.end, plan.t0, plan.t0 + plan.length]])
        got_all = plan.derivatives_at(ts)
        for got, want in zip(got_all, _scalar(plan, ts), strict=True):
            np.testing.assert_array_equal(got, want)
        # the positions are sample()'s too, and samples_at() gives them (add_chunk, remaining())
        sampled = np.array([plan.sample(float(t)) for t in ts])
        np.testing.assert_array_equal(got_all[0], sampled)
        np.testing.assert_array_equal(plan.samples_at(ts), sampled)
        now += rng.uniform(0.01, 0.2)


@pytest.mark.parametrize("kind", ["linear", "cubic", "minimum_jerk"])
def test_curves_one_and_many_waypoints(kind: str) -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 7):
        curve = make_curve(kind, np.arange(n) * 0.1, rng.normal(size=(n, 4)))
        ts = np.linspace(0.0, max(curve.end, 0.0), 9)
        for got, want in zip(curve.derivatives_at(ts), _scalar(curve, ts), strict=True):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(curve.samples_at(ts), np.array([curve.sample(float(t)) for t in ts]))

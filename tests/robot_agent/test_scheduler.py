"""The scheduler: when to ask for the next chunk, and the round-trip estimate it plans with."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from robot_agent.config import SchedulerConfig
from robot_agent.scheduler import RoundTripEstimator, Scheduler


def test_the_first_call_spike_is_ignored() -> None:
    est = RoundTripEstimator(window=20, quantile=0.9, ignore_first=1, initial_s=0.1, std_factor=0.0)
    est.add(2.5)  # lazy init, autotuning
    for _ in range(10):
        est.add(0.02)
    assert est.estimate() == pytest.approx(0.02)


def test_before_any_steady_sample_the_first_one_is_used_capped_with_the_priors_spread() -> None:
    est = RoundTripEstimator(ignore_first=1, initial_s=0.1, std_factor=2.0, prior_std_s=0.05)
    assert est.estimate() == 0.1
    est.add(0.3)
    assert est.estimate() == pytest.approx(0.3 + 2 * 0.05)
    est = RoundTripEstimator(ignore_first=1, initial_s=0.1, std_factor=2.0, prior_std_s=0.05)
    est.add(30.0)
    assert est.estimate() == pytest.approx(1.0 + 0.1)  # a cold start of 30 s is capped at 1 s
    est = RoundTripEstimator(ignore_first=1, initial_s=0.1, std_factor=2.0, prior_std_s=0.05)
    est.add(0.01)
    assert est.estimate() == pytest.approx(0.11)


def test_one_sample_is_not_trusted_as_the_tail() -> None:
    """Issue 10: right after the first chunk the estimate was one 33 ms sample; the next round
    trip took 186 ms. With the prior's spread the plan allows for it."""
    est = RoundTripEstimator(ignore_first=0, std_factor=2.0, prior_std_s=0.05)
    est.add(0.033)
    assert est.estimate() == pytest.approx(0.033 + 2 * 0.05)
    assert est.estimate() > 0.13


def test_the_prior_fades_as_samples_accumulate() -> None:
    est = RoundTripEstimator(window=400, quantile=0.9, ignore_first=0, std_factor=2.0, prior_std_s=0.05)
    rng = np.random.default_rng(0)
    samples = rng.normal(0.05, 0.005, 400)
    for x in samples:
        est.add(float(x))
    mean, std = samples.mean(), samples.std()
    # Above mean + 2 std of the samples themselves by what the prior (one sample of 400) adds.
    assert mean + 2 * std < est.estimate() < mean + 2 * std + 0.0015
    few = RoundTripEstimator(ignore_first=0, std_factor=2.0, prior_std_s=0.05)
    for x in samples[:4]:
        few.add(float(x))
    assert few.estimate() > samples[:4].mean() + 2 * samples[:4].std() + 0.03


def test_a_high_quantile_covers_the_tail_and_forgets_old_samples() -> None:
    est = RoundTripEstimator(window=10, quantile=0.9, ignore_first=0, std_factor=0.0)
    for v in [0.01] * 8 + [0.05, 0.06]:
        est.add(v)
    assert 0.05 <= est.estimate() <= 0.06
    for _ in range(10):
        est.add(0.01)
    assert est.estimate() == pytest.approx(0.01)


@given(
    st.lists(st.floats(0.001, 2.0), min_size=1, max_size=60),
    st.floats(0.0, 3.0),
    st.floats(0.0, 0.2),
)
def test_the_estimate_is_at_least_the_quantile_and_mean_plus_k_std(
    samples: list[float], k: float, prior: float
) -> None:
    est = RoundTripEstimator(window=100, quantile=0.9, ignore_first=0, std_factor=k, prior_std_s=prior)
    for x in samples:
        est.add(x)
    values = np.asarray(samples)
    assert est.estimate() >= np.quantile(values, 0.9) - 1e-12
    assert est.estimate() >= values.mean() + k * values.std() - 1e-9
    assert est.typical() == pytest.approx(np.quantile(values, 0.9))


def make(**kw: float) -> Scheduler:
    config = SchedulerConfig(rtt_initial_s=0.05, margin_s=0.02, rtt_ignore_first=0, **kw)
    return Scheduler(config, request_timeout_s=1.0)


def test_sends_at_once_without_a_plan() -> None:
    assert make().should_send(now=10.0, plan_end=None, in_flight_since=None)
    assert make().should_send(now=10.0, plan_end=9.0, in_flight_since=None)


def test_sends_when_what_is_left_covers_only_the_round_trip() -> None:
    s = make()
    assert not s.should_send(now=10.0, plan_end=10.2, in_flight_since=None)
    assert s.should_send(now=10.0, plan_end=10.069, in_flight_since=None)  # 69 ms < 50 + 20


def test_one_request_in_flight_at_a_time_unless_it_is_lost() -> None:
    s = make()
    assert not s.should_send(now=10.0, plan_end=None, in_flight_since=9.5)
    assert s.should_send(now=10.0, plan_end=None, in_flight_since=8.9)  # older than 1 s + rtt


def test_replan_interval_asks_again_before_the_chunk_runs_low() -> None:
    s = make(replan_interval_s=0.3, execution_horizon=1.0)
    s.sent(10.0)
    assert not s.should_send(now=10.2, plan_end=11.0, in_flight_since=None)
    assert s.should_send(now=10.31, plan_end=11.0, in_flight_since=None)


@pytest.mark.parametrize(
    ("horizon", "first_ask"),
    [
        (0.5, 10.8),  # half of the 1.6 s chunk captured at 10.0
        (0.25, 10.4),
        (1.0, 11.53),  # horizon off: only the deadline floor, 70 ms before the end
    ],
)
def test_asks_again_once_the_execution_horizon_of_the_chunk_is_executed(
    horizon: float, first_ask: float
) -> None:
    s = make(execution_horizon=horizon)
    s.sent(10.0)  # the observation captured at 10.0 ...
    assert not s.should_send(now=10.01, plan_end=None, in_flight_since=10.0)
    # ... is answered at 10.04 with a chunk whose last action is for 11.6.
    times = np.round(np.arange(10.04, 11.6, 0.01), 6)
    asked = next(t for t in times if s.should_send(now=float(t), plan_end=11.6, in_flight_since=None))
    assert asked == pytest.approx(first_ask, abs=0.0101)


def simulate(scheduler: Scheduler, roundtrips: list[float], chunk_s: float = 1.6) -> float:
    """Seconds the plan was exhausted after the first chunk, ticking at 100 Hz while requests
    take the given round trips in turn (one in flight at a time)."""
    now, plan_end, in_flight, arrival = 0.0, None, None, math.inf
    exhausted, k, first = 0.0, 0, True
    while k < len(roundtrips) or in_flight is not None:
        if in_flight is not None and now >= arrival:
            plan_end, in_flight, first = in_flight + chunk_s, None, False
            scheduler.rtt.add(roundtrips[k - 1])
        if not first and (plan_end is None or now > plan_end):
            exhausted += 0.01
        if k < len(roundtrips) and scheduler.should_send(now, plan_end, in_flight):
            scheduler.sent(now)
            in_flight, arrival = now, now + roundtrips[k]
            k += 1
        now = round(now + 0.01, 6)
    return exhausted


@pytest.mark.parametrize(
    ("horizon", "k", "held"),
    [
        (0.5, 2.0, False),  # the default: half a chunk of slack covers a 600 ms spike
        (1.0, 0.0, True),  # the old rule (deadline + p90 only): the spike stops the arm
    ],
)
def test_one_round_trip_spike_does_not_stop_the_arm(horizon: float, k: float, held: bool) -> None:
    """Issue 10: asking only when the plan has a p90 round trip + 30 ms left lets one spike stop
    the arm; the execution horizon keeps the next chunk half a chunk ahead."""
    config = SchedulerConfig(execution_horizon=horizon, rtt_std_factor=k, rtt_ignore_first=1)
    s = Scheduler(config, request_timeout_s=1.0)
    roundtrips = [0.5] + [0.033] * 20 + [0.6] + [0.033] * 10
    assert (simulate(s, roundtrips) > 0) == held


@pytest.mark.parametrize(
    ("rtt", "dt", "steps"),
    [
        (0.05, 0.1, 1),  # half a step still costs a step
        (0.2, 0.1, 2),
        (0.21, 0.1, 3),
    ],
)
def test_inference_delay_in_steps(rtt: float, dt: float, steps: int) -> None:
    s = make()
    for _ in range(5):
        s.rtt.add(rtt)
    assert s.delay_steps(dt) == steps

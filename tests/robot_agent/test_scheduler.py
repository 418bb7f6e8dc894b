from __future__ import annotations

import pytest

from robot_agent.config import SchedulerConfig
from robot_agent.scheduler import RoundTripEstimator, Scheduler


def test_the_first_call_spike_is_ignored() -> None:
    est = RoundTripEstimator(window=20, quantile=0.9, ignore_first=1, initial_s=0.1)
    est.add(2.5)  # lazy init, autotuning
    for _ in range(10):
        est.add(0.02)
    assert est.estimate() == pytest.approx(0.02)


def test_before_any_steady_sample_the_first_one_is_used_capped() -> None:
    est = RoundTripEstimator(ignore_first=1, initial_s=0.1)
    assert est.estimate() == 0.1
    est.add(0.3)
    assert est.estimate() == 0.3
    est = RoundTripEstimator(ignore_first=1, initial_s=0.1)
    est.add(30.0)
    assert est.estimate() == 1.0


def test_a_high_quantile_covers_the_tail_and_forgets_old_samples() -> None:
    est = RoundTripEstimator(window=10, quantile=0.9, ignore_first=0)
    for v in [0.01] * 8 + [0.05, 0.06]:
        est.add(v)
    assert 0.05 <= est.estimate() <= 0.06
    for _ in range(10):
        est.add(0.01)
    assert est.estimate() == pytest.approx(0.01)


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
    s = make(replan_interval_s=0.3)
    s.sent(10.0)
    assert not s.should_send(now=10.2, plan_end=11.0, in_flight_since=None)
    assert s.should_send(now=10.31, plan_end=11.0, in_flight_since=None)


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

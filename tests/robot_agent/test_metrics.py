"""The agent's metric families: every label value of a closed set exists at 0 from the start."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from robot_agent.events import Hold, RequestSent, Resume
from robot_agent.metrics import AgentMetrics
from robot_agent.reasons import HOLD_REASONS
from safety import SAFETY_RULE_KINDS
from tests.robot_agent._events import run_events


def test_every_hold_reason_and_safety_kind_starts_at_zero() -> None:
    """A series born at 1 hides its first event from increase()/rate(): each exists at 0 first."""
    registry = CollectorRegistry()
    AgentMetrics(registry)
    for reason in HOLD_REASONS:
        assert registry.get_sample_value("vla_agent_hold_total", {"reason": reason}) == 0, reason
    for kind in SAFETY_RULE_KINDS:
        assert registry.get_sample_value("vla_agent_safety_interventions_total", {"kind": kind}) == 0, kind


def test_counting_one_reason_leaves_the_others_at_zero() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.hold.labels("late").inc()
    metrics.safety_interventions.labels("velocity").inc()
    assert registry.get_sample_value("vla_agent_hold_total", {"reason": "late"}) == 1
    assert registry.get_sample_value("vla_agent_hold_total", {"reason": "stream_down"}) == 0
    assert registry.get_sample_value("vla_agent_safety_interventions_total", {"kind": "velocity"}) == 1
    assert registry.get_sample_value("vla_agent_safety_interventions_total", {"kind": "jerk"}) == 0


def test_the_metrics_count_the_events() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    assert metrics.name == "metrics"
    for event in run_events():
        metrics.on_event(event)
    metrics.on_event(RequestSent(time_s=0.2, request_id=4, inference_delay_steps=3))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("vla_agent_control_period_seconds_count") == 4  # the first tick has no period
    assert value("vla_agent_control_overrun_total") == 1
    assert [
        value("vla_agent_hold_total", reason=r) for r in ("waiting_for_server", "late", "stall", "safety")
    ] == [
        1,
        1,
        1,
        0,
    ]
    assert value("vla_agent_holding") == 1  # the e-stop holds
    assert value("vla_agent_safety_interventions_total", kind="velocity") == 1
    assert value("vla_agent_safety_interventions_total", kind="jerk") == 1
    assert value("vla_agent_deadline_miss_total") == 1
    assert value("vla_agent_roundtrip_seconds_count") == 2
    assert value("vla_agent_roundtrip_seconds_sum") == 0.08
    assert value("vla_agent_stale_actions_dropped_total") == 12
    assert value("vla_agent_reconnects_total") == 1
    assert value("vla_agent_estop_total") == 1
    assert value("vla_agent_inference_delay_steps") == 3


def test_the_holding_gauge_follows_hold_and_resume() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.on_event(Hold(time_s=0.0, reason="late"))
    assert registry.get_sample_value("vla_agent_holding") == 1
    metrics.on_event(Resume(time_s=0.1, reason="late"))
    assert registry.get_sample_value("vla_agent_holding") == 0

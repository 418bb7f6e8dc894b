"""The agent's metric families: every label value of a closed set exists at 0 from the start."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from robot_agent.metrics import AgentMetrics
from robot_agent.reasons import HOLD_REASONS
from safety import SAFETY_RULE_KINDS


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

"""The summary cannot drift from /metrics (issue 12, item 2): the run statistics, the metrics and
the recorder are subscribers of one stream of events, so any sequence of events leaves every count
they share equal."""

from __future__ import annotations

import json
import math
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from robot_agent.events import ChunkAccepted, Event, EventBus, Subscriber
from robot_agent.metrics import AgentMetrics
from robot_agent.reasons import HOLD_REASONS
from robot_agent.recorder import Recorder, event_line
from robot_agent.summary import RunStats
from safety import SAFETY_RULE_KINDS
from tests.robot_agent._events import events

RUNS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    found = registry.get_sample_value(name, labels or {})
    assert found is not None, name
    return found


@RUNS
@given(st.lists(events, max_size=60))
def test_the_summary_and_the_metrics_count_the_same_events_alike(run: list[Event]) -> None:
    stats, registry = RunStats(), CollectorRegistry()
    metrics = AgentMetrics(registry)
    subscribers: list[Subscriber] = [stats, metrics]
    bus = EventBus(subscribers)
    for event in run:
        bus.publish(event)

    for reason in HOLD_REASONS:
        assert stats.holds[reason] == value(registry, "vla_agent_hold_total", {"reason": reason}), reason
    for kind in SAFETY_RULE_KINDS:
        assert stats.safety_interventions[kind] == value(
            registry, "vla_agent_safety_interventions_total", {"kind": kind}
        ), kind
    assert set(stats.holds) <= set(HOLD_REASONS)
    assert set(stats.safety_interventions) <= set(SAFETY_RULE_KINDS)
    assert stats.deadline_misses == value(registry, "vla_agent_deadline_miss_total")
    assert stats.estops == value(registry, "vla_agent_estop_total")
    assert stats.reconnects == value(registry, "vla_agent_reconnects_total")
    assert stats.stale_actions_dropped == value(registry, "vla_agent_stale_actions_dropped_total")
    assert stats.overruns == value(registry, "vla_agent_control_overrun_total")
    # Every chunk that entered the plan has its round trip in both; a chunk of the run is one
    # with actions left (one with none is a deadline miss).
    roundtrips = value(registry, "vla_agent_roundtrip_seconds_count")
    assert len(stats.roundtrips) == roundtrips
    assert math.isclose(
        float(stats.roundtrips.values().sum()),
        value(registry, "vla_agent_roundtrip_seconds_sum"),
        abs_tol=1e-9,
    )
    accepted = [e for e in run if isinstance(e, ChunkAccepted)]
    assert stats.chunks == sum(e.kept > 0 for e in accepted) <= roundtrips
    assert len(stats.periods) == value(registry, "vla_agent_control_period_seconds_count")
    holding = [e for e in run if type(e).__name__ in ("Hold", "Resume", "EStopLatched")]
    expected_gauge = 0.0 if not holding or type(holding[-1]).__name__ == "Resume" else 1.0
    assert value(registry, "vla_agent_holding") == expected_gauge


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, max_size=40))
def test_the_recording_tells_what_the_summary_counts(run: list[Event]) -> None:
    stats = RunStats()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "episode"
        recorder = Recorder(folder, video=False)
        bus = EventBus([stats, recorder])
        for event in run:
            bus.publish(event)
        recorder.close(stats.to_dict())
        lines = [json.loads(x) for x in (folder / "events.jsonl").read_text().splitlines()]
        steps = (folder / "steps.jsonl").read_text().splitlines()
        summary = json.loads((folder / "summary.json").read_text())
    kinds = Counter(e["event"] for e in lines)
    assert len(steps) == stats.ticks == summary["ticks"]
    assert kinds["hold"] == sum(stats.holds.values())
    assert Counter(e["reason"] for e in lines if e["event"] == "hold") == stats.holds
    assert kinds["estop"] == stats.estops
    assert kinds["reconnect"] == stats.reconnects
    assert kinds["stale_observation"] == stats.stale_observations
    assert Counter(e["reason"] for e in lines if e["event"] == "chunk_rejected") == stats.rejected_chunks
    assert summary["holds"] == dict(stats.holds)
    assert all(
        e["time"] == event.time_s
        for e, event in zip(lines, [x for x in run if event_line(x) is not None], strict=True)
    )

from __future__ import annotations

from robot_agent.events import (
    Connected,
    PolicyChanged,
)
from robot_agent.summary import RunStats, Samples, format_summary
from tests.robot_agent._events import POLICY, run_events


def test_samples_keep_the_most_recent_within_capacity() -> None:
    samples = Samples(capacity=4)
    for v in range(10):
        samples.append(float(v))
    assert len(samples) == 4
    assert samples.values().tolist() == [6.0, 7.0, 8.0, 9.0]


def test_summary_reports_what_the_issue_asks_for() -> None:
    stats = RunStats(rate_hz=100.0, started_s=0.0, ended_s=2.0, ticks=200, overruns=1, deadline_misses=2)
    for p in [0.01] * 99 + [0.02]:
        stats.periods.append(p)
    for r in [0.005] * 18 + [0.05, 0.06]:
        stats.roundtrips.append(r)
    stats.holds.update({"waiting_for_server": 1, "late": 2})
    stats.safety_interventions.update({"velocity": 3})
    stats.reconnects = 1
    summary = stats.to_dict()
    assert summary["achieved_rate_hz"] == 100.0
    assert summary["control_period_s"]["p50"] == 0.01
    assert 0.01 < summary["control_period_s"]["p99"] <= 0.02  # numpy linear quantile: 10.10 ms
    assert summary["roundtrip_s"]["p50"] == 0.005 and summary["roundtrip_s"]["p95"] > 0.005
    text = format_summary(summary)
    for line in [
        "  ticks                  200 in 2.0 s",
        "  achieved rate          100.0 Hz (target 100 Hz)",
        "  control period         p50 10.00 ms, p99 10.10 ms, overruns 1",
        "  deadline misses        2",
        "  holds                  late 2, waiting_for_server 1",
        "  safety interventions   velocity 3",
        "  reconnects             1",
    ]:
        assert line in text, text
    assert "round trip             p50 5.00 ms, p95 50.50 ms, p99 58.10 ms (0 chunks)" in text


def test_an_empty_run_still_formats() -> None:
    text = format_summary(RunStats().to_dict())
    assert "p50 - , p99 -" not in text and "control period         p50 -, p99 -" in text


def test_summary_reports_the_hold_fraction_relabels_and_tick_faults() -> None:
    stats = RunStats(rate_hz=100.0, started_s=0.0, ended_s=4.0, ticks=400, ticks_after_first_chunk=300)
    stats.hold_ticks_after_first_chunk.update({"stall": 2, "late": 1})
    stats.tick_faults.update({"trajectory": 1})
    stats.hold_relabels = 1
    summary = stats.to_dict()
    assert summary["hold_fraction_after_first_chunk"] == 0.01
    assert summary["hold_ticks_after_first_chunk"] == {"stall": 2, "late": 1}
    assert summary["tick_faults"] == {"trajectory": 1} and summary["hold_relabels"] == 1
    text = format_summary(summary)
    assert "  held after 1st chunk   1.00 % of ticks (late 1, stall 2)" in text, text
    assert "  tick faults            trajectory 1" in text, text
    assert RunStats().to_dict()["hold_fraction_after_first_chunk"] is None


def test_the_run_statistics_count_the_events() -> None:
    stats = RunStats()
    assert stats.name == "stats"
    for event in run_events():
        stats.on_event(event)
    assert (stats.ticks, stats.ticks_after_first_chunk, stats.overruns) == (5, 4, 1)
    assert stats.periods.values().tolist() == [0.01] * 4
    assert stats.tick_work.values().tolist() == [0.001, 0.002, 0.02, 0.001, 0.001]
    assert stats.hold_ticks_after_first_chunk == {"stall": 1, "estop": 1}
    assert stats.holds == {"waiting_for_server": 1, "late": 1, "stall": 1}
    assert (stats.hold_relabels, stats.holds_after_first_chunk) == (1, 1)
    assert (stats.chunks, stats.first_chunk_s, stats.stale_actions_dropped) == (1, 0.02, 12)
    assert stats.roundtrips.values().tolist() == [0.03, 0.05]
    assert stats.deadline_misses == 1 and stats.rejected_chunks == {"non_finite": 1}
    assert stats.server_status == {"OK": 2} and stats.tick_faults == {"trajectory": 1}
    assert stats.safety_interventions == {"velocity": 1, "jerk": 1}
    assert (stats.stale_observations, stats.reconnects) == (1, 1)
    assert (stats.estops, stats.estop_reason) == (1, "shield e-stop")
    assert stats.policy == POLICY


def test_an_allowed_policy_change_names_the_new_policy_in_the_summary() -> None:
    stats = RunStats()
    new = {**POLICY, "version": "2"}
    stats.on_event(Connected(time_s=0.0, address="a:1", policy=POLICY))
    stats.on_event(PolicyChanged(time_s=1.0, allowed=False, previous=POLICY, policy=new))
    assert stats.policy == POLICY  # refused: the run stops on the old one
    stats.on_event(PolicyChanged(time_s=1.0, allowed=True, previous=POLICY, policy=new))
    assert stats.policy == new

"""Issue 11: a recording tells the whole story. Every record has a time on one clock (the agent's
``time.monotonic()``), the summary anchors it to wall-clock time and holds the run's identity and
outcome, and a recording is never written over another one."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from robot_agent.errors import ConfigError
from robot_agent.events import Connected, Hold
from robot_agent.recorder import Recorder, check_new_folder
from robot_agent.summary import ClockAnchor, RunStats, describe_policy, format_summary, policy_identity


def test_events_carry_their_time_on_the_agents_clock(tmp_path: Path) -> None:
    """Each line's time is its event's, a ``time.monotonic()`` reading of the publisher: the
    recorder stamps nothing itself, so lines written late keep the time the event happened."""
    recorder = Recorder(tmp_path / "ep", video=False)
    now = time.monotonic()
    recorder.on_event(Connected(time_s=10.5, address="127.0.0.1:1", policy={"name": "p", "version": "1"}))
    recorder.on_event(Hold(time_s=11.25, reason="late"))
    recorder.on_event(Hold(time_s=now, reason="stall", previous="late"))
    recorder.close()
    events = [json.loads(line) for line in (tmp_path / "ep" / "events.jsonl").read_text().splitlines()]
    assert events == [
        {"time": 10.5, "event": "connect", "reason": "127.0.0.1:1", "policy": "p", "version": "1"},
        {"time": 11.25, "event": "hold", "reason": "late"},
        {"time": now, "event": "hold", "reason": "stall", "previous": "late"},
    ]


def test_a_recording_is_never_written_over_another(tmp_path: Path) -> None:
    folder = tmp_path / "ep1"
    Recorder(folder, video=False).close({"ticks": 1})
    with pytest.raises(ConfigError) as info:
        Recorder(folder, video=False)
    message = str(info.value)
    assert message == (
        f"record.dir {str(folder)!r} is not empty (events.jsonl, steps.jsonl, summary.json): "
        "a recording is never overwritten; record into a new folder"
    )
    assert "\n" not in message and info.value.field == "record.dir"
    assert json.loads((folder / "summary.json").read_text()) == {"ticks": 1}  # untouched
    (tmp_path / "empty").mkdir()
    Recorder(tmp_path / "empty", video=False).close()  # an empty folder is fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        check_new_folder(tmp_path / "file")
    many = tmp_path / "many"
    many.mkdir()
    for name in "abcdef":
        (many / name).write_text("")
    with pytest.raises(ConfigError, match=r"is not empty \(a, b, c, d, \.\.\.\)"):
        check_new_folder(many, field="record.dir")


def test_the_summary_anchors_the_clock_and_names_the_run() -> None:
    anchor = ClockAnchor(monotonic_s=100.0, unix_s=1_800_000_000.0)
    stats = RunStats(
        rate_hz=100.0, clock=anchor, started_s=101.0, ended_s=103.5, instruction="pick the red cube",
        server_address="10.0.0.2:50051",
    )  # fmt: skip
    spec = SimpleNamespace(
        name="demo", version="1.2", backend="torch", device="cuda:0", action_space="ee_delta", action_dim=7
    )
    stats.policy = policy_identity(spec)
    stats.end("estop", "operator")
    stats.end("error", "RuntimeError: later")  # the first reason stays
    summary = stats.to_dict()
    assert summary["clock"] == {"monotonic_s": 100.0, "unix_s": 1_800_000_000.0}
    assert summary["started_at"] == "2027-01-15T08:00:01.000+00:00"
    assert summary["ended_at"] == "2027-01-15T08:00:03.500+00:00"
    assert datetime.datetime.fromisoformat(summary["started_at"]).timestamp() == 1_800_000_001.0
    assert (summary["instruction"], summary["server_address"]) == ("pick the red cube", "10.0.0.2:50051")
    assert summary["policy"] == {
        "name": "demo", "version": "1.2", "backend": "torch", "device": "cuda:0",
        "action_space": "ee_delta", "action_dim": 7,
    }  # fmt: skip
    assert (summary["exit_reason"], summary["exit_detail"]) == ("estop", "operator")
    json.dumps(summary)  # all of it is JSON
    text = format_summary(summary)
    assert "  policy                 demo 1.2 (torch) at 10.0.0.2:50051" in text, text
    assert "  started                2027-01-15T08:00:01.000+00:00, ended by estop (operator)" in text, text
    assert describe_policy(summary["policy"]) == "demo 1.2 (ee_delta, 7 actions, torch)"


def test_the_anchor_is_taken_at_once_from_both_clocks() -> None:
    before_m, before_u = time.monotonic(), time.time()
    anchor = ClockAnchor.now()
    after_m, after_u = time.monotonic(), time.time()
    assert before_m <= anchor.monotonic_s <= after_m and before_u <= anchor.unix_s <= after_u
    assert abs(anchor.unix(after_m) - after_u) < 0.05


def test_every_video_frame_has_its_capture_time(tmp_path: Path) -> None:
    import numpy as np

    from robot_agent.cameras.base import Frame

    recorder = Recorder(tmp_path / "ep", video=True)
    rgb = np.zeros((16, 16, 3), dtype=np.uint8)
    for name, t in [("front", 5.0), ("wrist", 5.01), ("front", 5.033)]:
        recorder.frame(name, Frame(rgb=rgb, time_s=t))
    recorder.close()
    lines = [json.loads(line) for line in (tmp_path / "ep" / "frames.jsonl").read_text().splitlines()]
    assert lines == [
        {"time": 5.0, "camera": "front", "index": 0},
        {"time": 5.01, "camera": "wrist", "index": 0},
        {"time": 5.033, "camera": "front", "index": 1},
    ]
    assert (tmp_path / "ep" / "front.mp4").stat().st_size > 0

"""The recorder never stops the run: a full disk stops the recording with one warning naming the
file (issue 10, kind 1), summary.json is whole or absent, non-finite numbers are written as null."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_agent.errors import ConfigError
from robot_agent.events import (
    Answer,
    ChunkRejected,
    Connected,
    DeadlineMiss,
    EStopLatched,
    Hold,
    ObservationFresh,
    ObservationStale,
    PolicyChanged,
    Reconnected,
    RequestFailed,
    Resume,
    StreamDown,
    Tick,
    Waiting,
)
from robot_agent.recorder import NullRecorder, Recorder
from safety.record import StepRecord
from safety.types import Measured, Pose, Target
from tests.robot_agent._events import POLICY, tick


class FullDisk:
    """A text file object whose writes fail as on a full disk (and records nothing)."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # the buffer flush


def measured(x: float = 0.4) -> Measured:
    pose = Pose(position=np.array([x, 0.0, 0.3]), quaternion=np.array([1.0, 0.0, 0.0, 0.0]))
    return Measured(time_s=1.0, joints=np.zeros(7), ee=pose, gripper=1.0)


def step(recorder: Recorder, **kw: Any) -> None:
    """Publish one tick to ``recorder`` with this step record (``kw`` replacing its fields)."""
    args: dict[str, Any] = {
        "time_s": 1.0, "measured": measured(), "raw": None, "safe": None, "fired": (), "holding": False,
    }  # fmt: skip
    record = StepRecord(**{**args, **kw})
    recorder.on_event(Tick(step=record, period_s=0.01, work_s=0.001, overran=False, after_first_chunk=True))


def test_a_full_disk_stops_the_recording_with_one_warning_and_the_summary_is_still_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(tmp_path, video=False)
    step(recorder)
    full = FullDisk()
    recorder._steps.close()
    recorder._steps = full  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="robot_agent.recorder"):
        for _ in range(5):
            step(recorder)  # must not raise
        recorder.on_event(Hold(time_s=1.0, reason="late"))  # nothing more is written after the failure
        recorder.close({"ticks": 5, "holds": {"late": 1}})
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert str(tmp_path / "steps.jsonl") in warnings[0].getMessage()
    assert full.writes == 1
    assert (tmp_path / "events.jsonl").read_text() == ""
    assert json.loads((tmp_path / "summary.json").read_text()) == {"ticks": 5, "holds": {"late": 1}}


def test_summary_json_is_whole_or_absent_never_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10: on a full disk the run ended with a 0-byte summary.json."""
    recorder = Recorder(tmp_path, video=False)
    # The temporary file cannot be created (a directory stands in its way): the write fails.
    (tmp_path / ".summary.json.tmp").mkdir()
    with caplog.at_level(logging.WARNING, logger="robot_agent.recorder"):
        recorder.close({"ticks": 1})  # must not raise
    assert not (tmp_path / "summary.json").exists()
    assert "summary.json" in caplog.text and "only printed" in caplog.text


def test_a_failed_summary_write_leaves_the_previous_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(tmp_path, video=False)
    (tmp_path / "summary.json").write_text('{"ticks": 1}\n')  # an earlier write of it

    def replace_fails(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("robot_agent.recorder.os.replace", replace_fails)
    recorder.close({"ticks": 2})
    assert json.loads((tmp_path / "summary.json").read_text()) == {"ticks": 1}
    assert not (tmp_path / ".summary.json.tmp").exists()


def test_non_finite_numbers_are_recorded_as_null(tmp_path: Path) -> None:
    """A NaN chunk with --record: json.dumps(allow_nan=False) raised inside the tick."""
    recorder = Recorder(tmp_path, video=False)
    nan_pose = Pose(position=np.array([np.nan, 0.0, np.inf]), quaternion=np.array([1.0, 0.0, 0.0, 0.0]))
    step(
        recorder,
        raw=Target(time_s=1.0, ee=nan_pose, gripper=float("nan")),
        holding=True,
        hold_reason="non_finite",
    )
    recorder.close()
    record = json.loads((tmp_path / "steps.jsonl").read_text())
    assert record["raw"]["ee"][:3] == [None, 0.0, None] and record["raw"]["gripper"] is None
    assert record["measured"]["ee"][:3] == [0.4, 0.0, 0.3]
    assert record["hold_reason"] == "non_finite"


def test_a_record_dir_that_cannot_be_made_is_a_config_error_naming_it(tmp_path: Path) -> None:
    """``--record /proc/x`` printed a bare FileNotFoundError."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"record.dir '.*a-file/episode' cannot be written") as info:
        Recorder(blocker / "episode")
    assert info.value.field == "record.dir"


def test_events_are_written_as_the_agent_wrote_them(tmp_path: Path) -> None:
    """Each event's line in events.jsonl, at the event's time; a tick's line in steps.jsonl."""
    recorder = Recorder(tmp_path, video=False)
    published = [
        Waiting(time_s=1.0, attempt=2, detail="no server"),
        Connected(time_s=1.5, address="127.0.0.1:1", policy=POLICY),
        Hold(time_s=2.0, reason="waiting_for_server"),
        Hold(time_s=2.5, reason="late", previous="waiting_for_server", detail="not written"),
        Resume(time_s=3.0, reason="late"),
        ChunkRejected(time_s=3.5, request_id=7, kind="non_finite", detail="NaN at [3, 1]"),
        RequestFailed(time_s=4.0, error="ValueError('x')"),
        ObservationStale(time_s=4.5, detail="camera 'front' frame is 400 ms old"),
        ObservationFresh(time_s=5.0, detail="camera 'front' frame is 400 ms old"),
        StreamDown(time_s=5.5, detail="connection reset"),
        Reconnected(time_s=6.0, attempt=3),
        PolicyChanged(time_s=6.5, allowed=False, previous=POLICY, policy={**POLICY, "version": "2"}),
        EStopLatched(time_s=7.0, reason="shield e-stop"),
        Answer(time_s=7.5, request_id=8, status="OK"),  # counted, not written
        DeadlineMiss(time_s=8.0),  # counted, not written
    ]
    for event in published:
        recorder.on_event(event)
    recorder.on_event(tick(8.5, holding=True, reason="estop"))
    recorder.close()
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines == [
        {"time": 1.0, "event": "waiting", "reason": "no server", "attempt": 2},
        {"time": 1.5, "event": "connect", "reason": "127.0.0.1:1", "policy": "still", "version": "1"},
        {"time": 2.0, "event": "hold", "reason": "waiting_for_server"},
        {"time": 2.5, "event": "hold", "reason": "late", "previous": "waiting_for_server"},
        {"time": 3.0, "event": "resume", "reason": "late"},
        {
            "time": 3.5,
            "event": "chunk_rejected",
            "reason": "non_finite",
            "request_id": 7,
            "detail": "NaN at [3, 1]",
        },
        {"time": 4.0, "event": "request_failed", "reason": "ValueError('x')"},
        {"time": 4.5, "event": "stale_observation", "reason": "camera 'front' frame is 400 ms old"},
        {"time": 5.0, "event": "observation_fresh", "reason": "camera 'front' frame is 400 ms old"},
        {"time": 5.5, "event": "stream_down", "reason": "connection reset"},
        {"time": 6.0, "event": "reconnect", "reason": "attempt 3"},
        {
            "time": 6.5,
            "event": "policy_change",
            "reason": "refused",
            "previous": POLICY,
            "policy": {**POLICY, "version": "2"},
        },
        {"time": 7.0, "event": "estop", "reason": "shield e-stop"},
    ]
    (step_line,) = [json.loads(x) for x in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert step_line == {
        "time": 8.5,
        "measured": {
            "time": 8.5,
            "joints": [0.0] * 7,
            "ee": [0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0],
            "gripper": 1.0,
        },
        "raw": None,
        "safe": None,
        "fired": [],
        "holding": True,
        "hold_reason": "estop",
        "plan_end": None,
    }


def test_recording_off_takes_every_event_and_writes_nothing(tmp_path: Path) -> None:
    recorder = NullRecorder()
    assert recorder.name == "recorder"
    recorder.on_event(tick(1.0))
    recorder.on_event(Hold(time_s=1.0, reason="late"))
    assert list(tmp_path.iterdir()) == []

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
from robot_agent.recorder import Recorder
from safety.types import Measured, Pose, Target


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
    args: dict[str, Any] = {
        "time_s": 1.0, "measured": measured(), "raw": None, "safe": None, "fired": (), "holding": False,
    }  # fmt: skip
    recorder.step(**{**args, **kw})


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
        recorder.event("hold", "late")  # nothing more is written after the failure
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
        recorder, raw=Target(time_s=1.0, ee=nan_pose, gripper=float("nan")), holding=True, reason="non_finite"
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

"""A recording cut short by a full disk still reads line by line: the write that failed half-way
left a torn last line in ``steps.jsonl`` (seen on a 200 KiB tmpfs), and the README's own
``[json.loads(line) for line in open("run/steps.jsonl")]`` then raised JSONDecodeError."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path
from typing import IO

import pytest

from robot_agent.events import Hold
from robot_agent.recorder import Recorder
from tests.robot_agent._events import tick


class ShortWrite:
    """A text file whose next write stores only half its text, then fails as a full disk does."""

    def __init__(self, inner: IO[str]) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(text[: len(text) // 2])
        self.inner.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        self.inner.close()


def record_step(recorder: Recorder, t: float) -> None:
    recorder.on_event(tick(t, holding=True, reason="late"))


@pytest.mark.parametrize("name", ["steps.jsonl", "events.jsonl"])
def test_a_write_that_fails_half_way_leaves_only_whole_lines(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(tmp_path, video=False)
    for k in range(3):
        record_step(recorder, float(k))
        recorder.on_event(Hold(time_s=float(k), reason=f"reason {k}"))
    attr = "_steps" if name == "steps.jsonl" else "_events"
    setattr(recorder, attr, ShortWrite(getattr(recorder, attr)))
    with caplog.at_level(logging.WARNING, logger="robot_agent.recorder"):
        record_step(recorder, 3.0)
        recorder.on_event(Hold(time_s=3.0, reason="reason 3"))
        recorder.close({"ticks": 4})
    text = (tmp_path / name).read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]  # raised on the torn line before
    assert len(lines) == 3
    key = "time" if name == "steps.jsonl" else "reason"
    assert [line[key] for line in lines] == (
        [0.0, 1.0, 2.0] if key == "time" else [f"reason {k}" for k in range(3)]
    )
    assert any("cut back to its last whole line" in r.getMessage() for r in caplog.records)
    assert json.loads((tmp_path / "summary.json").read_text()) == {"ticks": 4}


def test_whole_files_are_left_as_they_are(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(tmp_path, video=False)
    record_step(recorder, 0.0)
    recorder.stop("the loop dropped it")  # stopped, but nothing torn
    with caplog.at_level(logging.WARNING, logger="robot_agent.recorder"):
        recorder.close(None)
    assert len((tmp_path / "steps.jsonl").read_text().splitlines()) == 1
    assert not any("cut back" in r.getMessage() for r in caplog.records)

"""``--record DIR``: an episode folder that lets anyone replay and audit a run.

- ``steps.jsonl``: every control tick: time, measured state, raw target, safe target, the safety
  rules that fired, holding or not (and why);
- ``events.jsonl``: connect, hold, resume, reconnect, policy change, e-stop, each with its time
  and reason;
- ``safety_limits.json``: the effective shield limits, so a recording can be checked against them;
- ``summary.json``: the end-of-run summary: the run's identity (instruction, policy, server),
  outcome (``exit_reason``) and counts, and ``clock``, which maps every ``time`` to wall-clock time
  (see :mod:`robot_agent.summary`);
- ``<camera>.mp4``: each camera's video, through OpenCV;
- ``frames.jsonl``: one line per video frame written: ``camera``, ``index`` (the frame's number in
  that camera's video) and ``time`` (its capture time), so a frame is matched to its tick.

Every ``time`` is the agent's ``time.monotonic()`` in seconds: one clock for steps, events and
frames.

A recording is never overwritten: a folder that exists and is not empty is refused
(:class:`~robot_agent.errors.ConfigError` on ``record.dir`` naming it) before anything is written.

Lines are buffered and flushed on close; video frames are written from the capture threads.

A recording never stops the run: a file that cannot be written (a full disk, ``OSError``) stops
the recording with one warning naming the file, and the run carries on; ``summary.json`` is still
attempted at the end, written to a temporary file and renamed, so it is whole or absent, never
empty. Non-finite numbers (a NaN chunk, a broken state) are written as ``null``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
from typing_extensions import override

from robot_agent.cameras.base import Frame
from robot_agent.errors import ConfigError
from robot_agent.events import (
    ChunkRejected,
    Connected,
    EStopLatched,
    Event,
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
from safety.jsonable import json_number, jsonable
from safety.record import StepRecord

__all__ = ["NullRecorder", "Recorder", "check_new_folder", "event_line", "jsonable", "write_atomically"]

logger = logging.getLogger(__name__)


def check_new_folder(directory: str | Path, field: str = "record.dir") -> None:
    """Raise :class:`ConfigError` (on ``field``) if ``directory`` exists and is not an empty
    folder: a recording is never written over another one."""
    path = Path(directory)
    if not path.exists():
        return
    if not path.is_dir():
        raise ConfigError(f"{field} {str(path)!r} exists and is not a folder", field=field)
    entries = sorted(p.name for p in path.iterdir())
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise ConfigError(
            f"{field} {str(path)!r} is not empty ({shown}): a recording is never overwritten; "
            "record into a new folder",
            field=field,
        )


def _drop_torn_line(path: Path) -> None:
    """Truncate ``path`` after its last newline, if anything follows it (a line cut short by a
    failed write). Never raises: a failure is logged."""
    try:
        with path.open("r+b") as f:
            end = pos = f.seek(0, os.SEEK_END)
            while pos > 0:
                step = min(pos, 1 << 16)
                f.seek(pos - step)
                newline = f.read(step).rfind(b"\n")
                if newline >= 0:
                    pos += newline + 1 - step
                    break
                pos -= step
            if pos < end:
                f.truncate(pos)
                logger.warning(
                    "Recorder: %s cut back to its last whole line (%d bytes dropped)", path, end - pos
                )
    except OSError as exc:
        logger.warning("Recorder: cannot cut the torn last line of %s (%s)", path, exc)


def event_line(event: Event) -> tuple[str, str, dict[str, Any]] | None:
    """The ``events.jsonl`` line of ``event``: its ``event`` kind, ``reason`` and extra fields;
    None for an event that is not written there (ticks go to ``steps.jsonl``; counts only to the
    summary and the metrics)."""
    match event:
        case Hold(reason=reason, previous=previous):
            return "hold", reason, ({"previous": previous} if previous is not None else {})
        case Resume(reason=reason):
            return "resume", reason, {}
        case EStopLatched(reason=reason):
            return "estop", reason, {}
        case ChunkRejected(request_id=request_id, kind=kind, detail=detail):
            return "chunk_rejected", kind, {"request_id": request_id, "detail": detail}
        case RequestFailed(error=error):
            return "request_failed", error, {}
        case ObservationStale(detail=detail):
            return "stale_observation", detail, {}
        case ObservationFresh(detail=detail):
            return "observation_fresh", detail, {}
        case Waiting(attempt=attempt, detail=detail):
            return "waiting", detail, {"attempt": attempt}
        case Connected(address=address, policy=policy):
            return "connect", address, {"policy": policy.get("name"), "version": policy.get("version")}
        case Reconnected(attempt=attempt):
            return "reconnect", f"attempt {attempt}", {}
        case StreamDown(detail=detail):
            return "stream_down", detail, {}
        case PolicyChanged(allowed=allowed, previous=previous, policy=policy):
            extra = {"previous": dict(previous), "policy": dict(policy)}
            return "policy_change", "allowed" if allowed else "refused", extra
    return None


class NullRecorder:
    """Recording off: every call does nothing. A subscriber of the run's events
    (:class:`robot_agent.events.Subscriber`, ``name`` ``recorder``)."""

    name: str = "recorder"

    def on_event(self, event: Event) -> None:
        pass

    def frame(self, name: str, frame: Frame) -> None:
        pass

    def safety_limits(self, limits: Mapping[str, Any]) -> None:
        pass

    def stop(self, reason: str) -> None:
        """Stop recording (something failed); what was written stays. Never raises."""

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        pass


class Recorder(NullRecorder):
    """Writes one episode folder: a new one, or an empty one (else :class:`ConfigError`), from
    the run's events (:meth:`on_event`), each line at its event's time (the agent's clock)."""

    def __init__(
        self,
        directory: str | Path,
        *,
        video: bool = True,
        video_fps: float = 30.0,
    ) -> None:
        self.directory = Path(directory)
        check_new_folder(self.directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._steps: IO[str] = (self.directory / "steps.jsonl").open("w", buffering=1 << 16)
            self._events: IO[str] = (self.directory / "events.jsonl").open("w", buffering=1)
        except OSError as exc:
            raise ConfigError(
                f"record.dir {str(self.directory)!r} cannot be written: {exc.strerror or exc}",
                field="record.dir",
            ) from exc
        self._video = video
        self._fps = video_fps
        self._writers: dict[str, cv2.VideoWriter] = {}
        self._frames_written: dict[str, int] = {}
        self._frames: IO[str] | None = None  # frames.jsonl, opened with the first video frame
        self._lock = threading.Lock()
        self._closed = False
        self._stopped = False  # a write failed: nothing more is written but the summary

    def _fail(self, name: str, exc: BaseException) -> None:
        """Writing ``name`` failed: stop recording, with one warning naming the file."""
        with self._lock:
            first = not self._stopped
            self._stopped = True
        if first:
            logger.warning(
                "Recorder: cannot write %s (%s); recording stopped, the run carries on",
                self.directory / name,
                exc,
            )

    @override
    def stop(self, reason: str) -> None:
        with self._lock:
            first = not self._stopped
            self._stopped = True
        if first:
            logger.warning(
                "Recorder: recording to %s stopped (%s); the run carries on", self.directory, reason
            )

    def _write(self, file: IO[str], name: str, line: str) -> None:
        if self._stopped:
            return
        try:
            file.write(line)
        except (OSError, ValueError) as exc:  # ValueError: the file was closed under us
            self._fail(name, exc)

    @override
    def on_event(self, event: Event) -> None:
        """A tick's record to ``steps.jsonl``; a hold, resume, e-stop, rejected chunk, stream or
        sensor change to ``events.jsonl`` (:func:`event_line`), at the event's time."""
        if isinstance(event, Tick):
            self._write_step(event.step)
            return
        line = event_line(event)
        if line is not None:
            kind, reason, extra = line
            self._write_event(event.time_s, kind, reason, extra)

    def _write_step(self, record: StepRecord) -> None:
        """One line of ``steps.jsonl`` (:meth:`StepRecord.to_json`)."""
        if self._stopped:
            return
        self._write(self._steps, "steps.jsonl", json.dumps(record.to_json(), allow_nan=False) + "\n")

    def _write_event(self, time_s: float, kind: str, reason: str, extra: Mapping[str, Any]) -> None:
        if self._stopped:
            return
        record = {"time": json_number(time_s), "event": kind, "reason": reason, **jsonable(extra)}
        self._write(self._events, "events.jsonl", json.dumps(record) + "\n")

    @override
    def frame(self, name: str, frame: Frame) -> None:
        if not self._video:
            return
        failed: Exception | None = None
        with self._lock:
            if self._closed or self._stopped:
                return
            writer = self._writers.get(name)
            height, width = frame.rgb.shape[:2]
            what = f"{name}.mp4"
            try:
                if writer is None:
                    path = str(self.directory / f"{name}.mp4")
                    writer = cv2.VideoWriter(
                        path, cv2.VideoWriter.fourcc(*"mp4v"), self._fps, (width, height)
                    )
                    if not writer.isOpened():
                        logger.warning("Recorder: OpenCV cannot write %s; no video for camera %s", path, name)
                        self._video = False
                        return
                    self._writers[name] = writer
                writer.write(np.ascontiguousarray(frame.rgb[:, :, ::-1]))
                index = self._frames_written.get(name, 0)
                self._frames_written[name] = index + 1
                what = "frames.jsonl"
                if self._frames is None:
                    self._frames = (self.directory / "frames.jsonl").open("w", buffering=1 << 14)
                line = {"time": json_number(frame.time_s), "camera": name, "index": index}
                self._frames.write(json.dumps(line) + "\n")
            except Exception as exc:  # cv2.error, OSError: from a capture thread, never raised
                failed = exc
        if failed is not None:
            self._fail(what, failed)

    @override
    def safety_limits(self, limits: Mapping[str, Any]) -> None:
        if self._stopped:
            return
        try:
            write_atomically(
                self.directory / "safety_limits.json", json.dumps(jsonable(limits), indent=2) + "\n"
            )
        except OSError as exc:
            self._fail("safety_limits.json", exc)

    @override
    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        """Finish the videos and files, then write ``summary.json`` (even after a failure, when
        the disk allows it). Never raises on a write failure."""
        with self._lock:
            self._closed = True
            writers, self._writers = list(self._writers.items()), {}
            frames, self._frames = self._frames, None
        for name, writer in writers:
            try:
                writer.release()
            except Exception as exc:
                self._fail(f"{name}.mp4", exc)
        files = [(self._steps, "steps.jsonl"), (self._events, "events.jsonl")]
        if frames is not None:
            files.append((frames, "frames.jsonl"))
        for file, name in files:
            try:
                file.close()  # flushes the buffer: a full disk shows here
            except OSError as exc:
                self._fail(name, exc)
                with contextlib.suppress(OSError):
                    file.close()  # the buffer is lost; release the descriptor
        if self._stopped:
            # A write that failed half-way (a full disk) leaves a torn last line, which no JSON
            # reader of the recording gets past: cut each file back to its last whole line.
            for _, name in files:
                _drop_torn_line(self.directory / name)
        if summary is not None:
            path = self.directory / "summary.json"
            try:
                write_atomically(path, json.dumps(jsonable(summary), indent=2) + "\n")
            except OSError as exc:
                logger.warning("Recorder: cannot write %s (%s); the summary is only printed", path, exc)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it (``os.replace``), so
    that ``path`` is either the whole text or what it was before: never empty or cut short."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise

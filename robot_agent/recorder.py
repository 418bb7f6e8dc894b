"""``--record DIR``: an episode folder that lets anyone replay and audit a run.

- ``steps.jsonl``: every control tick: time, measured state, raw target, safe target, the safety
  rules that fired, holding or not (and why);
- ``events.jsonl``: connect, hold, resume, reconnect, e-stop, each with its reason;
- ``safety_limits.json``: the effective shield limits, so a recording can be checked against them;
- ``summary.json``: the end-of-run summary;
- ``<camera>.mp4``: each camera's video, through OpenCV.

Lines are buffered and flushed on close; video frames are written from the capture threads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from robot_agent.camera import Frame
from safety.types import Measured, Target

__all__ = ["NullRecorder", "Recorder", "jsonable"]

logger = logging.getLogger(__name__)


def jsonable(value: Any) -> Any:
    """Numpy arrays, dataclasses and tuples to plain JSON values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _target(target: Target | None) -> dict[str, Any] | None:
    if target is None:
        return None
    out: dict[str, Any] = {"time": target.time_s, "gripper": target.gripper}
    if target.ee is not None:
        out["ee"] = [*target.ee.position.tolist(), *target.ee.quaternion.tolist()]
    if target.joints is not None:
        out["joints"] = np.asarray(target.joints).tolist()
    return out


class NullRecorder:
    """Recording off: every call does nothing."""

    def step(
        self,
        *,
        time_s: float,
        measured: Measured | None,
        raw: Target | None,
        safe: Target | None,
        fired: Sequence[str],
        holding: bool,
        reason: str | None = None,
        plan_end: float | None = None,
    ) -> None:
        pass

    def event(self, kind: str, reason: str = "", **_: Any) -> None:
        pass

    def frame(self, name: str, frame: Frame) -> None:
        pass

    def safety_limits(self, limits: Any) -> None:
        pass

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        pass


class Recorder(NullRecorder):
    """Writes one episode folder (created if needed; existing files are replaced)."""

    def __init__(self, directory: str | Path, *, video: bool = True, video_fps: float = 30.0) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._steps: IO[str] = (self.directory / "steps.jsonl").open("w", buffering=1 << 16)
        self._events: IO[str] = (self.directory / "events.jsonl").open("w", buffering=1)
        self._video = video
        self._fps = video_fps
        self._writers: dict[str, cv2.VideoWriter] = {}
        self._lock = threading.Lock()
        self._closed = False

    def step(
        self,
        *,
        time_s: float,
        measured: Measured | None,
        raw: Target | None,
        safe: Target | None,
        fired: Sequence[str],
        holding: bool,
        reason: str | None = None,
        plan_end: float | None = None,
    ) -> None:
        record = {
            "time": time_s,
            "measured": None
            if measured is None
            else {
                "time": measured.time_s,
                "joints": np.asarray(measured.joints).tolist(),
                "ee": [*measured.ee.position.tolist(), *measured.ee.quaternion.tolist()],
                "gripper": measured.gripper,
            },
            "raw": _target(raw),
            "safe": _target(safe),
            "fired": list(fired),
            "holding": holding,
            "hold_reason": reason,
            "plan_end": plan_end,
        }
        self._steps.write(json.dumps(record, allow_nan=False, default=jsonable) + "\n")

    def event(self, kind: str, reason: str = "", **extra: Any) -> None:
        record = {"event": kind, "reason": reason, **jsonable(extra)}
        self._events.write(json.dumps(record) + "\n")

    def frame(self, name: str, frame: Frame) -> None:
        if not self._video:
            return
        with self._lock:
            if self._closed:
                return
            writer = self._writers.get(name)
            height, width = frame.rgb.shape[:2]
            if writer is None:
                path = str(self.directory / f"{name}.mp4")
                writer = cv2.VideoWriter(path, cv2.VideoWriter.fourcc(*"mp4v"), self._fps, (width, height))
                if not writer.isOpened():
                    logger.warning("Recorder: OpenCV cannot write %s; no video for camera %s", path, name)
                    self._video = False
                    return
                self._writers[name] = writer
            writer.write(np.ascontiguousarray(frame.rgb[:, :, ::-1]))

    def safety_limits(self, limits: Any) -> None:
        (self.directory / "safety_limits.json").write_text(json.dumps(jsonable(limits), indent=2) + "\n")

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        with self._lock:
            self._closed = True
            for writer in self._writers.values():
                writer.release()
            self._writers.clear()
        if summary is not None:
            (self.directory / "summary.json").write_text(json.dumps(jsonable(summary), indent=2) + "\n")
        self._steps.close()
        self._events.close()

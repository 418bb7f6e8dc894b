"""Camera capture threads that keep only the latest frame.

Each camera's blocking ``read`` runs in its own thread, so a slow or stalled camera never delays
the control loop or another camera; observations take whatever frame is newest. A capture error is
kept and raised as :class:`CameraError` by the ``watch`` task, which ends the agent cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping

from robot_agent.cameras.base import Camera, Frame
from robot_agent.errors import CameraError

__all__ = ["CameraThread", "Sensors"]

logger = logging.getLogger(__name__)

FrameCallback = Callable[[str, Frame], None]


class CameraThread:
    """Reads one camera in a daemon thread; ``latest`` is the newest frame (None before the first)."""

    def __init__(
        self, name: str, camera: Camera, on_frame: FrameCallback | None = None, max_failures: int = 10
    ):
        self.name = name
        self.camera = camera
        self._on_frame = on_frame
        self._max_failures = max_failures
        self._latest: Frame | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self.error: BaseException | None = None
        self.frames = 0
        self._thread = threading.Thread(target=self._run, name=f"camera-{name}", daemon=True)

    @property
    def latest(self) -> Frame | None:
        return self._latest

    def start(self) -> None:
        self._thread.start()

    def wait_first(self, timeout: float) -> bool:
        return self._first.wait(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                frame = self.camera.read()
            except Exception as exc:
                failures += 1
                logger.warning("Camera %s: read failed (%d in a row): %s", self.name, failures, exc)
                if failures >= self._max_failures:
                    self.error = exc
                    return
                continue
            failures = 0
            self._latest = frame
            self.frames += 1
            self._first.set()
            if self._on_frame is not None:
                try:
                    self._on_frame(self.name, frame)
                except Exception:  # a recorder problem must not stop capture
                    logger.exception("Camera %s: frame callback failed", self.name)

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class Sensors:
    """All cameras of the agent. ``add`` opens a camera and starts its thread."""

    def __init__(self, on_frame: FrameCallback | None = None) -> None:
        self._threads: dict[str, CameraThread] = {}
        self._on_frame = on_frame

    @property
    def names(self) -> list[str]:
        return list(self._threads)

    def add(self, name: str, camera: Camera, first_frame_timeout_s: float = 5.0) -> None:
        """Open ``camera``, start capturing, and wait for its first frame (blocking)."""
        try:
            camera.open()
        except CameraError:
            raise
        except Exception as exc:
            raise CameraError(f"camera {name!r} failed to open: {exc}") from exc
        thread = CameraThread(name, camera, self._on_frame)
        self._threads[name] = thread
        thread.start()
        if not thread.wait_first(first_frame_timeout_s):
            raise CameraError(
                f"camera {name!r} gave no frame within {first_frame_timeout_s:g} s"
                + (f": {thread.error}" if thread.error else "")
            )

    def latest(self) -> Mapping[str, Frame | None]:
        return {name: t.latest for name, t in self._threads.items()}

    def frame_counts(self) -> dict[str, int]:
        return {name: t.frames for name, t in self._threads.items()}

    async def watch(self, stopping: asyncio.Event, interval_s: float = 0.2) -> None:
        """Raise :class:`CameraError` when a capture thread gave up; return when ``stopping``."""
        while not stopping.is_set():
            for name, thread in self._threads.items():
                if thread.error is not None:
                    raise CameraError(f"camera {name!r} stopped delivering frames: {thread.error}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_s)

    def close(self) -> None:
        """Stop every thread and close every camera (errors logged, never raised)."""
        for thread in self._threads.values():
            thread.stop()
        for name, thread in self._threads.items():
            try:
                thread.camera.close()
            except Exception:
                logger.exception("Camera %s: close failed", name)

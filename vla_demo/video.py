"""The episode video: the simulated scene from the front camera (the whole arm, the cubes and the
pad) and the wrist view in its own file, with the instruction and the episode's status drawn over
each frame (sim time, running / success / failure, holds).

Recording is split from drawing so the served control loop never waits on a renderer:

- while the episode runs, :class:`EpisodeRecorder`'s thread takes a :class:`Snapshot` every
  ``1/fps`` s: for the MuJoCo arm a copy of the physics state
  (:meth:`robot_agent.sim.mujoco_arm.MujocoArm.physics_state`: qpos and the pad's mocap pose, a
  few hundred bytes, about 12 us), the judge's status and the agent's hold count;
- once the episode is over, :func:`write_episode_videos` renders the snapshots
  (:class:`robot_agent.sim.mujoco_render.SceneRenderer`), resampled on sim time at ``fps``, and
  writes one mp4 per view.

Why after and not live, measured on the 2-core development CPU (EGL, Mesa software rendering,
shadows off): a 640x480 front frame takes about 14 ms and a 480x360 wrist frame about 8 ms, so
live drawing at 15 fps would take about a third of a core beside the real-time control loop and
the physics; afterwards it is about 0.35 s of rendering per second of episode, and no tick can be
late because of it. The kinematic sim's snapshots are its tip pose, gripper and cubes, drawn after
the episode the same way by its OpenCV renderer (about 3 ms a frame).
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import cv2
import numpy as np

__all__ = [
    "EpisodeRecorder",
    "KinematicScene",
    "MujocoScene",
    "SceneSource",
    "Snapshot",
    "VideoError",
    "draw_overlay",
    "resample",
    "scene_source",
    "wrist_path",
    "write_episode_videos",
    "write_video",
]

logger = logging.getLogger(__name__)

#: Frame sizes (width, height) of each view's video.
DEFAULT_SIZES: Mapping[str, tuple[int, int]] = {"front": (640, 480), "wrist": (480, 360)}
#: Hold reasons that are not the policy's fault: the first wait for the server (as the evaluation counts).
_NOT_A_HOLD = ("waiting_for_server",)


class VideoError(Exception):
    """Raised when a video cannot be written: no mp4 encoder in this OpenCV, frames of different
    sizes, or nothing to write."""


@dataclass(frozen=True)
class Snapshot:
    """One instant of an episode, enough to draw a frame later.

    ``time_s``: sim time of ``scene`` (s); ``scene``: what the :class:`SceneSource` draws from;
    ``status``: the judge's ``running`` / ``success`` / ``failure``; ``elapsed_s``: time since the
    episode's reset (s), by the judge; ``holds``: entries into hold since recording started (the
    first wait for the server not counted); ``holding``: the arm was holding at that instant.
    """

    time_s: float
    scene: Any
    status: str
    elapsed_s: float
    instruction: str
    holds: int = 0
    holding: bool = False


class SceneSource(Protocol):
    """Captures the scene cheaply during an episode and draws a view of a capture later."""

    def capture(self) -> tuple[float, Any]:
        """``(sim time in s, scene)`` now; must not render anything expensive."""
        ...

    def draw(self, scene: Any, view: str, width: int, height: int) -> np.ndarray:
        """RGB uint8 ``[height, width, 3]`` of ``view`` (``"front"`` or ``"wrist"``) of ``scene``."""
        ...

    def close(self) -> None:
        """Free what drawing holds (GL contexts)."""
        ...


class MujocoScene:
    """Snapshots of a :class:`~robot_agent.sim.mujoco_arm.MujocoArm` (its ``physics_state()``),
    drawn by a :class:`~robot_agent.sim.mujoco_render.SceneRenderer` of its model."""

    def __init__(self, arm: Any) -> None:
        from robot_agent.sim.mujoco_render import SceneRenderer

        self.arm = arm
        self._renderer = SceneRenderer(arm.model)

    def capture(self) -> tuple[float, Any]:
        state = self.arm.physics_state()
        return float(state.time_s), state

    def draw(self, scene: Any, view: str, width: int, height: int) -> np.ndarray:
        return self._renderer.render(scene, view, width, height)

    def close(self) -> None:
        self._renderer.close()


class KinematicScene:
    """Snapshots of the kinematic sim: the tip pose, the gripper opening and the cubes (its world
    is immutable tuples, and nothing moves the cubes), drawn later with its OpenCV renderer (about
    3 ms per 640x480 frame). ``robot``: a ``SimRobot`` with ``engine = "kinematic"``."""

    def __init__(self, robot: Any) -> None:
        self.robot = robot

    def capture(self) -> tuple[float, Any]:
        ee, gripper, time_s = self.robot.snapshot()
        return float(time_s), (ee, gripper, tuple(self.robot.world.cubes))

    def draw(self, scene: Any, view: str, width: int, height: int) -> np.ndarray:
        from robot_agent.sim.render import render

        ee, gripper, cubes = scene
        return render(SimpleNamespace(cubes=cubes), ee, gripper, width, height, view)  # type: ignore[arg-type]

    def close(self) -> None:
        pass


def scene_source(robot: Any) -> SceneSource:
    """The source for ``robot`` (a ``SimRobot``): MuJoCo when its arm has ``physics_state``,
    else the kinematic sim's."""
    arm = getattr(robot, "arm", None)
    if callable(getattr(arm, "physics_state", None)) and hasattr(arm, "model"):
        return MujocoScene(arm)
    return KinematicScene(robot)


def _hold_count(metrics: Any) -> tuple[int, bool]:
    """Entries into hold (all reasons but the first wait for the server) and the holding gauge,
    read from an :class:`robot_agent.metrics.AgentMetrics`."""
    total = 0
    for metric in metrics.hold.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels.get("reason") not in _NOT_A_HOLD:
                total += int(sample.value)
    holding = any(s.value >= 1 for m in metrics.holding.collect() for s in m.samples)
    return total, holding


class EpisodeRecorder:
    """Takes a :class:`Snapshot` of ``source`` every ``1/fps`` s of wall time on its own thread,
    until :meth:`stop`. ``world`` is the judge (``evaluate()`` gives status and instruction);
    ``metrics`` (an ``AgentMetrics``, optional) gives the hold count. Raises ``ValueError`` on a
    non-positive or non-finite ``fps``.

    Usage::

        recorder = EpisodeRecorder(source, robot.world, metrics, fps=15)
        recorder.start(); ...run the episode...; recorder.stop()
        write_episode_videos(recorder.episode(), source, Path("runs/demo/episode_000.mp4"))
    """

    def __init__(self, source: SceneSource, world: Any, metrics: Any = None, *, fps: float = 15.0) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"EpisodeRecorder: fps must be a finite number > 0, got {fps!r}")
        self.source = source
        self.world = world
        self.metrics = metrics
        self.fps = float(fps)
        self.snapshots: list[Snapshot] = []
        #: Samples that came more than one period late (the thread was starved of CPU).
        self.late = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._holds0 = 0
        self._error: BaseException | None = None

    def start(self) -> None:
        """Start sampling (hold counts from now)."""
        if self.metrics is not None:
            self._holds0 = _hold_count(self.metrics)[0]
        self._thread = threading.Thread(target=self._run, name="episode-video", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Take a last snapshot and stop; re-raises an error the sampling thread met."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._error is not None:
            raise self._error

    def sample(self) -> Snapshot:
        """Take one snapshot now (the thread calls this; tests may too)."""
        time_s, scene = self.source.capture()
        result = self.world.evaluate()
        holds, holding = _hold_count(self.metrics) if self.metrics is not None else (self._holds0, False)
        snap = Snapshot(time_s, scene, str(result.status), float(result.elapsed_s), str(result.instruction),
                        holds - self._holds0, holding)  # fmt: skip
        self.snapshots.append(snap)
        return snap

    def episode(self) -> list[Snapshot]:
        """The snapshots of the last episode recorded: those before the world's last reset (its
        elapsed time went back, or its instruction changed) are dropped."""
        return last_episode(self.snapshots)

    def _run(self) -> None:
        period = 1.0 / self.fps
        next_t = time.monotonic()
        try:
            while True:
                self.sample()
                if self._stop.is_set():
                    return
                next_t += period
                now = time.monotonic()
                if now - next_t > period:  # starved: skip the missed samples, do not burst
                    self.late += 1
                    next_t = now
                self._stop.wait(max(0.0, next_t - now))
        except BaseException as exc:  # surfaced by stop()
            self._error = exc


def last_episode(snapshots: Sequence[Snapshot]) -> list[Snapshot]:
    """The snapshots after the last reset in ``snapshots`` (elapsed time going back or a new
    instruction marks one)."""
    start = 0
    for i in range(1, len(snapshots)):
        a, b = snapshots[i - 1], snapshots[i]
        if b.elapsed_s < a.elapsed_s - 1e-6 or b.instruction != a.instruction:
            start = i
    return list(snapshots[start:])


def resample(snapshots: Sequence[Snapshot], fps: float, *, tail_s: float = 0.0) -> Iterator[Snapshot]:
    """One snapshot per ``1/fps`` s of sim time from the first to the last (the latest taken at
    or before each frame time), then the last one repeated for ``tail_s`` s: the video's time is
    the sim's, however irregularly the snapshots came."""
    if not snapshots:
        return
    times = [s.time_s for s in snapshots]
    t0, t1 = times[0], times[-1]
    n = math.floor((t1 - t0) * fps + 1e-9) + 1
    for k in range(n):
        i = bisect.bisect_right(times, t0 + k / fps + 1e-9) - 1
        yield snapshots[max(i, 0)]
    for _ in range(round(tail_s * fps)):
        yield snapshots[-1]


_STATUS_BGR = {"success": (90, 200, 60), "failure": (60, 60, 230), "running": (235, 235, 235)}


def draw_overlay(frame_rgb: np.ndarray, snap: Snapshot) -> np.ndarray:
    """``frame_rgb`` as BGR (for the video writer) with the instruction on a band at the top and
    the status at the bottom: ``t 3.4 s  RUNNING  holds 2`` (``HOLD`` while holding)."""
    img = np.ascontiguousarray(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
    h, w = img.shape[:2]
    scale = max(0.35, w / 640 * 0.6)
    band = round(28 * scale / 0.6)
    for y0, y1 in ((0, band), (h - band, h)):
        img[y0:y1] = (img[y0:y1].astype(np.uint16) * 2 // 5).astype(np.uint8)  # darkened band
    font = cv2.FONT_HERSHEY_SIMPLEX
    base = int(band * 0.7)
    cv2.putText(img, f'"{snap.instruction}"', (8, base), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    status = snap.status.upper()
    left = f"t {snap.elapsed_s:5.1f} s  "
    cv2.putText(img, left, (8, h - band + base), font, scale, (235, 235, 235), 1, cv2.LINE_AA)
    x = 8 + cv2.getTextSize(left, font, scale, 1)[0][0]
    colour = _STATUS_BGR.get(snap.status, (235, 235, 235))
    cv2.putText(img, status, (x, h - band + base), font, scale, colour, 2, cv2.LINE_AA)
    x += cv2.getTextSize(status, font, scale, 2)[0][0]
    holds = f"  holds {snap.holds}" + ("  HOLD" if snap.holding else "")
    cv2.putText(img, holds, (x, h - band + base), font, scale, (80, 200, 255) if snap.holding else (235, 235, 235),
                1, cv2.LINE_AA)  # fmt: skip
    return img


def write_video(path: Path, frames_bgr: Iterable[np.ndarray], fps: float) -> int:
    """Write BGR uint8 frames, all of one size, to the mp4 ``path`` (``mp4v``; parents made).
    Returns the number of frames. Raises :class:`VideoError` when there is no frame, a frame's
    size differs from the first's, or OpenCV has no mp4 encoder."""
    writer: cv2.VideoWriter | None = None
    size = (0, 0)
    n = 0
    try:
        for frame in frames_bgr:
            h, w = frame.shape[:2]
            if writer is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                size = (w, h)
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
                if not writer.isOpened():
                    raise VideoError(f"cannot write video {path}: no mp4 encoder in this OpenCV")
            elif (w, h) != size:
                raise VideoError(f"video {path}: frame {n} is {w}x{h}, the first was {size[0]}x{size[1]}")
            writer.write(frame)
            n += 1
    finally:
        if writer is not None:
            writer.release()
    if n == 0:
        raise VideoError(f"video {path}: no frames to write")
    return n


def wrist_path(front: Path) -> Path:
    """Where the wrist view of the video ``front`` goes: ``episode_000.mp4`` -> ``episode_000_wrist.mp4``."""
    return front.with_name(f"{front.stem}_wrist{front.suffix or '.mp4'}")  # as write_episode_videos names it


def write_episode_videos(
    snapshots: Sequence[Snapshot],
    source: SceneSource,
    front: Path,
    *,
    fps: float = 15.0,
    sizes: Mapping[str, tuple[int, int]] = DEFAULT_SIZES,
    tail_s: float = 1.0,
) -> dict[str, tuple[Path, int]]:
    """Render ``snapshots`` (resampled to ``fps`` on sim time, the last held ``tail_s`` s) with the
    overlay into ``front`` and :func:`wrist_path` ``(front)``; returns ``{view: (path, frames)}``.
    Raises :class:`VideoError` as :func:`write_video`, ``ValueError`` from the renderer on a bad size."""
    written: dict[str, tuple[Path, int]] = {}
    for view, (w, h) in sizes.items():
        path = front if view == "front" else front.with_name(f"{front.stem}_{view}{front.suffix or '.mp4'}")
        frames = (
            draw_overlay(source.draw(s.scene, view, w, h), s) for s in resample(snapshots, fps, tail_s=tail_s)
        )
        written[view] = (path, write_video(path, frames, fps))
    return written

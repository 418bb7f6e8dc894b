"""The demo's episode video (``vla_demo.video``) and the demo's sim options, without a server.

Frames come from the real renderers (MuJoCo on a manual clock, and the kinematic sim); the videos
are read back with OpenCV: the file exists, holds the frames the sim time asks for, at the size
asked for, with the status drawn in the colour of the result.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from robot_agent.config import RobotConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.metrics import AgentMetrics
from robot_agent.sim.mujoco_render import import_mujoco
from vla_demo.demo import DemoConfig, sim_options
from vla_demo.video import (
    EpisodeRecorder,
    KinematicScene,
    MujocoScene,
    Snapshot,
    VideoError,
    draw_overlay,
    last_episode,
    resample,
    scene_source,
    wrist_path,
    write_episode_videos,
    write_video,
)

SMALL = {"front": (160, 120), "wrist": (96, 72)}


def _read(path: Path) -> tuple[int, tuple[int, int], list[np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert frames, path
    return len(frames), (frames[0].shape[1], frames[0].shape[0]), frames


def _robot(engine: str) -> SimRobot:
    options: dict[str, Any] = {"realtime": False, "engine": engine, "seed": 3}
    robot = SimRobot.from_config(RobotConfig(kind="sim", options=options))
    robot.connect()
    return robot


@pytest.fixture(scope="module")
def mujoco_robot() -> SimRobot:
    try:
        import_mujoco()  # before anything imports mujoco: it picks headless EGL
    except ImportError:
        pytest.skip("mujoco is not installed")
    return _robot("mujoco")


def test_mujoco_episode_video_has_every_frame_at_its_size(mujoco_robot: SimRobot, tmp_path: Path) -> None:
    robot = mujoco_robot
    robot.world.reset(3)
    source = scene_source(robot)
    assert isinstance(source, MujocoScene)
    recorder = EpisodeRecorder(source, robot.world, fps=10.0)
    for _ in range(6):  # 0.5 s of sim time, a snapshot every 0.1 s
        recorder.sample()
        robot.step(0.1)
    recorder.sample()
    snaps = recorder.episode()
    assert snaps[-1].time_s - snaps[0].time_s == pytest.approx(0.6, abs=0.003)
    front = tmp_path / "ep.mp4"
    written = write_episode_videos(snaps, source, front, fps=10.0, sizes=SMALL, tail_s=0.5)
    source.close()
    expected = 7 + 5  # 0.6 s at 10 fps, both ends, then 0.5 s of the last frame
    assert written == {"front": (front, expected), "wrist": (wrist_path(front), expected)}
    assert wrist_path(front) == tmp_path / "ep_wrist.mp4"
    for view, path in (("front", front), ("wrist", wrist_path(front))):
        n, size, frames = _read(path)
        assert (n, size) == (expected, SMALL[view])
        assert float(np.std(frames[0][20:-20])) > 5.0  # a scene, not a blank image


def test_kinematic_engine_still_makes_both_videos(tmp_path: Path) -> None:
    robot = _robot("kinematic")
    source = scene_source(robot)
    assert isinstance(source, KinematicScene)
    recorder = EpisodeRecorder(source, robot.world, fps=5.0)
    for _ in range(3):
        recorder.sample()
        robot.step(0.2)
    written = write_episode_videos(
        recorder.episode(), source, tmp_path / "k.mp4", fps=5.0, sizes=SMALL, tail_s=0
    )
    for view, (path, n) in written.items():
        assert n == 3
        assert _read(path)[:2] == (3, SMALL[view])


def test_recorder_thread_samples_status_and_counts_holds() -> None:
    robot = _robot("kinematic")
    metrics = AgentMetrics(CollectorRegistry())
    metrics.hold.labels("stall").inc()  # before the recording: not counted
    recorder = EpisodeRecorder(KinematicScene(robot), robot.world, metrics, fps=50.0)
    recorder.start()
    metrics.hold.labels("waiting_for_server").inc()  # the first wait is not a hold
    metrics.hold.labels("deadline_miss").inc(2)
    metrics.holding.set(1)
    deadline = time.monotonic() + 10.0
    while not any(s.holds == 2 and s.holding for s in list(recorder.snapshots)):
        assert time.monotonic() < deadline, recorder.snapshots[-1:]
        time.sleep(0.01)
    recorder.stop()
    n = len(recorder.snapshots)
    assert n >= 2
    assert all(s.status == "running" and s.instruction == robot.world.instruction for s in recorder.snapshots)
    assert recorder.snapshots[-1].holds == 2
    assert len(recorder.snapshots) == n  # stopped: no more samples


def test_recorder_stop_reraises_what_broke_the_sampling_thread() -> None:
    class Broken:
        def capture(self) -> tuple[float, Any]:
            raise RuntimeError("no GL context")

        def draw(self, scene: Any, view: str, width: int, height: int) -> np.ndarray:
            raise AssertionError

        def close(self) -> None:
            pass

    world = _robot("kinematic").world
    recorder = EpisodeRecorder(Broken(), world, fps=50.0)
    recorder.start()
    with pytest.raises(RuntimeError, match="no GL context"):
        recorder.stop()


@pytest.mark.parametrize("fps", [0.0, -1.0, math.nan, math.inf])
def test_recorder_refuses_a_frame_rate_out_of_range(fps: float) -> None:
    with pytest.raises(ValueError, match="fps must be"):
        EpisodeRecorder(KinematicScene(object()), object(), fps=fps)


def _snap(
    t: float, elapsed: float | None = None, instruction: str = "put the red cube on the pad"
) -> Snapshot:
    return Snapshot(t, t, "running", t if elapsed is None else elapsed, instruction)


def test_last_episode_drops_the_snapshots_before_the_reset() -> None:
    before = [_snap(0.0, 4.0), _snap(0.1, 4.1)]
    after = [_snap(0.2, 0.0, "put the blue cube on the pad"), _snap(0.3, 0.1, "put the blue cube on the pad")]
    assert last_episode(before + after) == after
    same_instruction = [_snap(0.2, 0.01), _snap(0.3, 0.11)]
    assert last_episode(before + same_instruction) == same_instruction
    assert last_episode(before) == before


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.floats(0.001, 0.5), min_size=0, max_size=40),
    fps=st.sampled_from([5.0, 15.0, 20.0]),
    tail_s=st.sampled_from([0.0, 1.0]),
)
def test_resample_follows_sim_time_however_the_snapshots_came(
    gaps: list[float], fps: float, tail_s: float
) -> None:
    times = [10.0]
    for g in gaps:
        times.append(times[-1] + g)
    snaps = [_snap(t) for t in times]
    frames = list(resample(snaps, fps, tail_s=tail_s))
    n = math.floor((times[-1] - times[0]) * fps + 1e-9) + 1
    assert len(frames) == n + round(tail_s * fps)
    for k, frame in enumerate(frames[:n]):
        slot = times[0] + k / fps
        # the latest snapshot taken at or before the frame's time
        assert frame.time_s <= slot + 1e-9
        assert all(t > slot + 1e-9 or t <= frame.time_s for t in times)
    assert all(f is snaps[-1] for f in frames[n:])


@pytest.mark.parametrize(
    ("status", "bgr"), [("success", (90, 200, 60)), ("failure", (60, 60, 230)), ("running", (235, 235, 235))]
)
def test_overlay_draws_instruction_and_status_in_the_result_colour(
    status: str, bgr: tuple[int, int, int]
) -> None:
    frame = np.full((240, 320, 3), 128, np.uint8)
    out = draw_overlay(frame, Snapshot(1.0, None, status, 3.5, "put the red cube on the pad", holds=1))
    assert out.shape == (240, 320, 3)
    assert out.flags["C_CONTIGUOUS"]
    top, bottom, middle = out[:25], out[-25:], out[60:180]
    assert np.all(middle == 128)  # the scene is untouched between the bands
    assert np.any(np.all(top >= 220, axis=-1))  # white instruction text on the darkened band
    assert np.all(out[0, :4] < 128)  # the band is darker than the scene
    near = np.all(np.abs(bottom.astype(int) - np.array(bgr)) <= 12, axis=-1)
    assert near.sum() > 10, status


def test_write_video_refuses_no_frames_and_mixed_sizes(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], 15.0)
    frames = [np.zeros((48, 64, 3), np.uint8), np.zeros((40, 64, 3), np.uint8)]
    with pytest.raises(VideoError, match="frame 1 is 64x40, the first was 64x48"):
        write_video(tmp_path / "mixed.mp4", frames, 15.0)
    assert write_video(tmp_path / "sub" / "ok.mp4", frames[:1] * 4, 15.0) == 4
    assert _read(tmp_path / "sub" / "ok.mp4")[:2] == (4, (64, 48))


@pytest.mark.parametrize(
    ("config", "task", "limit"),
    [
        (DemoConfig(), "pick_place", 25.0),
        (DemoConfig(task="conveyor"), "conveyor", 25.0),
        (DemoConfig(engine="kinematic"), None, 15.0),
        (DemoConfig(task="conveyor", episode_timeout_s=40.0), "conveyor", 40.0),
    ],
)
def test_sim_options_are_ones_the_sim_driver_takes(
    config: DemoConfig, task: str | None, limit: float
) -> None:
    options = sim_options(config)
    assert options.get("task") == task
    assert options["time_limit_s"] == limit
    robot = SimRobot.from_config(RobotConfig(kind="sim", options={**options, "realtime": False}))
    assert robot.engine == config.engine
    if task is not None:
        assert robot.world.conveyor == (task == "conveyor")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "kinematic", "task": "conveyor"}, "the kinematic engine has one task"),
        ({"task": "stack"}, "DemoConfig.task is 'stack'"),
        ({"engine": "bullet"}, "DemoConfig.engine is 'bullet'"),
        ({"video_fps": 0.0}, "DemoConfig.video_fps is 0.0"),
        ({"episode_timeout_s": math.nan}, "DemoConfig.episode_timeout_s is nan"),
    ],
)
def test_demo_config_names_the_bad_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DemoConfig(**kwargs)


def test_sampling_does_not_hold_the_arm_lock_while_drawing(mujoco_robot: SimRobot) -> None:
    """Drawing a snapshot must not block the arm: another thread commands it meanwhile."""
    source = scene_source(mujoco_robot)
    _, state = source.capture()
    done = threading.Event()

    def draw_many() -> None:
        for _ in range(5):
            source.draw(state, "front", 160, 120)
        source.close()  # this thread's GL context
        done.set()

    thread = threading.Thread(target=draw_many)
    arm_lock = mujoco_robot.arm._lock  # type: ignore[attr-defined]
    with arm_lock:  # the arm busy: drawing goes on regardless
        thread.start()
        assert done.wait(30.0)
    thread.join()

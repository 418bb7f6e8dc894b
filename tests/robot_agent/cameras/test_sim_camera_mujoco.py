"""The ``sim`` camera on the MuJoCo arm: it renders the physics scene headless (EGL), front and
wrist, at the configured size, stamped with the sim time of the state it drew, on demand."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from robot_agent.cameras import create_camera
from robot_agent.cameras.sim import SimCamera
from robot_agent.config import AgentConfig, CameraConfig, RobotConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import PANDA_HOME_JOINTS


def manual_robot(**options: object) -> SimRobot:
    robot = SimRobot.from_config(RobotConfig(options={"realtime": False, "seed": 1, **options}))
    robot.connect()
    return robot


def camera(robot: SimRobot, name: str, width: int, height: int, **options: object) -> SimCamera:
    cam = SimCamera.from_config(
        CameraConfig(name=name, width=width, height=height, options=options), robot=robot
    )
    cam.open()
    return cam


@pytest.mark.parametrize(
    ("view", "width", "height"), [("front", 128, 96), ("wrist", 96, 128), ("front", 224, 224)]
)
def test_frames_have_the_configured_size_and_the_sim_time(view: str, width: int, height: int) -> None:
    robot = manual_robot()
    robot.step(0.25)
    cam = camera(robot, view, width, height)
    assert cam.view == view  # a camera named after a view renders it
    frame = cam.read()
    assert frame.rgb.shape == (height, width, 3) and frame.rgb.dtype == np.uint8
    assert frame.time_s == pytest.approx(0.25) and frame.time_s == robot.read_state().time_s
    assert frame.rgb.std() > 10  # a scene, not a blank image
    robot.step(0.1)
    assert cam.read().time_s == pytest.approx(0.35)  # on demand, at the sim time of the state drawn


def _dominant(rgb: np.ndarray, channel: int, margin: int = 60) -> int:
    """Pixels where ``channel`` exceeds both others by ``margin``."""
    c = rgb.astype(int)
    return int(np.sum(c[..., channel] - np.delete(c, channel, axis=-1).max(axis=-1) > margin))


def test_the_front_view_shows_the_three_cubes_and_the_pad() -> None:
    rgb = camera(manual_robot(), "front", 320, 240).read().rgb
    for channel, colour in enumerate(("red", "green", "blue")):
        assert _dominant(rgb, channel) > 20, colour
    c = rgb.astype(int)
    yellow = np.sum((c[..., 0] > 180) & (c[..., 1] > 150) & (c[..., 2] < 90))
    assert yellow > 50  # the pad


def test_front_and_wrist_differ_and_follow_the_arm() -> None:
    robot = manual_robot()
    front, wrist = camera(robot, "front", 96, 96), camera(robot, "wrist", 96, 96)
    f0, w0 = front.read().rgb.astype(int), wrist.read().rgb.astype(int)
    assert np.abs(f0 - w0).sum(axis=-1).astype(bool).mean() > 0.3
    assert np.array_equal(front.read().rgb, f0)  # deterministic while nothing moves
    robot.command_joints(PANDA_HOME_JOINTS + np.array([0.4, 0.2, 0.0, 0.2, 0.0, 0.0, 0.0]))
    robot.step(1.0)
    for cam, before in ((front, f0), (wrist, w0)):
        after = cam.read().rgb.astype(int)
        assert np.abs(after - before).sum(axis=-1).astype(bool).mean() > 0.01, cam.view


def test_the_camera_the_agent_creates_for_a_policy_renders_mujoco() -> None:
    robot = manual_robot()
    config = AgentConfig.load(None, {"cameras": {}})
    cam = create_camera(config.camera_for("wrist", 64, 80), robot)
    assert isinstance(cam, SimCamera) and cam.view == "wrist"
    cam.open()
    assert cam.read().rgb.shape == (64, 80, 3)


def test_read_is_paced_at_fps_on_the_wall_clock() -> None:
    robot = SimRobot.from_config(RobotConfig(options={"seed": 1}))
    robot.connect()
    cam = SimCamera.from_config(CameraConfig(name="front", width=64, height=48, fps=20), robot=robot)
    cam.open()
    times = [cam.read().time_s for _ in range(6)]
    assert times[-1] - times[0] >= 5 / 20 - 0.01  # sim time runs with the wall clock
    assert all(b > a for a, b in itertools.pairwise(times))


def test_a_size_beyond_the_offscreen_buffer_is_refused_naming_the_camera() -> None:
    with pytest.raises(ConfigError) as info:
        SimCamera.from_config(CameraConfig(name="front", width=1920, height=1080), robot=manual_robot())
    assert info.value.field == "cameras.front"
    assert (
        str(info.value)
        == "cameras.front: size 1920x1080 is larger than the MuJoCo scene's offscreen buffer (1280x960)"
    )


def test_frames_render_off_the_arms_lock_from_another_thread() -> None:
    """The agent reads cameras in their own threads: each gets its own GL context."""
    import threading

    robot = manual_robot()
    cam = camera(robot, "front", 64, 48)
    here = cam.read().rgb
    out: list[np.ndarray] = []
    thread = threading.Thread(target=lambda: out.append(cam.read().rgb))
    start = time.monotonic()
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), f"render in a second thread hung ({time.monotonic() - start:.1f} s)"
    assert np.array_equal(out[0], here)


def test_renders_headless_with_no_display_and_no_mujoco_gl_set() -> None:
    """A robot PC or CI runner without X: the camera picks EGL (Mesa's software EGL) by itself."""
    import os
    import subprocess
    import sys

    code = (
        "import os\n"
        "from robot_agent.cameras.sim import SimCamera\n"
        "from robot_agent.config import CameraConfig, RobotConfig\n"
        "from robot_agent.drivers.sim import SimRobot\n"
        "robot = SimRobot.from_config(RobotConfig(options={'realtime': False, 'seed': 0}))\n"
        "frame = SimCamera.from_config(CameraConfig(name='front', width=32, height=24), robot=robot).read()\n"
        "print(os.environ['MUJOCO_GL'], frame.rgb.shape, int(frame.rgb.std() > 10))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "egl (24, 32, 3) 1"

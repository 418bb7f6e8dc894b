"""The simulated camera on the kinematic arm (``engine = "kinematic"``): size, dtype, pacing, and that
the picture follows the arm and the scene. On MuJoCo: ``test_sim_camera_mujoco.py``."""

from __future__ import annotations

import time

import numpy as np
import pytest

from robot_agent.cameras.base import Camera
from robot_agent.cameras.sim import SimCamera
from robot_agent.config import CameraConfig, RobotConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import PANDA_HOME_JOINTS
from robot_agent.sim.render import front_camera


def manual_robot() -> SimRobot:
    return SimRobot.from_config(RobotConfig(options={"engine": "kinematic", "realtime": False, "seed": 1}))


@pytest.mark.parametrize(
    ("width", "height", "view"),
    [
        (640, 480, "front"),  # the agent's default size
        (96, 96, "front"),  # the demo policy's input
        (128, 96, "wrist"),
    ],
)
def test_frame_shape_dtype_and_time(width: int, height: int, view: str) -> None:
    robot = manual_robot()
    camera = SimCamera.from_config(
        CameraConfig(name="front", width=width, height=height, options={"view": view}), robot=robot
    )
    assert isinstance(camera, Camera)
    camera.open()
    frame = camera.read()
    assert frame.rgb.shape == (height, width, 3) and frame.rgb.dtype == np.uint8
    assert frame.time_s == robot.clock.now()
    assert frame.rgb.std() > 10  # a scene, not a blank image


@pytest.mark.parametrize("view", ["front", "wrist"])
def test_the_picture_changes_when_the_arm_moves(view: str) -> None:
    robot = manual_robot()
    camera = SimCamera.from_config(
        CameraConfig(name="c", width=96, height=96, options={"view": view}), robot=robot
    )
    before = camera.read().rgb.astype(int)
    assert np.array_equal(camera.read().rgb, before)  # deterministic while nothing moves
    robot.command_joints(PANDA_HOME_JOINTS + np.array([0.3, 0.3, 0, 0.2, 0, 0, 0]))
    for _ in range(100):
        robot.step(0.01)
    after = camera.read().rgb.astype(int)
    assert np.abs(after - before).sum(axis=-1).astype(bool).mean() > 0.005


def test_the_cubes_are_drawn_where_they_are() -> None:
    robot = manual_robot()
    camera = SimCamera.from_config(CameraConfig(name="c", width=160, height=120), robot=robot)
    rgb = camera.read().rgb.astype(int)
    cam = front_camera(160, 120)
    for cube, channel in zip(robot.world.cubes, (0, 1, 2), strict=True):  # red, green, blue
        u, v = np.round(cam.project(cube.top[None, :])[0][0]).astype(int)
        patch = rgb[v - 1 : v + 3, u - 2 : u + 3].reshape(-1, 3)
        # The pixel just below the projected top centre is on the cube: its colour dominates.
        assert np.any(patch[:, channel] - np.delete(patch, channel, axis=1).max(axis=1) > 40), cube.colour
    robot.world.reset(5)
    assert not np.array_equal(camera.read().rgb, rgb)


def test_read_is_paced_at_fps_on_the_wall_clock() -> None:
    robot = SimRobot.from_config(RobotConfig(options={"engine": "kinematic"}))
    camera = SimCamera.from_config(CameraConfig(name="c", width=64, height=48, fps=50), robot=robot)
    camera.open()
    times = [camera.read().time_s for _ in range(11)]
    assert times[-1] - times[0] >= 10 / 50 - 0.005
    assert time.monotonic() >= times[-1]


def test_needs_a_sim_robot_and_known_options() -> None:
    class NotSim:
        pass

    with pytest.raises(ConfigError, match="NotSim"):
        SimCamera.from_config(CameraConfig(name="front"), robot=NotSim())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'zoom'"):
        SimCamera.from_config(CameraConfig(name="front", options={"zoom": 2}), robot=manual_robot())
    with pytest.raises(ConfigError, match="'top'"):
        SimCamera.from_config(CameraConfig(name="front", options={"view": "top"}), robot=manual_robot())


def test_a_camera_named_wrist_renders_the_wrist_view() -> None:
    """Issue 11: the auto-created ``wrist`` camera rendered the front view (wrist.mp4 = front.mp4)."""
    from robot_agent.config import AgentConfig
    from robot_agent.sim.render import render

    robot = manual_robot()
    # The config the agent builds for a camera the policy asks for and the config lacks.
    wrist = SimCamera.from_config(AgentConfig().camera_for("wrist", 96, 128), robot=robot)
    front = SimCamera.from_config(AgentConfig().camera_for("front", 96, 128), robot=robot)
    assert (wrist.view, front.view) == ("wrist", "front")
    ee, gripper, _ = robot.snapshot()
    wrist_rgb, front_rgb = wrist.render().rgb, front.render().rgb
    assert np.array_equal(wrist_rgb, render(robot.world, ee, gripper, 128, 96, "wrist"))
    assert np.array_equal(front_rgb, render(robot.world, ee, gripper, 128, 96, "front"))
    assert np.abs(wrist_rgb.astype(int) - front_rgb.astype(int)).sum(axis=-1).astype(bool).mean() > 0.3
    # An explicit option wins over the name; other names default to the front view.
    named_wrist_front = SimCamera.from_config(
        CameraConfig(name="wrist", options={"view": "front"}), robot=robot
    )
    other = SimCamera.from_config(CameraConfig(name="top"), robot=robot)
    configured = SimCamera.from_config(CameraConfig(name="hand", options={"view": "wrist"}), robot=robot)
    assert (named_wrist_front.view, other.view, configured.view) == ("front", "front", "wrist")

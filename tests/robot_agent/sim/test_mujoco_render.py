"""Offscreen rendering of the MuJoCo scene: shapes, motion, another thread, bad requests."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from robot_agent.sim.clock import ManualClock
from robot_agent.sim.mujoco_arm import MujocoArm
from robot_agent.sim.mujoco_render import SceneRenderer
from robot_agent.sim.mujoco_task import PickPlaceWorld


@pytest.fixture(scope="module")
def arm() -> MujocoArm:
    clock = ManualClock()
    arm = MujocoArm(clock=clock, world=PickPlaceWorld(clock=clock, seed=3))
    arm.world.reset(seed=5)
    return arm


@pytest.fixture(scope="module")
def renderer(arm: MujocoArm) -> SceneRenderer:
    return SceneRenderer(arm.model)


@pytest.mark.parametrize(("view", "width", "height"), [("front", 224, 224), ("wrist", 160, 120)])
def test_frames_have_the_asked_shape_and_change_when_the_arm_moves(
    arm: MujocoArm, renderer: SceneRenderer, view: str, width: int, height: int
) -> None:
    arm.world.reset(seed=5)
    before = renderer.render(arm.physics_state(), view, width, height)
    assert before.shape == (height, width, 3) and before.dtype == np.uint8
    assert before.std() > 5  # a picture, not a blank
    arm.command_joints(arm.home_joints + np.array([0.5, 0.3, 0.0, 0.3, 0.0, 0.0, 0.5]))
    arm.step(1.0)
    after = renderer.render(arm.physics_state(), view, width, height)
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 1.0


def test_renders_from_another_thread_while_the_physics_steps(arm: MujocoArm, renderer: SceneRenderer) -> None:
    arm.world.reset(seed=5)
    frames: list[np.ndarray] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def draw() -> None:
        try:
            while not done.is_set() and len(frames) < 20:
                frames.append(renderer.render(arm.physics_state(), "front", 96, 96))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            renderer.close()

    thread = threading.Thread(target=draw)
    thread.start()
    arm.command_joints(arm.home_joints + np.array([0.5, 0.3, 0.0, 0.3, 0.0, 0.0, 0.5]))
    for _ in range(200):
        arm.step(0.005)
    done.set()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the render thread deadlocked"
    assert not errors, errors
    assert frames and all(f.shape == (96, 96, 3) for f in frames)


@pytest.mark.parametrize(
    ("view", "width", "height", "match"),
    [
        ("top", 64, 64, "unknown view 'top'"),
        ("front", 4, 64, "image size 4x64"),
        ("front", 64, 5000, "image size 64x5000"),
        ("front", 64.0, 64, "image size 64.0x64"),
    ],
)
def test_bad_requests_raise_value_error(
    arm: MujocoArm, renderer: SceneRenderer, view: str, width: int, height: int, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        renderer.render(arm.physics_state(), view, width, height)

"""The pick-and-place judge on the MuJoCo physics: success needs the named cube resting on the pad
and the hand open; pushing another cube, leaving the workspace and the time limit fail; the
conveyor carries its cube. One arm per task variant, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from robot_agent.sim.clock import ManualClock
from robot_agent.sim.mujoco_arm import MujocoArm
from robot_agent.sim.mujoco_scene import PAD_HALF_M
from robot_agent.sim.mujoco_task import PickPlaceWorld
from robot_agent.sim.world import Cube
from safety.types import Pose
from tests.robot_agent.sim._mujoco_script import DOWN, carry_to, go, grasp, pick_and_place, release

LAYOUT = [Cube("red", (0.5, 0.0, 0.02)), Cube("green", (0.4, 0.15, 0.02)), Cube("blue", (0.6, -0.15, 0.02))]


def make_arm(conveyor: bool) -> MujocoArm:
    clock = ManualClock()
    return MujocoArm(clock=clock, world=PickPlaceWorld(clock=clock, seed=3, conveyor=conveyor))


@pytest.fixture(scope="module")
def static_arm() -> MujocoArm:
    return make_arm(conveyor=False)


@pytest.fixture(scope="module")
def conveyor_arm() -> MujocoArm:
    return make_arm(conveyor=True)


@pytest.fixture
def arm(static_arm: MujocoArm) -> Iterator[MujocoArm]:
    limit = static_arm.world.time_limit_s
    yield static_arm
    static_arm.world.time_limit_s = limit


def test_scripted_pick_and_place_succeeds_static(arm: MujocoArm) -> None:
    arm.world.reset(seed=5)
    pick_and_place(arm)
    result = arm.world.evaluate()
    assert result.status == "success", result.reason
    assert result.time_to_success_s is not None and result.time_to_success_s < 8.0


def test_scripted_pick_and_place_succeeds_on_the_conveyor(conveyor_arm: MujocoArm) -> None:
    conveyor_arm.world.reset(seed=5)
    pick_and_place(conveyor_arm)
    result = conveyor_arm.world.evaluate()
    assert result.status == "success", result.reason


def test_no_success_until_the_hand_lets_go(arm: MujocoArm) -> None:
    arm.world.set_scene(LAYOUT, "red", pad=(0.5, -0.32))
    grasp(arm)
    carry_to(arm, arm.world.pad_position[:2])
    go(arm, arm.true_ee().position - np.array([0, 0, 0.012]), 0.0, 0.3)  # set it down, still held
    arm.step(1.0)
    cube = arm.world.cube("red")
    assert np.all(np.abs(np.array(cube.position[:2]) - arm.world.pad_position[:2]) < PAD_HALF_M)
    assert arm.world.evaluate().status == "running"
    release(arm)
    assert arm.world.evaluate().status == "success"


def test_a_cube_put_down_off_the_pad_is_not_a_success(arm: MujocoArm) -> None:
    arm.world.set_scene(LAYOUT, "red", pad=(0.5, -0.32))
    grasp(arm)
    carry_to(arm, np.array([0.5, -0.32 + PAD_HALF_M + 0.06]))  # beside the pad, on the table
    release(arm)
    assert arm.world.cube("red").position[2] == pytest.approx(0.02, abs=0.003)  # resting
    assert arm.world.evaluate().status == "running"


def test_pushing_another_cube_more_than_3_cm_fails(arm: MujocoArm) -> None:
    arm.world.set_scene(LAYOUT, "red", pad=(0.5, -0.32))
    go(arm, np.array([0.4, 0.05, 0.02]), 0.0, 1.5)  # beside the green cube, low
    go(arm, np.array([0.4, 0.30, 0.02]), 0.0, 1.5)  # through it
    result = arm.world.evaluate()
    assert result.status == "failure"
    assert result.reason.startswith("moved the green cube")


def test_leaving_the_workspace_fails(arm: MujocoArm) -> None:
    arm.world.set_scene(LAYOUT, "red", pad=(0.5, -0.32))
    go(arm, np.array([0.05, 0.0, 0.45]), 1.0, 1.5)
    result = arm.world.evaluate()
    assert result.status == "failure"
    assert "left the workspace (x = " in result.reason


def test_timeout_fails(arm: MujocoArm) -> None:
    arm.world.time_limit_s = 1.0
    arm.world.set_scene(LAYOUT, "red", pad=(0.5, -0.32))
    arm.step(0.9)
    assert arm.world.evaluate().status == "running"
    arm.step(0.2)
    result = arm.world.evaluate()
    assert (result.status, result.reason) == ("failure", "timeout after 1 s")


def test_the_conveyor_carries_its_cube_at_conveyor_speed(conveyor_arm: MujocoArm) -> None:
    world = conveyor_arm.world
    world.reset(seed=5)
    conveyor_arm.command_pose(Pose(conveyor_arm.true_ee().position, DOWN))
    conveyor_arm.step(0.5)  # settled on the belt
    y0 = world.target_cube.position[1]
    conveyor_arm.step(1.0)
    speed = world.target_cube.position[1] - y0
    assert speed == pytest.approx(world.conveyor_speed, rel=0.02)

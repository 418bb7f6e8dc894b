"""A scripted pick-and-place for the MuJoCo sim tests, driven by the true cube positions (the way
the issue-14 prototype script does it): smooth Cartesian moves of the TCP, tool pointing down."""

from __future__ import annotations

import numpy as np

from robot_agent.sim.mujoco_arm import MujocoArm
from safety.types import Pose

DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # x y z w: the TCP at home points straight down


def go(arm: MujocoArm, target: np.ndarray, gripper: float, duration_s: float, dt_s: float = 0.01) -> None:
    """Move the TCP from where it is to ``target`` (3, metres) along a smoothstep in
    ``duration_s``, commanding ``gripper`` each tick."""
    start = arm.true_ee().position
    n = max(1, round(duration_s / dt_s))
    for i in range(n):
        s = (i + 1) / n
        s = s * s * (3 - 2 * s)
        arm.command_pose(Pose(start + s * (np.asarray(target, dtype=float) - start), DOWN))
        arm.command_gripper(gripper)
        arm.step(dt_s)


def grasp(arm: MujocoArm) -> None:
    """Go over the named cube (leading it by 2 s of belt travel on the conveyor), down, close."""
    world = arm.world
    lead = np.array([0.0, world.conveyor_speed * 2.0, 0.0])
    go(arm, world.target_cube.top + np.array([0, 0, 0.10]) + lead, 1.0, 1.5)
    go(arm, world.target_cube.top + np.array([0, 0, -0.02]), 1.0, 0.3 if world.conveyor else 0.5)
    go(arm, arm.true_ee().position, 0.0, 0.6)
    go(arm, arm.true_ee().position + np.array([0, 0, 0.15]), 0.0, 1.0)


def carry_to(arm: MujocoArm, xy: np.ndarray) -> None:
    """Carry the grasped cube over ``xy`` and lower it until it is about 1 cm above the table."""
    go(arm, np.array([xy[0], xy[1], 0.15]), 0.0, 1.5)
    go(arm, np.array([xy[0], xy[1], 0.055]), 0.0, 0.8)


def release(arm: MujocoArm) -> None:
    """Open the hand and lift clear, then wait 1 s."""
    go(arm, arm.true_ee().position, 1.0, 0.5)
    go(arm, arm.true_ee().position + np.array([0, 0, 0.1]), 1.0, 0.6)
    for _ in range(50):
        arm.step(0.02)


def pick_and_place(arm: MujocoArm) -> None:
    """The whole scripted episode: grasp the named cube, put it on the pad, let go."""
    grasp(arm)
    carry_to(arm, arm.world.pad_position[:2])
    release(arm)

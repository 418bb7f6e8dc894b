"""The simulator is one package below the agent: the arm runs, and is drawn, without the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import panda_py

import robot_agent.sim
from robot_agent.cameras.sim import SimCamera
from robot_agent.sim.arm import PANDA_HOME_JOINTS, SimArm
from robot_agent.sim.clock import ManualClock
from safety.arms import PANDA
from safety.types import Pose


def test_the_arm_runs_on_its_own_and_tracks_a_pose_through_ik() -> None:
    arm = SimArm(clock=ManualClock(), seed=0)
    reading = arm.read()
    np.testing.assert_allclose(reading.joint_positions, PANDA.home_joints)
    np.testing.assert_allclose(reading.ee.position, panda_py.fk(PANDA_HOME_JOINTS)[:3, 3], atol=1e-12)
    assert reading.time_s == 0.0 and not reading.estopped
    goal = reading.ee.position + np.array([0.0, 0.0, -0.05])
    for s in np.linspace(0.0, 1.0, 20):
        arm.command_pose(Pose(reading.ee.position + (goal - reading.ee.position) * s, reading.ee.quaternion))
        arm.step(0.02)
    arm.step(1.0)
    np.testing.assert_allclose(arm.true_ee().position, goal, atol=1e-3)
    assert arm.ik_failures == 0
    q = arm.inverse_kinematics(Pose(goal, reading.ee.quaternion), arm.true_joints())
    assert q is not None
    np.testing.assert_allclose(arm.forward_kinematics(q).position, goal, atol=1e-4)


def test_the_estop_latches_on_the_arm_until_reset() -> None:
    arm = SimArm(clock=ManualClock())
    arm.emergency_stop()
    arm.command_joints(PANDA_HOME_JOINTS + 0.2)
    arm.step(0.5)
    np.testing.assert_allclose(arm.true_joints(), PANDA_HOME_JOINTS)
    assert arm.read().estopped and arm.rejected_commands == 1
    arm.reset_fault()
    arm.command_joints(PANDA_HOME_JOINTS + 0.2)
    arm.step(2.0)
    np.testing.assert_allclose(arm.true_joints(), PANDA_HOME_JOINTS + 0.2, atol=1e-4)


def test_the_sim_camera_draws_an_arm_it_is_given_directly() -> None:
    arm = SimArm(clock=ManualClock(), seed=3)
    camera = SimCamera(arm, name="front", width=64, height=48, fps=30)
    camera.open()
    frame = camera.read()
    assert frame.rgb.shape == (48, 64, 3) and frame.time_s == arm.clock.now()


def test_the_simulator_imports_nothing_of_the_agent() -> None:
    """Only ``robot_agent.sim.*``, ``safety`` and libraries: the adapters depend on the simulator,
    never the other way (``import robot_agent.sim`` itself runs ``robot_agent/__init__``, hence
    the imports are read from the source)."""
    package = Path(robot_agent.sim.__file__).parent
    found: dict[str, str] = {}
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if name.startswith("robot_agent") and not name.startswith("robot_agent.sim"):
                    found[f"{path.name}: {name}"] = name
    assert sorted(found) == []

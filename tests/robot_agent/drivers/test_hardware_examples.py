"""The example configs for real arms load, and their limits fit the arm they are for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import panda_py
import pytest
from panda_py import constants
from xarm.core.config.x_config import XCONF

from robot_agent.config import AgentConfig
from robot_agent.drivers.franka import FrankaOptions
from robot_agent.drivers.xarm import XArmOptions, _pose_from_wire
from safety.config import PANDA_HOME_JOINTS, SafetyConfig
from safety.rotations import matrix_to_quat
from safety.types import Pose

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize(("name", "kind"), [("franka.toml", "franka"), ("xarm.toml", "xarm")])
def test_example_loads_with_every_section(name: str, kind: str) -> None:
    config = AgentConfig.load(EXAMPLES / name)
    assert config.robot.kind == kind and config.robot.ip
    assert config.cameras and config.safety
    safety = SafetyConfig.from_mapping(config.safety)
    # a first run: slow
    assert safety.translation.max_velocity <= 0.15
    assert max(safety.joints.max_velocity) <= 0.5
    options = (FrankaOptions if kind == "franka" else XArmOptions).from_mapping(config.robot.options)
    assert options.gripper


def test_franka_example_contains_the_start_pose() -> None:
    config = AgentConfig.load(EXAMPLES / "franka.toml")
    safety = SafetyConfig.from_mapping(config.safety)
    t = panda_py.fk(np.asarray(PANDA_HOME_JOINTS))
    home = Pose(position=t[:3, 3], quaternion=matrix_to_quat(t[:3, :3]))
    safety.validate_against(
        home=home,
        home_joints=PANDA_HOME_JOINTS,
        robot_joint_min=constants.JOINT_LIMITS_LOWER,
        robot_joint_max=constants.JOINT_LIMITS_UPPER,
    )


def test_xarm_example_servo_step_leaves_headroom_over_the_shield() -> None:
    config = AgentConfig.load(EXAMPLES / "xarm.toml")
    safety = SafetyConfig.from_mapping(config.safety)
    options = XArmOptions.from_mapping(config.robot.options)
    # the driver's clamp must never be what limits speed: the shield is
    assert options.max_step_m * config.control.rate_hz > safety.translation.max_velocity
    assert options.max_step_rad * config.control.rate_hz > safety.rotation.max_velocity
    # a typical ready pose, tool down 30 cm in front of the base, is allowed
    # a typical ready pose, tool down 30 cm in front of the base, is allowed, and the joint limits
    # are within the xArm 7's own (what the agent checks at start-up)
    lower, upper = (np.array(v) for v in zip(*XCONF.Robot.JOINT_LIMITS[7][7], strict=True))
    safety.validate_against(
        home=_pose_from_wire([350.0, 0.0, 300.0, 180.0, 0.0, 0.0]),
        home_joints=np.zeros(7),
        robot_joint_min=lower,
        robot_joint_max=upper,
    )

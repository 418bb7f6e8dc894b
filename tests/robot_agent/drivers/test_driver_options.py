"""Franka and xArm ``[robot.options]`` are frozen dataclasses checked in their constructor: built
from a file's table or in code, a bad value is refused naming ``robot.options.<key>``."""

from __future__ import annotations

from typing import Any

import pytest

from robot_agent.drivers.franka import FrankaOptions
from robot_agent.drivers.xarm import XArmOptions
from robot_agent.errors import ConfigError


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FrankaOptions(impedance=(200.0, 200.0)), "robot.options.impedance is [200.0, 200.0]; expected 6 positive numbers"),
        (lambda: FrankaOptions(controller="torque"), "robot.options.controller is 'torque'; expected one of "),
        (lambda: FrankaOptions(gripper_force=80), "robot.options.gripper_force is 80.0; expected a number in [0.0, 70.0]"),
        (lambda: FrankaOptions(gripper="yes"), "robot.options.gripper is 'yes' (str), expected true or false"),
        (lambda: XArmOptions(collision_sensitivity=9), "robot.options.collision_sensitivity is 9; expected an integer in [0, 5]"),
        (lambda: XArmOptions(max_step_m=0.5), "robot.options.max_step_m is 0.5; expected a number in [1e-05, 0.01]"),
        (lambda: XArmOptions.from_mapping({"grippr": True}), "robot.options: unknown key 'grippr' (known: acc_m_s2, "),
    ],
)  # fmt: skip
def test_options_are_checked_when_built(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()
    assert str(info.value).startswith(message)
    assert info.value.field is not None and info.value.field.startswith("robot.options")


def test_a_table_and_the_same_options_in_code_are_equal() -> None:
    from_table = FrankaOptions.from_mapping({"impedance": [200, 200, 200, 10, 10, 10], "gripper": False})
    assert from_table == FrankaOptions(impedance=(200.0, 200.0, 200.0, 10.0, 10.0, 10.0), gripper=False)
    assert XArmOptions.from_mapping({}) == XArmOptions() and XArmOptions().gripper_speed == 3000.0

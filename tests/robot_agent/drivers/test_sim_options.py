"""The simulated arm's ``[robot.options]`` go through the shared config loader, as every other
section: unknown keys, types and ranges are refused naming ``robot.options.<key>``."""

from __future__ import annotations

import numpy as np
import pytest

from robot_agent.config import RobotConfig
from robot_agent.drivers.sim import SimOptions, SimRobot
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import PANDA_MAX_JOINT_VELOCITY


@pytest.mark.parametrize(
    ("options", "message", "field"),
    [
        ({"bogus": 1}, "robot.options: unknown key 'bogus' (known: command_latency_s, ", "robot.options.bogus"),
        ({"realtime": "yes"}, "robot.options.realtime is 'yes' (str), expected true or false", "robot.options.realtime"),
        ({"seed": 1.5}, "robot.options.seed is 1.5 (float), expected an integer (or false for none)", "robot.options.seed"),
        ({"max_joint_velocity": 1.5}, "robot.options.max_joint_velocity is 1.5: a fraction must be in (0, 1]",
         "robot.options.max_joint_velocity"),
        ({"max_joint_acceleration": [1, 2]},
         "robot.options.max_joint_acceleration is [1.0, 2.0]: give a fraction or 7 positive values",
         "robot.options.max_joint_acceleration"),
    ],
)  # fmt: skip
def test_bad_options_name_the_key_and_the_value(options: dict[str, object], message: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        SimRobot.from_config(RobotConfig(options=options))
    assert str(info.value).startswith(message)
    assert info.value.field == field


def test_limits_are_a_fraction_of_the_panda_or_given_per_joint() -> None:
    half = SimOptions(max_joint_velocity=0.5)
    np.testing.assert_allclose(
        half.limit("max_joint_velocity", PANDA_MAX_JOINT_VELOCITY), 0.5 * PANDA_MAX_JOINT_VELOCITY
    )
    per_joint = SimOptions(max_joint_velocity=[1, 1, 1, 1, 2, 2, 2])  # type: ignore[arg-type]
    assert per_joint.max_joint_velocity == (1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0)
    np.testing.assert_array_equal(
        per_joint.limit("max_joint_velocity", PANDA_MAX_JOINT_VELOCITY), [1, 1, 1, 1, 2, 2, 2]
    )

"""The simulated arm's ``[robot.options]`` go through the shared config loader, as every other
section: unknown keys, types and ranges are refused naming ``robot.options.<key>``, and so is an
option the chosen engine does not use."""

from __future__ import annotations

import numpy as np
import pytest

from robot_agent.config import RobotConfig
from robot_agent.drivers.sim import DEFAULTS, SimOptions, SimRobot
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import PANDA_MAX_JOINT_VELOCITY

KINEMATIC = {"engine": "kinematic"}


@pytest.mark.parametrize(
    ("options", "message", "field"),
    [
        ({"bogus": 1}, "robot.options: unknown key 'bogus' (known: command_latency_s, ", "robot.options.bogus"),
        ({"realtime": "yes"}, "robot.options.realtime is 'yes' (str), expected true or false", "robot.options.realtime"),
        ({"seed": 1.5}, "robot.options.seed is 1.5 (float), expected an integer (or false for none)", "robot.options.seed"),
        ({"engine": "bullet"}, "robot.options.engine is 'bullet' (str), expected one of mujoco, kinematic",
         "robot.options.engine"),
        ({"task": "stack"}, "robot.options.task is 'stack' (str), expected one of pick_place, conveyor",
         "robot.options.task"),
        ({"control_mode": "torque"}, "robot.options.control_mode is 'torque' (str), expected one of "
         "cartesian_impedance, joint_impedance", "robot.options.control_mode"),
        ({"task": "conveyor", "conveyor_speed": 0.5}, "robot.options.conveyor_speed is 0.5: must be in (0, 0.2] m/s",
         "robot.options.conveyor_speed"),
        ({"conveyor_speed": 0.05}, 'robot.options.conveyor_speed is used by task = "conveyor" only; this robot '
         'has task = "pick_place"', "robot.options.conveyor_speed"),
        ({"time_limit_s": 0}, "robot.options.time_limit_s is 0.0: must be > 0 s", "robot.options.time_limit_s"),
        # MuJoCo (the default engine) refuses the kinematic arm's tuning, one line naming the key.
        ({"tracking_time_constant_s": 0.1}, 'robot.options.tracking_time_constant_s is used by engine = "kinematic" '
         'only; this robot has engine = "mujoco"', "robot.options.tracking_time_constant_s"),
        ({"physics_dt_s": 0.002}, 'robot.options.physics_dt_s is used by engine = "kinematic" only',
         "robot.options.physics_dt_s"),
        ({"max_joint_velocity": 0.5}, 'robot.options.max_joint_velocity is used by engine = "kinematic" only',
         "robot.options.max_joint_velocity"),
        ({"gripper_speed": 2.0}, 'robot.options.gripper_speed is used by engine = "kinematic" only',
         "robot.options.gripper_speed"),
        # ... and the kinematic arm refuses MuJoCo's.
        ({**KINEMATIC, "task": "conveyor"}, 'robot.options.task is used by engine = "mujoco" only; this robot has '
         'engine = "kinematic"', "robot.options.task"),
        ({**KINEMATIC, "control_mode": "joint_impedance"}, 'robot.options.control_mode is used by engine = "mujoco"',
         "robot.options.control_mode"),
        ({**KINEMATIC, "max_joint_velocity": 1.5}, "robot.options.max_joint_velocity is 1.5: a fraction must be in (0, 1]",
         "robot.options.max_joint_velocity"),
        ({**KINEMATIC, "max_joint_acceleration": [1, 2]},
         "robot.options.max_joint_acceleration is [1.0, 2.0]: give a fraction or 7 positive values",
         "robot.options.max_joint_acceleration"),
    ],
)  # fmt: skip
def test_bad_options_name_the_key_and_the_value(options: dict[str, object], message: str, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        SimRobot.from_config(RobotConfig(options=options))
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.field == field


def test_each_engine_fills_in_its_own_defaults() -> None:
    mujoco, kinematic = SimOptions(), SimOptions(engine="kinematic")
    assert mujoco.engine == "mujoco"  # the embedded default
    assert (mujoco.value("task"), mujoco.value("control_mode"), mujoco.number("time_limit_s")) == (
        "pick_place",
        "cartesian_impedance",
        25.0,
    )
    assert mujoco.value("conveyor_speed") is None  # no belt on the static task
    assert SimOptions(task="conveyor").number("conveyor_speed") == 0.04
    assert kinematic.number("time_limit_s") == 15.0
    assert kinematic.number("tracking_time_constant_s") == DEFAULTS["kinematic"]["tracking_time_constant_s"]
    assert SimOptions(time_limit_s=40.0).number("time_limit_s") == 40.0
    with pytest.raises(KeyError, match="physics_dt_s"):
        mujoco.number("physics_dt_s")


def test_the_module_docstring_lists_every_option_with_its_default() -> None:
    import dataclasses

    import robot_agent.drivers.sim as module

    doc = module.__doc__ or ""
    for f in dataclasses.fields(SimOptions):
        assert f"    {f.name} = " in doc, f.name
    for engine, defaults in DEFAULTS.items():
        for name, value in defaults.items():
            if name != "time_limit_s":
                assert f"{name} = {value!r}".replace("'", '"') in doc, (engine, name)
    assert "time_limit_s = 25.0" in doc and '15.0 with engine = "kinematic"' in doc
    assert f'engine = "{SimOptions().engine}"' in doc and "conveyor_speed = 0.04" in doc


def test_limits_are_a_fraction_of_the_panda_or_given_per_joint() -> None:
    half = SimOptions(engine="kinematic", max_joint_velocity=0.5)
    np.testing.assert_allclose(
        half.limit("max_joint_velocity", PANDA_MAX_JOINT_VELOCITY), 0.5 * PANDA_MAX_JOINT_VELOCITY
    )
    per_joint = SimOptions(engine="kinematic", max_joint_velocity=[1, 1, 1, 1, 2, 2, 2])  # type: ignore[arg-type]
    assert per_joint.max_joint_velocity == (1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0)
    np.testing.assert_array_equal(
        per_joint.limit("max_joint_velocity", PANDA_MAX_JOINT_VELOCITY), [1, 1, 1, 1, 2, 2, 2]
    )
    np.testing.assert_array_equal(
        SimOptions(engine="kinematic").limit("max_joint_velocity", PANDA_MAX_JOINT_VELOCITY),
        PANDA_MAX_JOINT_VELOCITY,
    )

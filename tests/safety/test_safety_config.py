"""The [safety] table: defaults, loading, and errors that name the field and the value."""

from __future__ import annotations

import json
import math

import pytest

from safety import (
    PANDA_CARTESIAN_LIMITS,
    PANDA_HOME_JOINTS,
    PANDA_JOINT_ACCELERATION,
    PANDA_JOINT_JERK,
    PANDA_JOINT_MAX,
    PANDA_JOINT_MIN,
    PANDA_JOINT_VELOCITY,
    KeepOutHalfSpace,
    KeepOutSphere,
    Pose,
    SafetyConfig,
    SafetyConfigError,
)

from ._helpers import HOME_POSITION, HOME_QUATERNION


def test_defaults_sit_well_below_the_panda_limits() -> None:
    c = SafetyConfig()
    (tv, ta, tj), (rv, ra, rj) = PANDA_CARTESIAN_LIMITS
    assert c.translation.max_velocity <= tv / 2 and c.translation.max_acceleration <= ta / 2
    assert c.translation.max_jerk <= tj / 2
    assert (
        c.rotation.max_velocity <= rv / 2
        and c.rotation.max_acceleration <= ra / 2
        and c.rotation.max_jerk <= rj / 2
    )
    j = c.joints
    for ours, panda in (
        (j.max_velocity, PANDA_JOINT_VELOCITY),
        (j.max_acceleration, PANDA_JOINT_ACCELERATION),
        (j.max_jerk, PANDA_JOINT_JERK),
    ):
        assert all(o <= p / 2 for o, p in zip(ours, panda, strict=True))
    assert j.min == PANDA_JOINT_MIN and j.max == PANDA_JOINT_MAX


def test_defaults_fit_the_panda_home_pose() -> None:
    panda_py = pytest.importorskip("panda_py")
    import numpy as np

    from safety.rotations import matrix_to_quat

    t = panda_py.fk(np.array(PANDA_HOME_JOINTS))
    home = Pose(t[:3, 3], matrix_to_quat(t[:3, :3]))
    SafetyConfig.from_mapping({"orientation": {"max_tilt_rad": 0.1}}).validate_against(
        home=home,
        home_joints=PANDA_HOME_JOINTS,
        robot_joint_min=PANDA_JOINT_MIN,
        robot_joint_max=PANDA_JOINT_MAX,
    )


def test_round_trip_through_json() -> None:
    c = SafetyConfig.from_mapping(
        {
            "on_workspace_violation": "reject",
            "keep_out": [
                {"kind": "sphere", "name": "camera", "center": [0.5, 0.3, 0.4], "radius": 0.05},
                {"kind": "box", "min": [0.6, -0.3, 0.02], "max": [0.7, -0.2, 0.1]},
                {"kind": "half_space", "normal": [0, 0, 2], "offset": 0.1},
            ],
            "translation": {"max_velocity": 0.3, "max_acceleration": 1.0, "max_jerk": 50},
            "joints": {"margin_rad": 0.1},
            "orientation": {"max_tilt_rad": 0.5},
        }
    )
    assert SafetyConfig.from_mapping(json.loads(json.dumps(c.to_dict()))) == c
    assert isinstance(c.keep_out[0], KeepOutSphere) and c.keep_out[0].name == "camera"
    plane = c.keep_out[2]
    assert isinstance(plane, KeepOutHalfSpace)
    assert plane.normal == (0.0, 0.0, 1.0) and plane.offset == pytest.approx(0.05)  # normalised


def test_empty_table_gives_defaults() -> None:
    assert SafetyConfig.from_mapping({}) == SafetyConfig() == SafetyConfig.from_mapping(None)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"max_speed": 1}, "safety.max_speed", "unknown key 'max_speed'"),  # typo at the top
        ({"translation": {"max_velocty": 1}}, "safety.translation.max_velocty", "unknown key"),  # typo inside
        ({"translation": {"max_velocity": -1}}, "safety.translation.max_velocity", "got -1"),
        ({"translation": {"max_velocity": math.inf}}, "safety.translation.max_velocity", "got inf"),
        ({"translation": {"max_velocity": "fast"}}, "safety.translation.max_velocity", "'fast'"),
        ({"workspace": {"min": [0.5, 0, 0], "max": [0.4, 1, 1]}}, "safety.workspace.min", "on axis x"),
        ({"workspace": {"min": [0, 0], "max": [1, 1, 1]}}, "safety.workspace.min", "must have 3 values"),
        ({"workspace": 3}, "safety.workspace", "must be a table"),
        ({"on_workspace_violation": "ignore"}, "safety.on_workspace_violation", "'ignore'"),
        ({"tracking": {"on_violation": "warn"}}, "safety.tracking.on_violation", "'warn'"),
        ({"keep_out": [{"kind": "cone"}]}, "safety.keep_out[0].kind", "'cone'"),
        ({"keep_out": [{"radius": 1}]}, "safety.keep_out[0]", "with a kind"),
        (
            {"keep_out": [{"kind": "sphere", "center": [0, 0, 0], "radius": 0}]},
            "safety.keep_out[0].radius",
            "got 0",
        ),
        (
            {"keep_out": [{"kind": "half_space", "normal": [0, 0, 0], "offset": 0}]},
            "safety.keep_out[0].normal",
            "zero",
        ),
        ({"keep_out": [{"kind": "sphere", "center": [0, 0, 0]}]}, "safety.keep_out[0]", "radius"),
        ({"joints": {"max_velocity": [1.0] * 6}}, "safety.joints.max_velocity", "must have 7 values"),
        ({"joints": {"max_jerk": [1.0] * 6 + [0.0]}}, "safety.joints.max_jerk", "must be positive"),
        ({"joints": {"margin_rad": 3.0}}, "safety.joints.min[0]", "no room left"),
        (
            {"orientation": {"nominal_quaternion": [0, 0, 0, 2]}},
            "safety.orientation.nominal_quaternion",
            "unit",
        ),
        ({"orientation": {"max_tilt_rad": 4}}, "safety.orientation.max_tilt_rad", "at most pi"),
        ({"gripper": {"min": 1, "max": 0}}, "safety.gripper.min", "below max 0"),
        ({"stale_after_s": 0}, "safety.stale_after_s", "got 0"),
        ({"estop_after_interventions": 2.5}, "safety.estop_after_interventions", "got 2.5"),
        ({"estop_after_interventions": True}, "safety.estop_after_interventions", "got True"),
    ],
)
def test_bad_values_name_the_field_and_the_value(data: dict, field: str, words: str) -> None:
    with pytest.raises(SafetyConfigError) as info:
        SafetyConfig.from_mapping(data)
    assert info.value.field == field
    assert words in str(info.value)
    assert str(info.value).startswith("safety")


def test_workspace_without_the_home_pose_names_both() -> None:
    c = SafetyConfig.from_mapping({"workspace": {"min": [0.4, -0.3, 0.1], "max": [0.7, 0.3, 0.6]}})
    with pytest.raises(SafetyConfigError) as info:
        c.validate_against(home=Pose(HOME_POSITION, HOME_QUATERNION))
    message = str(info.value)
    assert info.value.field == "safety.workspace"
    assert "min=(0.4, -0.3, 0.1) max=(0.7, 0.3, 0.6)" in message and "(0.307, 0, 0.487)" in message


def test_keep_out_around_the_home_pose_is_an_error() -> None:
    c = SafetyConfig.from_mapping(
        {"keep_out": [{"kind": "sphere", "name": "lamp", "center": [0.3, 0, 0.5], "radius": 0.05}]}
    )
    with pytest.raises(
        SafetyConfigError, match=r"safety.keep_out\[0\] \(sphere 'lamp'\) contains the home pose"
    ):
        c.validate_against(home=HOME_POSITION)


def test_home_tilted_beyond_the_cone_is_an_error() -> None:
    c = SafetyConfig.from_mapping({"orientation": {"max_tilt_rad": 0.1, "nominal_quaternion": [0, 0, 0, 1]}})
    with pytest.raises(SafetyConfigError, match=r"tilted 3\.142 rad"):
        c.validate_against(home=Pose(HOME_POSITION, HOME_QUATERNION))


def test_home_joints_inside_the_margin_is_an_error() -> None:
    home = list(PANDA_HOME_JOINTS)
    home[5] = 0.0  # joint 6 min is -0.0175: inside the 0.05 margin
    with pytest.raises(SafetyConfigError, match=r"home joint 5 is 0.0000 rad, outside \[0.0325, 3.7025\]"):
        SafetyConfig().validate_against(home_joints=home)


def test_joint_limits_beyond_the_robot_are_an_error() -> None:
    wide = list(PANDA_JOINT_MAX)
    wide[0] = 3.0
    c = SafetyConfig.from_mapping({"joints": {"max": wide}})
    with pytest.raises(
        SafetyConfigError, match=r"safety.joints.max\[0\] is 3.0, beyond the robot's own limit 2.8973"
    ):
        c.validate_against(robot_joint_min=PANDA_JOINT_MIN, robot_joint_max=PANDA_JOINT_MAX)
    with pytest.raises(SafetyConfigError, match="the robot has 6"):
        SafetyConfig().validate_against(robot_joint_max=PANDA_JOINT_MAX[:6])
    with pytest.raises(SafetyConfigError, match="home pose has 6"):
        SafetyConfig().validate_against(home_joints=PANDA_HOME_JOINTS[:6])


def test_a_section_overrides_only_what_it_names() -> None:
    c = SafetyConfig.from_mapping({"translation": {"max_velocity": 0.2}, "rotation": {"max_jerk": 20.0}})
    d = SafetyConfig()
    assert c.translation.max_velocity == 0.2 and c.translation.max_jerk == d.translation.max_jerk
    assert c.rotation.max_jerk == 20.0 and c.rotation.max_velocity == d.rotation.max_velocity


def test_a_partial_section_overrides_only_the_keys_it_names() -> None:
    c = SafetyConfig.from_mapping({"translation": {"max_velocity": 0.1}, "joints": {"margin_rad": 0.1}})
    default = SafetyConfig()
    assert c.translation.max_velocity == 0.1
    assert c.translation.max_acceleration == default.translation.max_acceleration
    assert c.translation.max_jerk == default.translation.max_jerk
    assert c.joints.margin_rad == 0.1 and c.joints.max_velocity == default.joints.max_velocity


def test_the_module_docstring_example_loads() -> None:
    import textwrap
    import tomllib

    import safety.config

    example = textwrap.dedent(str(safety.config.__doc__).split("Example::", 1)[1])
    c = SafetyConfig.from_mapping(tomllib.loads(example)["safety"])
    assert c.translation.max_velocity == 0.5 and len(c.keep_out) == 2


@pytest.mark.parametrize(
    ("group", "name", "value", "limit"),
    [
        ("translation", "max_velocity", 25.0, "1.7"),
        ("translation", "max_acceleration", 13.5, "13"),
        ("translation", "max_jerk", 7000.0, "6500"),
        ("rotation", "max_velocity", 2.6, "2.5"),
        ("rotation", "max_acceleration", 30.0, "25"),
        ("rotation", "max_jerk", 20000.0, "12500"),
    ],
)
def test_cartesian_limits_beyond_the_robot_are_an_error(
    group: str, name: str, value: float, limit: str
) -> None:
    c = SafetyConfig.from_mapping({group: {name: value}})
    with pytest.raises(SafetyConfigError) as info:
        c.validate_against()  # the Panda's documented limits by default
    assert str(info.value) == f"safety.{group}.{name} is {value:g}, above the robot's own limit {limit}"
    assert info.value.field == f"safety.{group}.{name}"
    c.validate_against(robot_cartesian_limits=None)  # no table: not checked


def test_cartesian_limits_at_the_robot_limit_are_accepted() -> None:
    (tv, ta, tj), (rv, ra, rj) = PANDA_CARTESIAN_LIMITS
    SafetyConfig.from_mapping(
        {
            "translation": {"max_velocity": tv, "max_acceleration": ta, "max_jerk": tj},
            "rotation": {"max_velocity": rv, "max_acceleration": ra, "max_jerk": rj},
        }
    ).validate_against()
    slow_arm = ((0.4, 1.0, 50.0), (0.5, 2.0, 100.0))
    with pytest.raises(
        SafetyConfigError, match=r"safety.translation.max_velocity is 0.5, above the robot's own limit 0.4"
    ):
        SafetyConfig().validate_against(robot_cartesian_limits=slow_arm)


@pytest.mark.parametrize(
    ("name", "k", "value", "limit"),
    [("max_velocity", 0, 3.0, "2.175"), ("max_acceleration", 1, 8.0, "7.5"), ("max_jerk", 6, 1e5, "10000")],
)
def test_joint_rates_beyond_the_robot_are_an_error(name: str, k: int, value: float, limit: str) -> None:
    rates = list(getattr(SafetyConfig().joints, name))
    rates[k] = value
    c = SafetyConfig.from_mapping({"joints": {name: rates}})
    with pytest.raises(SafetyConfigError) as info:
        c.validate_against()  # the Panda's tables by default
    assert str(info.value) == f"safety.joints.{name}[{k}] is {value:g}, above the robot's own limit {limit}"
    assert info.value.field == f"safety.joints.{name}[{k}]"
    c.validate_against(robot_joint_rates=None)
    six = ([1.0] * 6, [1.0] * 6, [1.0] * 6)
    c.validate_against(robot_joint_rates=six)  # another arm than the config's: not this check's business

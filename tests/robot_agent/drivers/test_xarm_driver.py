"""The xArm driver against the SDK's real ``XArmAPI`` class, with only the transport replaced.

``create_autospec(XArmAPI)`` keeps every method's real signature: a call to a method the SDK does
not have, or with arguments it does not take, fails here. Codes and messages come from the SDK's
own tables (``APIState``, ``ControllerError``).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any
from unittest import mock

import numpy as np
import pytest
from xarm.wrapper import XArmAPI
from xarm.x3.code import APIState

from robot_agent.config import RobotConfig
from robot_agent.drivers import xarm as xarm_module
from robot_agent.drivers.xarm import XArmOptions, XArmRobot
from robot_agent.errors import ConfigError, DriverError
from safety.rotations import quat_angle, rpy_to_quat
from safety.types import Pose

IP = "192.168.1.185"
HOME_WIRE = [300.0, 0.0, 200.0, 180.0, 0.0, 0.0]  # mm, degrees: tool pointing down
JOINTS_WIRE = [0.0, -30.0, 0.0, 45.0, 0.0, 75.0, 0.0]  # degrees


class Rig:
    def __init__(self, **options: Any) -> None:
        self.factory = mock.create_autospec(XArmAPI)
        arm = self.factory.return_value
        self.arm = arm
        arm.connected = True
        arm.axis = 7
        arm.device_type = 7  # XARM7_X4
        arm.mode = xarm_module.MODES[options.get("mode", "servo")]
        arm.state = 2
        for name in (
            "motion_enable",
            "clean_warn",
            "clean_error",
            "clean_gripper_error",
            "set_mode",
            "set_state",
            "set_collision_sensitivity",
            "set_gripper_mode",
            "set_gripper_enable",
            "set_gripper_speed",
            "set_servo_cartesian",
            "set_servo_angle_j",
            "set_position",
            "set_gripper_position",
        ):
            getattr(arm, name).return_value = 0
        arm.get_err_warn_code.return_value = (0, [0, 0])
        arm.get_position.return_value = (0, list(HOME_WIRE))
        arm.get_servo_angle.return_value = (0, list(JOINTS_WIRE))
        arm.get_joint_states.return_value = (0, [list(JOINTS_WIRE), [10.0] * 7, [0.5] * 7])
        arm.get_gripper_position.return_value = (0, 850.0)
        self.robot = XArmRobot(
            IP, XArmOptions.from_mapping(options), connect_timeout_s=1.0, arm_factory=self.factory
        )


@pytest.fixture
def rig() -> Rig:
    r = Rig()
    yield r
    r.robot.close()


def last_servo_pose(arm: Any) -> list[float]:
    args, kwargs = arm.set_servo_cartesian.call_args
    assert kwargs == {"is_radian": False}
    return list(args[0])


# -- start-up ------------------------------------------------------------------------------------


def test_connect_enables_and_enters_servo_mode_in_order(rig: Rig) -> None:
    rig.robot.connect()
    rig.factory.assert_called_once_with(IP, is_radian=False, do_not_open=True)
    names = [c[0] for c in rig.arm.method_calls]
    order = ["connect", "get_err_warn_code", "motion_enable", "clean_warn", "set_mode", "set_state"]
    positions = [names.index(n) for n in order]
    assert positions == sorted(positions), names
    rig.arm.set_mode.assert_called_once_with(1)
    rig.arm.set_state.assert_called_once_with(0)
    rig.arm.motion_enable.assert_called_once_with(enable=True)
    rig.arm.set_gripper_enable.assert_called_once_with(True)
    rig.arm.clean_error.assert_not_called()
    # the SDK's joint limit table for an xArm7 (type 7)
    assert rig.robot.joint_limits[0][3] == pytest.approx(-0.191986)
    assert rig.robot.joint_limits[1][3] == pytest.approx(3.92699)


def test_online_mode_enters_mode_7() -> None:
    r = Rig(mode="online", collision_sensitivity=2, gripper=False)
    r.robot.connect()
    r.arm.set_mode.assert_called_once_with(7)
    r.arm.set_collision_sensitivity.assert_called_once_with(2)
    r.arm.set_gripper_enable.assert_not_called()


def test_connect_refuses_an_arm_with_an_error_and_does_not_clear_it(rig: Rig) -> None:
    rig.arm.get_err_warn_code.return_value = (APIState.HAS_ERROR, [22, 0])
    with pytest.raises(DriverError, match=rf"xArm at {IP} reports error 22: Self-Collision Error"):
        rig.robot.connect()
    rig.arm.clean_error.assert_not_called()
    rig.arm.set_mode.assert_not_called()


def test_failed_enable_names_the_call_and_the_api_code(rig: Rig) -> None:
    rig.arm.motion_enable.return_value = APIState.NOT_CONNECTED
    with pytest.raises(DriverError, match=r"motion_enable failed: API code -1 \(NOT_CONNECTED\)"):
        rig.robot.connect()


def test_mode_that_never_takes_effect_times_out() -> None:
    r = Rig(mode="online")
    r.arm.mode = 0  # old firmware: mode 7 unknown
    r.robot.connect_timeout_s = 0.1
    with pytest.raises(DriverError, match=r"did not enter Cartesian online trajectory planning mode \(7\)"):
        r.robot.connect()


def test_unreachable_arm_times_out_naming_the_address() -> None:
    release = threading.Event()
    factory = mock.create_autospec(XArmAPI)
    factory.return_value.connect.side_effect = lambda *a, **k: release.wait(10.0)
    robot = XArmRobot(IP, XArmOptions(), connect_timeout_s=0.2, arm_factory=factory)
    started = time.monotonic()
    try:
        with pytest.raises(DriverError, match=rf"no xArm at {IP} after 0.2 s"):
            robot.connect()
        assert time.monotonic() - started < 2.0
    finally:
        release.set()


def test_refused_connection_with_the_real_sdk_names_the_address() -> None:
    robot = XArmRobot.from_config(RobotConfig(kind="xarm", ip="127.0.0.2"))
    with pytest.raises(DriverError, match=r"no xArm at 127\.0\.0\.2: connect socket failed"):
        robot.connect()


# -- units ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "position", "quaternion"),
    [
        ([300.0, 0.0, 200.0, 180.0, 0.0, 0.0], [0.3, 0.0, 0.2], [1.0, 0.0, 0.0, 0.0]),  # pointing down
        ([0.0, -150.0, 500.0, 0.0, 0.0, 90.0], [0.0, -0.15, 0.5], [0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)]),
        ([123.4, 5.6, 78.9, 0.0, 0.0, 0.0], [0.1234, 0.0056, 0.0789], [0.0, 0.0, 0.0, 1.0]),  # identity
    ],
)
def test_pose_units_both_ways(wire: list[float], position: list[float], quaternion: list[float]) -> None:
    pose = xarm_module._pose_from_wire(wire)
    np.testing.assert_allclose(pose.position, position, atol=1e-12)
    assert quat_angle(pose.quaternion, np.array(quaternion)) < 1e-9
    back = xarm_module._pose_to_wire(Pose(position=np.array(position), quaternion=np.array(quaternion)))
    np.testing.assert_allclose(back[:3], wire[:3], atol=1e-9)
    # the same rotation (roll = +-180 are one angle)
    assert quat_angle(rpy_to_quat(np.radians(back[3:])), rpy_to_quat(np.radians(wire[3:]))) < 1e-9


def test_rpy_follows_the_xarm_convention_r_equals_rz_ry_rx() -> None:
    roll, pitch, yaw = 10.0, 20.0, 30.0
    pose = xarm_module._pose_from_wire([0, 0, 0, roll, pitch, yaw])
    r, p, y = np.radians([roll, pitch, yaw])
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
    from safety.rotations import quat_to_matrix

    np.testing.assert_allclose(quat_to_matrix(pose.quaternion), rz @ ry @ rx, atol=1e-12)


def test_read_state_converts_to_si(rig: Rig) -> None:
    rig.robot.connect()
    state = rig.robot.read_state()
    np.testing.assert_allclose(state.joint_positions, np.radians(JOINTS_WIRE))
    np.testing.assert_allclose(state.joint_velocities, np.radians([10.0] * 7))
    np.testing.assert_allclose(state.ee.position, [0.3, 0.0, 0.2])
    assert quat_angle(state.ee.quaternion, np.array([1.0, 0, 0, 0])) < 1e-9
    assert state.gripper == 1.0 and state.fault is None
    rig.arm.get_joint_states.assert_called_with(is_radian=False)
    rig.arm.get_err_warn_code.assert_called_with()


def test_six_axis_arm_reports_six_joints() -> None:
    r = Rig(gripper=False)
    r.arm.axis = 6
    r.arm.device_type = 6
    r.robot.connect()
    assert r.robot.read_state().joint_positions.shape == (6,)
    assert r.robot.joint_limits[0].shape == (6,)


@pytest.mark.parametrize(("axis", "device_type"), [(5, 5), (6, 6), (7, 7)])
def test_the_published_xarm_tables_match_the_sdk_for_the_standard_models(axis: int, device_type: int) -> None:
    from xarm.core.config.x_config import XCONF

    from safety.arms import XARM

    sdk = XCONF.Robot.JOINT_LIMITS[axis][device_type]
    table = XARM[axis]
    assert table.dof == axis
    np.testing.assert_allclose(table.joint_min, [lo for lo, _ in sdk], atol=1e-6)
    np.testing.assert_allclose(table.joint_max, [hi for _, hi in sdk], atol=1e-6)
    assert table.joint_velocity == (pytest.approx(np.pi),) * axis  # 180 deg/s


def test_the_arm_reports_its_own_xarm_table_not_the_pandas() -> None:
    from safety.arms import PANDA, XARM6, XARM7

    assert XArmRobot.arm_limits is XARM7
    np.testing.assert_allclose(XArmRobot.joint_limits[1], XARM7.joint_max)  # before connect
    assert XArmRobot.joint_limits[1][3] != pytest.approx(PANDA.joint_max[3])
    r = Rig(gripper=False)
    r.arm.axis = 6
    r.arm.device_type = 60  # a type the SDK has no table for: the published xArm 6 ranges
    r.robot.connect()
    assert r.robot.arm_limits is XARM6
    np.testing.assert_allclose(r.robot.joint_limits[0], XARM6.joint_min)
    np.testing.assert_allclose(r.robot.joint_limits[1], XARM6.joint_max)


# -- commands ------------------------------------------------------------------------------------


def test_small_cartesian_step_goes_out_in_mm_and_degrees(rig: Rig) -> None:
    rig.robot.connect()
    target = Pose(position=np.array([0.301, 0.0005, 0.2]), quaternion=np.array([1.0, 0.0, 0.0, 0.0]))
    rig.robot.command_ee(target)
    wire = last_servo_pose(rig.arm)
    np.testing.assert_allclose(wire[:3], [301.0, 0.5, 200.0], atol=1e-9)
    assert abs(abs(wire[3]) - 180.0) < 1e-9 and abs(wire[4]) < 1e-9 and abs(wire[5]) < 1e-9
    assert rig.robot.clamped_commands == 0


def test_large_cartesian_jump_is_clamped_to_the_servo_step(rig: Rig) -> None:
    rig.robot.connect()
    far = Pose(position=np.array([0.4, 0.0, 0.2]), quaternion=rpy_to_quat(np.radians([180.0, 0.0, 20.0])))
    rig.robot.command_ee(far)
    wire = last_servo_pose(rig.arm)
    np.testing.assert_allclose(wire[:3], [302.0, 0.0, 200.0], atol=1e-9)  # 2 mm, the default step
    sent = rpy_to_quat(np.radians(wire[3:]))
    assert quat_angle(sent, np.array([1.0, 0, 0, 0])) == pytest.approx(0.02, abs=1e-9)
    assert rig.robot.clamped_commands == 1
    rig.robot.command_ee(far)  # the next command continues from the clamped one
    np.testing.assert_allclose(last_servo_pose(rig.arm)[:3], [304.0, 0.0, 200.0], atol=1e-9)


def test_online_mode_sends_set_position_without_waiting() -> None:
    r = Rig(mode="online", gripper=False, speed_m_s=0.05)
    r.robot.connect()
    r.robot.command_ee(Pose(position=np.array([0.4, 0.0, 0.2]), quaternion=np.array([1.0, 0, 0, 0])))
    kwargs = r.arm.set_position.call_args.kwargs
    assert kwargs["x"] == pytest.approx(400.0) and kwargs["z"] == pytest.approx(200.0)
    assert kwargs["speed"] == pytest.approx(50.0) and kwargs["wait"] is False and kwargs["is_radian"] is False
    with pytest.raises(DriverError, match="mode = 'servo'"):
        r.robot.command_joints(np.zeros(7))


def test_joint_command_in_degrees_clamped_per_joint(rig: Rig) -> None:
    rig.robot.connect()
    q = np.radians(JOINTS_WIRE)
    q_target = q + np.array([0.01, 0.0, 0.0, 0.5, 0.0, 0.0, -0.5])
    rig.robot.command_joints(q_target)
    args, kwargs = rig.arm.set_servo_angle_j.call_args
    assert kwargs == {"is_radian": False}
    np.testing.assert_allclose(args[0], np.degrees(q + np.array([0.01, 0, 0, 0.02, 0, 0, -0.02])))
    assert rig.robot.clamped_commands == 1


def test_hold_commands_the_measured_pose(rig: Rig) -> None:
    rig.robot.connect()
    rig.arm.get_position.return_value = (0, [310.0, 5.0, 210.0, 180.0, 0.0, 10.0])
    rig.robot.hold()
    wire = last_servo_pose(rig.arm)
    np.testing.assert_allclose(wire[:3], [310.0, 5.0, 210.0], atol=1e-9)
    assert quat_angle(rpy_to_quat(np.radians(wire[3:])), rpy_to_quat(np.radians([180, 0, 10]))) < 1e-9


def test_gripper_is_non_blocking_in_sdk_units(rig: Rig) -> None:
    rig.robot.connect()
    rig.robot.command_gripper(0.5)
    rig.arm.set_gripper_position.assert_called_once_with(425.0, wait=False, speed=3000)
    rig.robot.command_gripper(0.51)  # dead band
    assert rig.arm.set_gripper_position.call_count == 1
    rig.arm.get_gripper_position.return_value = (0, 425.0)
    for _ in range(xarm_module.GRIPPER_READ_EVERY):
        state = rig.robot.read_state()
    assert state.gripper == pytest.approx(0.5)


# -- errors --------------------------------------------------------------------------------------


def test_error_code_becomes_a_latched_fault_with_the_sdk_message(rig: Rig) -> None:
    rig.robot.connect()
    rig.arm.get_err_warn_code.return_value = (APIState.HAS_ERROR, [31, 0])
    state = rig.robot.read_state()
    assert state.fault is not None
    assert state.fault.startswith(f"xArm at {IP}: error 31: Collision Caused Abnormal Current (Please check")
    with pytest.raises(DriverError, match="reset the fault"):
        rig.robot.command_ee(state.ee)
    calls = rig.arm.set_servo_cartesian.call_count
    rig.robot.hold()
    assert rig.arm.set_servo_cartesian.call_count == calls
    rig.arm.clean_error.assert_not_called()

    rig.arm.get_err_warn_code.return_value = (0, [0, 0])
    assert rig.robot.read_state().fault is not None  # latched until the reset

    rig.robot.reset_fault()
    rig.arm.clean_error.assert_called_once_with()
    assert rig.arm.set_mode.call_args_list[-1] == mock.call(1)
    assert rig.robot.read_state().fault is None
    rig.robot.command_ee(state.ee)


def test_reset_that_does_not_clear_keeps_the_error(rig: Rig) -> None:
    rig.robot.connect()
    rig.arm.get_err_warn_code.return_value = (APIState.HAS_ERROR, [1, 0])
    assert rig.robot.read_state().fault is not None
    with pytest.raises(DriverError, match="error 1: The Emergency Stop Button"):
        rig.robot.reset_fault()


def test_command_refused_with_error_latches_the_fault(rig: Rig) -> None:
    rig.robot.connect()
    rig.arm.set_servo_cartesian.return_value = APIState.HAS_ERROR
    rig.arm.get_err_warn_code.return_value = (APIState.HAS_ERROR, [35, 0])
    with pytest.raises(DriverError, match="error 35"):
        rig.robot.command_ee(Pose(position=np.array([0.3, 0, 0.2]), quaternion=np.array([1.0, 0, 0, 0])))
    assert "error 35" in rig.robot.read_state().fault


def test_stopped_controller_and_lost_connection_are_faults(rig: Rig) -> None:
    rig.robot.connect()
    rig.arm.state = 4
    assert "state 4" in rig.robot.read_state().fault
    r = Rig(gripper=False)
    r.robot.connect()
    r.arm.connected = False
    assert "connection was lost" in r.robot.read_state().fault


def test_warning_is_logged_once_and_is_not_a_fault(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.robot.connect()
    rig.arm.get_err_warn_code.return_value = (APIState.HAS_WARN, [0, 11])
    with caplog.at_level("WARNING", logger=xarm_module.__name__):
        for _ in range(3):
            state = rig.robot.read_state()
    assert state.fault is None
    assert [r.getMessage() for r in caplog.records].count(
        f"xArm at {IP} warns: warning 11: Current controller cache is full"
    ) == 1


def test_failed_read_raises_with_the_api_code(rig: Rig) -> None:
    rig.robot.connect()
    rig.arm.get_position.return_value = (APIState.RES_TIMEOUT, [0.0] * 6)
    with pytest.raises(DriverError, match=r"get_position failed: API code 3 \(RES_TIMEOUT\)"):
        rig.robot.read_state()


def test_emergency_and_controlled_stop(rig: Rig) -> None:
    rig.robot.connect()
    rig.robot.stop()
    assert rig.arm.set_mode.call_args_list[-1] == mock.call(0)
    rig.robot.emergency_stop()
    rig.arm.emergency_stop.assert_called_once_with()
    assert "emergency stop" in rig.robot.read_state().fault
    rig.robot.close()
    rig.arm.disconnect.assert_called_once_with()


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"mode": "velocity"}, "robot.options.mode"),
        ({"max_step_m": 0.5}, "robot.options.max_step_m"),  # a 50 cm jump per command: refused
        ({"collision_sensitivity": 9}, "robot.options.collision_sensitivity"),
        ({"grippr": True}, "robot.options.grippr"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        XArmRobot.from_config(RobotConfig(kind="xarm", ip=IP, options=options))
    assert info.value.field == field


def test_reset_before_connect_clears_an_arm_that_connect_refuses(rig: Rig) -> None:
    rig.arm.get_err_warn_code.return_value = (APIState.HAS_ERROR, [22, 0])
    with pytest.raises(DriverError, match="error 22"):
        rig.robot.connect()
    rig.arm.set_mode.assert_not_called()
    rig.arm.clean_error.side_effect = lambda: (
        rig.arm.get_err_warn_code.configure_mock(return_value=(0, [0, 0])) or 0
    )
    rig.robot.reset_fault()
    rig.arm.clean_error.assert_called_once_with()
    rig.arm.set_mode.assert_called_once_with(1)
    rig.factory.assert_called_once()
    assert rig.robot.read_state().fault is None

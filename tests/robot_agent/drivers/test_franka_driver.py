"""The Franka driver against panda-python's real classes, with only the transport replaced.

``panda_py.Panda``, ``libfranka.Gripper`` and the controllers are strict autospecs of the installed
SDK (a call to a missing method or with arguments no overload accepts fails the test); kinematics
(``panda_py.fk``/``ik``) and the libfranka enums are the real ones.
"""

from __future__ import annotations

import itertools
import threading
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import panda_py
import pytest
from panda_py import constants, controllers, libfranka, motion
from sdk_autospec import strict_autospec, strict_class

from robot_agent.config import RobotConfig
from robot_agent.drivers import franka as franka_module
from robot_agent.drivers.franka import FrankaOptions, FrankaRobot
from robot_agent.errors import ConfigError, DriverError
from safety.rotations import quat_angle
from safety.types import Pose

IP = "172.16.0.2"
Q0 = np.asarray(constants.JOINT_POSITION_START) + np.array([0.3, 0.2, -0.4, 0.1, 0.5, 0.3, -0.2])


class _Errors:
    """Stands in for a non-empty ``libfranka.Errors`` (which Python cannot construct with flags)."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def __bool__(self) -> bool:
        return bool(self.names)

    def __repr__(self) -> str:
        return repr(list(self.names))


def make_state(q: np.ndarray = Q0, mode: Any = libfranka.RobotMode.kMove, errors: Any = None) -> Any:
    state = strict_autospec(libfranka.RobotState)
    state.q = list(q)
    state.dq = [0.01 * i for i in range(7)]
    state.O_T_EE = list(panda_py.fk(q).flatten(order="F"))  # libfranka: column-major
    state.tau_ext_hat_filtered = [0.5 * i for i in range(7)]
    state.O_F_ext_hat_K = [1.0, -2.0, 3.0, 0.1, -0.2, 0.3]
    state.robot_mode = mode
    state.current_errors = errors if errors is not None else libfranka.Errors()
    state.last_motion_errors = libfranka.Errors()
    state.time = libfranka.Duration(next(_ROBOT_MS))
    return state


_ROBOT_MS = itertools.count(1)  # libfranka's clock: each made state is a new 1 ms sample


class Rig:
    """A FrankaRobot wired to autospecced SDK objects."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, **options: Any) -> None:
        self.panda = strict_autospec(panda_py.Panda)
        self.panda.get_state.return_value = make_state()
        self.panda.get_joint_limits_lower.return_value = np.asarray(constants.JOINT_LIMITS_LOWER_FR3)
        self.panda.get_joint_limits_upper.return_value = np.asarray(constants.JOINT_LIMITS_UPPER_FR3)
        self.panda.is_moving.return_value = True
        self.panda.get_robot.return_value = strict_autospec(libfranka.Robot)
        self.gripper = strict_autospec(libfranka.Gripper)
        gripper_state = strict_autospec(libfranka.GripperState)
        gripper_state.max_width = 0.08
        gripper_state.width = 0.08
        self.gripper.read_once.return_value = gripper_state
        self.gripper.move.return_value = True
        self.gripper.grasp.return_value = True
        self.panda_factory = strict_class(panda_py.Panda)
        self.panda_factory.side_effect = self._make_panda
        self.gripper_factory = strict_class(libfranka.Gripper)
        self.gripper_factory.side_effect = lambda *a, **k: self.gripper
        self.cartesian = strict_class(controllers.CartesianImpedance)
        self.joint = strict_class(controllers.JointPosition)
        monkeypatch.setattr(
            franka_module,
            "controllers",
            SimpleNamespace(CartesianImpedance=self.cartesian, JointPosition=self.joint),
        )
        self.robot = FrankaRobot(
            IP,
            FrankaOptions.from_mapping(options),
            connect_timeout_s=2.0,
            panda_factory=self.panda_factory,
            gripper_factory=self.gripper_factory,
        )

    def _make_panda(self, *args: Any, **kwargs: Any) -> Any:
        # Check the call against the real constructor's signature, then hand out the autospec.
        strict_class(panda_py.Panda)(*args, **kwargs)
        return self.panda

    @property
    def controller(self) -> Any:
        instances = (self.cartesian.instances or []) + (self.joint.instances or [])
        return instances[-1]


@pytest.fixture
def rig(monkeypatch: pytest.MonkeyPatch) -> Rig:
    r = Rig(monkeypatch)
    yield r
    r.robot.close()


def poll_until(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def fk_pose(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position and quaternion of fk(q), the quaternion as panda-python's Eigen code computes it."""
    t = panda_py.fk(q)
    t2 = t.copy()
    t2[0, 3] += 0.05
    trajectory = motion.CartesianTrajectory([t, t2])
    return t[:3, 3], np.asarray(trajectory.get_orientation(0.0))


# -- start-up ------------------------------------------------------------------------------------


def test_connect_starts_one_cartesian_impedance_controller_holding_the_measured_pose(rig: Rig) -> None:
    rig.robot.connect()

    rig.panda_factory.assert_called_once_with(IP, realtime_config=libfranka.RealtimeConfig.kIgnore)
    rig.gripper_factory.assert_called_once_with(IP)
    assert len(rig.cartesian.instances) == 1 and not rig.joint.instances
    rig.panda.start_controller.assert_called_once_with(rig.controller)
    position, orientation, q_nullspace = rig.controller.set_control.call_args.args
    expected_position, expected_quat = fk_pose(Q0)
    np.testing.assert_allclose(position, expected_position, atol=1e-12)
    assert quat_angle(orientation, expected_quat) < 1e-9
    np.testing.assert_allclose(q_nullspace, Q0)
    # the connected robot's envelope, not the default FER one
    np.testing.assert_allclose(rig.robot.joint_limits[0], constants.JOINT_LIMITS_LOWER_FR3)
    rig.panda.recover.assert_not_called()


def test_before_connect_the_limits_are_the_panda_table_panda_py_agrees_with() -> None:
    from safety.arms import PANDA

    assert FrankaRobot.arm_limits is PANDA
    np.testing.assert_allclose(FrankaRobot.joint_limits[0], constants.JOINT_LIMITS_LOWER)
    np.testing.assert_allclose(FrankaRobot.joint_limits[1], constants.JOINT_LIMITS_UPPER)
    np.testing.assert_allclose(FrankaRobot.home_joints, constants.JOINT_POSITION_START)


def test_options_pass_through_to_the_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Rig(
        monkeypatch, impedance=[600, 600, 600, 30, 30, 30], damping_ratio=0.9, gripper=False, realtime=True
    )
    r.robot.connect()
    kwargs = r.cartesian.call_args.kwargs
    np.testing.assert_allclose(kwargs["impedance"], np.diag([600, 600, 600, 30, 30, 30]))
    assert kwargs["damping_ratio"] == 0.9
    r.panda_factory.assert_called_once_with(IP, realtime_config=libfranka.RealtimeConfig.kEnforce)
    r.gripper_factory.assert_not_called()
    r.robot.close()


def test_joint_position_option_starts_a_joint_position_controller(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Rig(
        monkeypatch, controller="joint_position", joint_stiffness=[60, 60, 60, 60, 25, 15, 5], gripper=False
    )
    r.robot.connect()
    assert len(r.joint.instances) == 1 and not r.cartesian.instances
    np.testing.assert_allclose(r.joint.call_args.kwargs["stiffness"], [60, 60, 60, 60, 25, 15, 5])
    (held,) = r.controller.set_control.call_args.args
    np.testing.assert_allclose(held, Q0)
    r.robot.close()


@pytest.mark.parametrize(
    ("mode", "errors", "words"),
    [
        (libfranka.RobotMode.kReflex, _Errors("cartesian_reflex"), "reflex mode ['cartesian_reflex']"),
        (libfranka.RobotMode.kUserStopped, None, "user stop"),
        (
            libfranka.RobotMode.kIdle,
            _Errors("joint_position_limits_violation"),
            "joint_position_limits_violation",
        ),
    ],
)
def test_connect_refuses_a_robot_in_error_without_recovering(
    rig: Rig, mode: Any, errors: Any, words: str
) -> None:
    # start_controller would call recover() on its own: it must not be reached.
    rig.panda.get_state.return_value = make_state(mode=mode, errors=errors)
    with pytest.raises(DriverError, match="not ready") as info:
        rig.robot.connect()
    assert words in str(info.value) and IP in str(info.value)
    rig.panda.start_controller.assert_not_called()
    rig.panda.recover.assert_not_called()


def test_unreachable_robot_times_out_naming_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    entered = threading.Event()

    def hang(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(10.0)  # libfranka's connect on an address that never answers
        raise RuntimeError("libfranka: Connection timeout")

    robot = FrankaRobot(IP, FrankaOptions(), connect_timeout_s=0.2, panda_factory=hang)
    started = time.monotonic()
    try:
        with pytest.raises(DriverError, match=rf"no Franka at {IP} after 0.2 s"):
            robot.connect()
        assert entered.is_set()
        assert time.monotonic() - started < 2.0
    finally:
        release.set()


def test_refused_connection_with_the_real_sdk_names_the_address() -> None:
    # Real panda_py.Panda, real libfranka: nothing listens on 127.0.0.2.
    robot = FrankaRobot.from_config(RobotConfig(kind="franka", ip="127.0.0.2", options={"gripper": False}))
    with pytest.raises(DriverError, match=r"no Franka at 127\.0\.0\.2: libfranka"):
        robot.connect()


# -- state ---------------------------------------------------------------------------------------


def test_read_state_maps_libfranka_state_to_si_and_xyzw(rig: Rig) -> None:
    rig.robot.connect()
    state = rig.robot.read_state()
    position, quaternion = fk_pose(Q0)
    np.testing.assert_allclose(state.joint_positions, Q0)
    np.testing.assert_allclose(state.joint_velocities, [0.01 * i for i in range(7)])
    np.testing.assert_allclose(state.ee.position, position, atol=1e-12)
    assert quat_angle(state.ee.quaternion, quaternion) < 1e-9
    assert state.ee.quaternion[3] >= 0
    np.testing.assert_allclose(state.external_torques, [0.5 * i for i in range(7)])
    np.testing.assert_allclose(state.external_wrench, [1.0, -2.0, 3.0, 0.1, -0.2, 0.3])
    assert state.gripper == pytest.approx(1.0)
    assert state.fault is None


def test_start_pose_points_the_hand_down() -> None:
    # Convention check independent of the fixture: at the start pose the flange points down, so
    # the quaternion is a half turn about x, (1, 0, 0, 0) in (x, y, z, w).
    state = make_state(np.asarray(constants.JOINT_POSITION_START))
    pose = franka_module._pose_from_o_t_ee(state.O_T_EE)
    assert quat_angle(pose.quaternion, np.array([1.0, 0.0, 0.0, 0.0])) < 0.01


# -- commands ------------------------------------------------------------------------------------


def test_command_ee_feeds_the_impedance_controller(rig: Rig) -> None:
    rig.robot.connect()
    target = Pose(position=np.array([0.4, 0.1, 0.3]), quaternion=np.array([0.0, 0.0, 0.0, 2.0]))
    rig.robot.command_ee(target)
    position, orientation, q_nullspace = rig.controller.set_control.call_args.args
    np.testing.assert_allclose(position, [0.4, 0.1, 0.3])
    np.testing.assert_allclose(orientation, [0.0, 0.0, 0.0, 1.0])  # normalised, scalar last
    np.testing.assert_allclose(q_nullspace, Q0)


def test_command_joints_in_cartesian_mode_tracks_their_forward_kinematics(rig: Rig) -> None:
    rig.robot.connect()
    q = np.asarray(constants.JOINT_POSITION_START)
    rig.robot.command_joints(q)
    position, orientation, q_nullspace = rig.controller.set_control.call_args.args
    expected_position, expected_quat = fk_pose(q)
    np.testing.assert_allclose(position, expected_position, atol=1e-12)
    assert quat_angle(orientation, expected_quat) < 1e-9
    np.testing.assert_allclose(q_nullspace, q)


def test_joint_mode_takes_joints_directly_and_poses_through_ik(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Rig(monkeypatch, controller="joint_position", gripper=False)
    r.robot.connect()
    r.robot.read_state()
    q_target = Q0 + 0.05
    r.robot.command_joints(q_target)
    np.testing.assert_allclose(r.controller.set_control.call_args.args[0], q_target)

    position, quaternion = fk_pose(Q0 + np.array([0.02, -0.03, 0.01, 0.04, 0.0, -0.02, 0.0]))
    r.robot.command_ee(Pose(position=position, quaternion=quaternion))
    (q_ik,) = r.controller.set_control.call_args.args
    reached = panda_py.fk(q_ik)
    # panda-python's analytic IK and its fk agree to a fraction of a millimetre, not exactly.
    np.testing.assert_allclose(reached[:3, 3], position, atol=1e-3)
    np.testing.assert_allclose(q_ik[6], Q0[6])  # joint 7 kept where it was measured
    r.robot.close()


@pytest.mark.parametrize(
    "pose",
    [
        Pose(position=np.array([np.nan, 0.0, 0.3]), quaternion=np.array([1.0, 0, 0, 0])),  # non-finite
        Pose(position=np.array([0.4, 0.0, 0.3]), quaternion=np.zeros(4)),  # no rotation
        Pose(position=np.array([0.4, 0.0]), quaternion=np.array([1.0, 0, 0, 0])),  # wrong shape
    ],
)
def test_bad_targets_never_reach_the_controller(rig: Rig, pose: Pose) -> None:
    rig.robot.connect()
    calls = rig.controller.set_control.call_count
    with pytest.raises(DriverError):
        rig.robot.command_ee(pose)
    assert rig.controller.set_control.call_count == calls


def test_hold_targets_the_measured_pose(rig: Rig) -> None:
    rig.robot.connect()
    q_now = Q0 + 0.1
    rig.panda.get_state.return_value = make_state(q_now)
    rig.robot.hold()
    position, orientation, _ = rig.controller.set_control.call_args.args
    expected_position, expected_quat = fk_pose(q_now)
    np.testing.assert_allclose(position, expected_position, atol=1e-12)
    assert quat_angle(orientation, expected_quat) < 1e-9


# -- faults --------------------------------------------------------------------------------------


def test_reflex_is_reported_as_fault_and_latched_until_reset(rig: Rig) -> None:
    rig.robot.connect()
    message = 'libfranka: Move command aborted: motion aborted by reflex! ["cartesian_reflex"]'
    rig.panda.raise_error.side_effect = [RuntimeError(message), None, None, None]
    rig.panda.is_moving.return_value = False
    rig.panda.get_state.return_value = make_state(
        mode=libfranka.RobotMode.kReflex, errors=_Errors("cartesian_reflex")
    )

    state = rig.robot.read_state()
    assert state.fault is not None and "cartesian_reflex" in state.fault and IP in state.fault
    assert rig.robot.read_state().fault == state.fault  # latched, not re-derived
    with pytest.raises(DriverError, match="reset the fault"):
        rig.robot.command_ee(state.ee)
    sets = rig.controller.set_control.call_count
    rig.robot.hold()  # nothing to hold with: no call
    assert rig.controller.set_control.call_count == sets
    rig.panda.recover.assert_not_called()

    # explicit reset: recover, then a fresh controller holding the measured pose
    rig.panda.get_state.return_value = make_state()
    rig.panda.is_moving.return_value = True
    rig.robot.reset_fault()
    rig.panda.recover.assert_called_once_with()
    assert len(rig.cartesian.instances) == 2
    assert rig.panda.start_controller.call_count == 2
    assert rig.robot.read_state().fault is None
    rig.robot.command_ee(state.ee)


def test_controller_that_stops_silently_is_a_fault(rig: Rig) -> None:
    rig.robot.connect()
    rig.panda.is_moving.return_value = False
    assert "controller stopped" in rig.robot.read_state().fault


def test_reset_that_cannot_recover_keeps_the_fault(rig: Rig) -> None:
    rig.robot.connect()
    rig.panda.raise_error.side_effect = RuntimeError("libfranka: communication_constraints_violation")
    assert rig.robot.read_state().fault is not None
    rig.panda.recover.side_effect = RuntimeError("libfranka: Automatic error recovery failed")
    with pytest.raises(DriverError, match="could not recover"):
        rig.robot.reset_fault()
    rig.panda.raise_error.side_effect = None
    assert rig.robot.read_state().fault is not None


def test_emergency_stop_aborts_motion_and_gripper(rig: Rig) -> None:
    rig.robot.connect()
    rig.robot.emergency_stop()
    rig.panda.get_robot.return_value.stop.assert_called_once_with()
    rig.panda.stop_controller.assert_called_once_with()
    rig.gripper.stop.assert_called_once_with()
    assert "emergency stop" in rig.robot.read_state().fault


def test_stop_holds_then_ends_the_controller(rig: Rig) -> None:
    rig.robot.connect()
    sets = rig.controller.set_control.call_count
    rig.robot.stop()
    assert rig.controller.set_control.call_count == sets + 1
    rig.panda.stop_controller.assert_called_once_with()


# -- gripper -------------------------------------------------------------------------------------


def test_gripper_runs_in_its_own_thread_grasping_to_close_and_moving_to_open(rig: Rig) -> None:
    rig.robot.connect()
    gate = threading.Event()
    in_grasp = threading.Event()

    def slow_grasp(*args: Any, **kwargs: Any) -> bool:
        in_grasp.set()
        gate.wait(5.0)  # libfranka blocks until the fingers stop
        return True

    rig.gripper.grasp.side_effect = slow_grasp
    rig.robot.command_gripper(0.0)  # returns at once although the grasp blocks
    assert in_grasp.wait(2.0)
    rig.gripper.grasp.assert_called_once_with(0.0, 0.1, 20.0, 0.08, 0.08)
    rig.robot.read_state()  # the control tick is not blocked either
    rig.gripper.read_once.return_value.width = 0.0
    gate.set()
    poll_until(lambda: rig.robot.read_state().gripper == pytest.approx(0.0))

    rig.robot.command_gripper(0.01)  # inside the dead band: no new command
    rig.robot.command_gripper(1.0)
    poll_until(lambda: rig.gripper.move.called)
    rig.gripper.move.assert_called_once_with(pytest.approx(0.08), 0.1)


def test_gripper_failure_becomes_a_fault(rig: Rig) -> None:
    rig.robot.connect()
    rig.gripper.grasp.side_effect = RuntimeError("libfranka gripper: command failed")
    rig.robot.command_gripper(0.0)
    poll_until(lambda: rig.robot.read_state().fault is not None)
    assert "gripper: libfranka gripper: command failed" in rig.robot.read_state().fault


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"controler": "joint_position"}, "robot.options.controler"),  # typo
        ({"controller": "torque"}, "robot.options.controller"),
        ({"impedance": [200, 200, 200]}, "robot.options.impedance"),
        ({"impedance": [200, 200, 200, 10, 10, -1]}, "robot.options.impedance"),
        ({"gripper_speed": 1.0}, "robot.options.gripper_speed"),
        ({"gripper": "yes"}, "robot.options.gripper"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        FrankaRobot.from_config(RobotConfig(kind="franka", ip=IP, options=options))
    assert info.value.field == field
    section, _, key = field.rpartition(
        "."
    )  # 'robot.options.impedance is ...', 'robot.options: unknown key ...'
    assert str(info.value).startswith(section) and key in str(info.value)


def test_ip_is_required() -> None:
    with pytest.raises(ConfigError, match=r"robot\.ip"):
        FrankaRobot.from_config(RobotConfig(kind="franka"))


def test_reset_before_connect_recovers_an_arm_that_connect_refuses(rig: Rig) -> None:
    rig.panda.get_state.side_effect = [
        make_state(mode=libfranka.RobotMode.kReflex, errors=_Errors("joint_reflex")),  # connect
        make_state(),  # after recover(), checked by reset_fault
        make_state(),  # connect's check
        make_state(),  # the new controller's start pose
    ]
    with pytest.raises(DriverError, match="not ready"):
        rig.robot.connect()
    rig.robot.reset_fault()
    rig.panda.recover.assert_called_once_with()
    rig.panda.start_controller.assert_called_once_with(rig.controller)
    rig.panda_factory.assert_called_once()  # one connection throughout


def test_a_sample_that_does_not_advance_keeps_its_first_read_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """panda-python's loop stalled: get_state() returns the same sample, which then ages."""
    rig = Rig(monkeypatch)
    robot = rig.robot
    robot.connect()
    rig.panda.get_state.return_value = make_state()
    first = robot.read_state().time_s
    poll_until(lambda: time.monotonic() > first + 0.02)
    assert robot.read_state().time_s == first  # the same sample: as old as when first seen
    rig.panda.get_state.return_value = make_state()  # the loop moves again
    later = time.monotonic()
    assert robot.read_state().time_s >= later

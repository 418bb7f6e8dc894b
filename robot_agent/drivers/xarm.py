"""UFACTORY xArm 5/6/7 through the xArm Python SDK (``xarm.wrapper.XArmAPI``).

Two ways to stream targets, chosen by ``robot.options.mode``:

- ``"servo"`` (default, controller mode 1): ``set_servo_cartesian`` / ``set_servo_angle_j`` at the
  agent's control rate. The controller executes only the latest command, with no interpolation
  and no speed limit of its own (``speed``/``mvacc`` are "reserved" in the SDK), so a large jump is
  executed as fast as the motors allow. UFACTORY's own examples send at 100 Hz with 1 mm steps;
  this driver clamps every command to ``max_step_m`` / ``max_step_rad`` from the previous one as a
  last line of defence behind the safety shield, and is meant for 100-250 Hz.
- ``"online"`` (mode 7, firmware >= 1.13): ``set_position(..., wait=False)``; the controller
  re-plans a speed- and acceleration-limited move to each new target. Smoother at low rates,
  Cartesian targets only.

Units: the SDK is used in millimetres and degrees (``is_radian=False`` on every call that has
the argument); the conversions to and from metres, radians and (x, y, z, w) quaternions are the
``_to_wire``/``_from_wire`` functions at the bottom and nowhere else.

The controller's error and warning codes are read every tick. An error code sets
``RobotState.fault`` with the SDK's own description (the agent latches the e-stop); a warning is
logged when it changes. ``clean_error`` is only called from ``reset_fault()``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from typing_extensions import override

from robot_agent.config import RobotConfig
from robot_agent.drivers._blocking import call_with_timeout
from robot_agent.drivers._options import build_options, choice, in_range
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import ConfigError, DriverError, MissingExtra
from safety.arms import XARM, XARM7, ArmLimits
from safety.config_loader import check_types
from safety.rotations import quat_angle, quat_normalize, quat_slerp, quat_to_rpy, rpy_to_quat
from safety.types import Pose

try:
    # The SDK prints "SDK_VERSION: ..." to stdout on import; the CLI's output is one line on error.
    with contextlib.redirect_stdout(io.StringIO()):
        from xarm.core.config.x_code import ControllerError, ControllerWarn
        from xarm.core.config.x_config import XCONF
        from xarm.wrapper import XArmAPI
        from xarm.x3.code import APIState
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("the xArm driver needs xarm-python-sdk: pip install 'vla-deploy[xarm]'") from exc

__all__ = ["XArmOptions", "XArmRobot"]

logger = logging.getLogger(__name__)

MODES = {"servo": 1, "online": 7}
_MODE_NAMES = {1: "servo motion mode (1)", 7: "Cartesian online trajectory planning mode (7)"}
# Return codes that come with valid data: the call worked, the controller merely has an error or a
# warning set (read separately, every tick).
_DATA_OK = {APIState.NORMAL, APIState.HAS_ERROR, APIState.HAS_WARN}
_API_NAMES = {value: name for name, value in vars(APIState).items() if isinstance(value, int)}
_STATE_STOPPED = 4
GRIPPER_READ_EVERY = 10  # ticks: the gripper position costs a round trip; 10 Hz is plenty


@dataclass(frozen=True)
class XArmOptions:
    """The ``[robot.options]`` keys of an xArm, checked when built (:func:`build_options`).

    Example::

        [robot.options]
        mode = "servo"          # or "online" (mode 7)
        max_step_m = 0.002      # per command: 0.2 m/s at 100 Hz
        gripper = true

    Raises :class:`ConfigError` naming ``robot.options.<key>`` for a wrong type or a value out of range.
    """

    mode: str = "servo"
    max_step_m: float = 0.002
    max_step_rad: float = 0.02
    max_joint_step_rad: float = 0.02
    speed_m_s: float = 0.1  # online mode
    acc_m_s2: float = 1.0
    gripper: bool = True
    gripper_speed: float = 3000  # r/min
    gripper_deadband: float = 0.02
    collision_sensitivity: int | None = None  # 0..5; None: as the arm is set

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="robot.options")
        choice("mode", self.mode, tuple(MODES))
        in_range("max_step_m", self.max_step_m, low=1e-5, high=0.01)
        in_range("max_step_rad", self.max_step_rad, low=1e-5, high=0.1)
        in_range("max_joint_step_rad", self.max_joint_step_rad, low=1e-5, high=0.1)
        in_range("speed_m_s", self.speed_m_s, low=0.001, high=1.0)
        in_range("acc_m_s2", self.acc_m_s2, low=0.01, high=50.0)
        in_range("gripper_speed", self.gripper_speed, low=1000, high=5000)
        in_range("gripper_deadband", self.gripper_deadband, low=0.0, high=1.0)
        in_range("collision_sensitivity", self.collision_sensitivity, low=0, high=5)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> XArmOptions:
        """Build from the ``[robot.options]`` table; an unknown key is refused by name."""
        return build_options(cls, options)


class XArmRobot(Robot):
    """An xArm behind ``XArmAPI``. Built with :meth:`from_config`."""

    # The xArm 7's documented table until connect reads the connected model (see _set_limits).
    joint_limits = (np.array(XARM7.joint_min), np.array(XARM7.joint_max))
    home_joints = np.array(XARM7.home_joints)
    arm_limits: ArmLimits | None = XARM7

    def __init__(
        self,
        ip: str,
        options: XArmOptions,
        *,
        connect_timeout_s: float = 5.0,
        arm_factory: Callable[..., Any] | None = None,
    ) -> None:
        # The factory is the transport: XArmAPI by default, an autospec of it in the tests.
        self.ip = ip
        self.options = options
        self.connect_timeout_s = connect_timeout_s
        self._arm_factory = arm_factory or XArmAPI
        self._arm: Any = None
        self._axis = 7
        self._fault: str | None = None
        self._warn = 0
        self._last_pose: Pose | None = None  # last commanded (or measured, after a hold)
        self._last_joints: np.ndarray | None = None
        self._last_gripper_request: float | None = None
        self._gripper_opening = 1.0
        self._ticks = 0
        self.clamped_commands = 0

    @override
    @classmethod
    def from_config(cls, config: RobotConfig) -> XArmRobot:
        if not config.ip:
            raise ConfigError("robot.ip is required for an xArm (the control box address)", field="robot.ip")
        return cls(
            config.ip, XArmOptions.from_mapping(config.options), connect_timeout_s=config.connect_timeout_s
        )

    # -- lifecycle -------------------------------------------------------------------------------

    @override
    def connect(self) -> None:
        self._open()
        error, warn = self._err_warn()
        if error:
            raise DriverError(
                f"the xArm at {self.ip} reports {_describe_error(error)}; fix the cause, clear it in "
                "UFACTORY Studio (or with an explicit reset_fault()) and start again"
            )
        self._note_warn(warn)
        self._prepare()
        logger.info("xArm%d at %s ready in %s.", self._axis, self.ip, _MODE_NAMES[MODES[self.options.mode]])

    def _open(self) -> None:
        """Connect to the control box (bounded) and read the model; command nothing."""
        if self._arm is not None:
            return
        logger.info("Connecting to the xArm at %s.", self.ip)

        def open_arm() -> Any:
            arm = self._arm_factory(self.ip, is_radian=False, do_not_open=True)
            try:
                arm.connect()
            except Exception:
                _disconnect(arm)  # the SDK leaves the failed socket open otherwise
                raise
            return arm

        try:
            arm = call_with_timeout(
                open_arm, self.connect_timeout_s, name=f"connect xArm {self.ip}", on_late=_disconnect
            )
        except TimeoutError:
            raise DriverError(
                f"no xArm at {self.ip} after {self.connect_timeout_s:g} s: is the address right and the "
                "control box on?"
            ) from None
        except Exception as exc:  # the SDK raises bare Exception('connect socket failed')
            raise DriverError(f"no xArm at {self.ip}: {exc}") from exc
        if not arm.connected:
            raise DriverError(f"no xArm at {self.ip}: the SDK reports no connection")
        self._arm = arm
        self._axis = int(arm.axis)
        self._set_limits(arm)

    def _prepare(self) -> None:
        """Enable the motors, enter the streaming mode, set up the gripper, track the measured pose."""
        self._call("motion_enable", enable=True)
        self._call("clean_warn")
        if self.options.collision_sensitivity is not None:
            self._call("set_collision_sensitivity", self.options.collision_sensitivity)
        self._enter_mode()
        if self.options.gripper:
            self._call("set_gripper_mode", 0)
            self._call("set_gripper_enable", True)
            self._call("set_gripper_speed", self.options.gripper_speed)
            self._read_gripper()
        self._sync_to_measured()

    def _set_limits(self, arm: Any) -> None:
        """The connected model's limits: the xArm 5/6/7 table of ``safety.arms`` for its number of
        joints; the joint ranges from the SDK's table for its exact device type when it has one
        (variants such as the xArm 6 type 9 or 12 differ from the standard model)."""
        self.arm_limits = XARM.get(self._axis)
        limits = XCONF.Robot.JOINT_LIMITS.get(self._axis, {}).get(arm.device_type)
        if limits is None and self.arm_limits is not None:
            limits = list(zip(self.arm_limits.joint_min, self.arm_limits.joint_max, strict=True))
        if limits is None:
            logger.warning(
                "No joint limit table for xArm%d type %s; using +-2 pi.", self._axis, arm.device_type
            )
            limits = [(-2 * math.pi, 2 * math.pi)] * self._axis
        self.joint_limits = (np.array([lo for lo, _ in limits]), np.array([hi for _, hi in limits]))
        self.home_joints = np.zeros(self._axis)

    def _enter_mode(self) -> None:
        mode = MODES[self.options.mode]
        self._call("set_mode", mode)
        self._call("set_state", 0)
        # The controller applies a mode change asynchronously; wait for the report to show it.
        deadline = time.monotonic() + self.connect_timeout_s
        while self._arm.mode != mode:
            if time.monotonic() > deadline:
                raise DriverError(
                    f"the xArm at {self.ip} did not enter {_MODE_NAMES[mode]} within "
                    f"{self.connect_timeout_s:g} s (mode is {self._arm.mode}); mode 7 needs firmware >= 1.13"
                )
            time.sleep(0.01)

    @override
    def stop(self) -> None:
        """Controlled stop: hold, then leave streaming for position mode (0), which idles safely."""
        if self._arm is None:
            return
        if self._fault is None:
            self.hold()
        self._call("set_mode", 0)
        self._call("set_state", 0)

    @override
    def emergency_stop(self) -> None:
        """Stop state (4): the controller stops the motion and drops every queued command."""
        if self._fault is None:
            self._fault = f"xArm at {self.ip}: emergency stop"
        if self._arm is not None:
            self._arm.emergency_stop()

    @override
    def reset_fault(self) -> None:
        """Operator reset: clear the controller's error and warning, re-enable, re-enter the mode.

        Also works before :meth:`connect` (which refuses an arm in error): it connects first, so a
        reset command can clear an arm the agent would not start with.
        """
        self._open()
        self._call("clean_error")
        self._call("clean_warn")
        if self.options.gripper:
            self._call("clean_gripper_error")
        self._call("motion_enable", enable=True)
        error, warn = self._err_warn()
        if error:
            raise DriverError(
                f"the xArm at {self.ip} still reports {_describe_error(error)} after clean_error"
            )
        self._fault = None
        self._warn = warn
        self._prepare()
        logger.info("xArm at %s reset; holding its pose.", self.ip)

    @override
    def close(self) -> None:
        if self._arm is not None:
            try:
                self._arm.disconnect()
            finally:
                self._arm = None

    # -- state -----------------------------------------------------------------------------------

    @override
    def read_state(self) -> RobotState:
        arm = self._require_arm()
        code, (positions, velocities, _efforts) = arm.get_joint_states(is_radian=False)
        self._check_data(code, "get_joint_states")
        code, wire_pose = arm.get_position(is_radian=False)
        self._check_data(code, "get_position")
        now = time.monotonic()
        error, warn = self._err_warn()
        if self._fault is None:
            if error:
                self._latch(_describe_error(error))
            elif not arm.connected:
                self._latch("the connection was lost")
            elif arm.state == _STATE_STOPPED:
                self._latch("the controller stopped (state 4: e-stop, collision or an external stop)")
        self._note_warn(warn)
        self._ticks += 1
        if self.options.gripper and self._ticks % GRIPPER_READ_EVERY == 0:
            self._read_gripper()
        return RobotState(
            time_s=now,
            joint_positions=_joints_from_wire(positions[: self._axis]),
            joint_velocities=_joints_from_wire(velocities[: self._axis]),
            ee=_pose_from_wire(wire_pose),
            gripper=self._gripper_opening,
            fault=self._fault,
        )

    def _err_warn(self) -> tuple[int, int]:
        code, (error, warn) = self._arm.get_err_warn_code()
        if code not in _DATA_OK:
            raise DriverError(f"reading the xArm error codes at {self.ip} failed: {_describe_api(code)}")
        return int(error), int(warn)

    def _note_warn(self, warn: int) -> None:
        if warn != self._warn:
            if warn:
                logger.warning("xArm at %s warns: %s", self.ip, _describe_warn(warn))
            else:
                logger.info("xArm at %s: warning cleared.", self.ip)
            self._warn = warn

    def _latch(self, reason: str) -> None:
        self._fault = f"xArm at {self.ip}: {reason}"
        logger.error("%s", self._fault)

    def _read_gripper(self) -> None:
        code, position = self._arm.get_gripper_position()
        if code == APIState.NORMAL and position is not None:
            self._gripper_opening = _gripper_from_wire(position)

    # -- commands --------------------------------------------------------------------------------

    @override
    def command_ee(self, pose: Pose) -> None:
        self._require_ready()
        target = _checked_pose(pose)
        if self.options.mode == "online":
            x, y, z, roll, pitch, yaw = _pose_to_wire(target)
            code = self._arm.set_position(
                x=x,
                y=y,
                z=z,
                roll=roll,
                pitch=pitch,
                yaw=yaw,
                speed=self.options.speed_m_s * 1000.0,
                mvacc=self.options.acc_m_s2 * 1000.0,
                is_radian=False,
                wait=False,
            )
            self._check_command(code, "set_position")
        else:
            target = self._clamp_pose(target)
            code = self._arm.set_servo_cartesian(_pose_to_wire(target), is_radian=False)
            self._check_command(code, "set_servo_cartesian")
        self._last_pose = target

    @override
    def command_joints(self, joints: np.ndarray) -> None:
        self._require_ready()
        if self.options.mode != "servo":
            raise DriverError(
                "joint targets need robot.options.mode = 'servo'; online mode (7) takes Cartesian targets"
            )
        q = np.asarray(joints, dtype=float)
        if q.shape != (self._axis,) or not np.all(np.isfinite(q)):
            raise DriverError(
                f"an xArm{self._axis} joint target must be {self._axis} finite numbers, got {q.tolist()!r}"
            )
        if self._last_joints is not None:
            step = np.clip(
                q - self._last_joints, -self.options.max_joint_step_rad, self.options.max_joint_step_rad
            )
            if not np.allclose(step, q - self._last_joints):
                self._count_clamp()
            q = self._last_joints + step
        code = self._arm.set_servo_angle_j(_joints_to_wire(q), is_radian=False)
        self._check_command(code, "set_servo_angle_j")
        self._last_joints = q

    @override
    def command_gripper(self, opening: float) -> None:
        if not self.options.gripper:
            return
        self._require_ready()
        if not math.isfinite(opening):
            raise DriverError(f"gripper opening must be finite, got {opening!r}")
        opening = min(1.0, max(0.0, float(opening)))
        if (
            self._last_gripper_request is not None
            and abs(opening - self._last_gripper_request) < self.options.gripper_deadband
        ):
            return
        code = self._arm.set_gripper_position(
            _gripper_to_wire(opening), wait=False, speed=self.options.gripper_speed
        )
        self._check_command(code, "set_gripper_position")
        self._last_gripper_request = opening

    @override
    def hold(self) -> None:
        """Command the measured pose, so the servo target stops where the arm is."""
        if self._fault is not None or self._arm is None:
            return  # the controller has stopped the arm; a command would only be refused
        measured = self._sync_to_measured()
        if self.options.mode == "online":
            x, y, z, roll, pitch, yaw = _pose_to_wire(measured)
            code = self._arm.set_position(
                x=x, y=y, z=z, roll=roll, pitch=pitch, yaw=yaw,
                speed=self.options.speed_m_s * 1000.0, mvacc=self.options.acc_m_s2 * 1000.0,
                is_radian=False, wait=False,
            )  # fmt: skip
            self._check_command(code, "set_position")
        else:
            code = self._arm.set_servo_cartesian(_pose_to_wire(measured), is_radian=False)
            self._check_command(code, "set_servo_cartesian")

    def _sync_to_measured(self) -> Pose:
        code, wire_pose = self._arm.get_position(is_radian=False)
        self._check_data(code, "get_position")
        code, angles = self._arm.get_servo_angle(is_radian=False)
        self._check_data(code, "get_servo_angle")
        self._last_pose = _pose_from_wire(wire_pose)
        self._last_joints = _joints_from_wire(angles[: self._axis])
        return self._last_pose

    def _clamp_pose(self, target: Pose) -> Pose:
        """Limit the step from the previous command: servo mode executes any jump at full speed."""
        last = self._last_pose
        if last is None:
            return target
        delta = target.position - last.position
        distance = float(np.linalg.norm(delta))
        angle = quat_angle(last.quaternion, target.quaternion)
        if distance <= self.options.max_step_m and angle <= self.options.max_step_rad:
            return target
        self._count_clamp()
        position = (
            last.position + delta * min(1.0, self.options.max_step_m / distance)
            if distance
            else target.position
        )
        quaternion = (
            quat_slerp(last.quaternion, target.quaternion, min(1.0, self.options.max_step_rad / angle))
            if angle > self.options.max_step_rad
            else target.quaternion
        )
        return Pose(position=position, quaternion=quaternion)

    def _count_clamp(self) -> None:
        if self.clamped_commands == 0:
            logger.warning(
                "xArm target stepped more than %.4g m / %.4g rad per command; clamping (servo mode "
                "executes any jump at full speed). Check the control rate and the shield's limits.",
                self.options.max_step_m,
                self.options.max_step_rad,
            )
        self.clamped_commands += 1

    # -- return codes ----------------------------------------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        code = getattr(self._require_arm(), method)(*args, **kwargs)
        if code not in (APIState.NORMAL, APIState.HAS_WARN):
            raise DriverError(f"xArm at {self.ip}: {method} failed: {_describe_api(code)}")

    def _check_data(self, code: int, method: str) -> None:
        if code not in _DATA_OK:
            raise DriverError(f"xArm at {self.ip}: {method} failed: {_describe_api(code)}")

    def _check_command(self, code: int, method: str) -> None:
        if code in (APIState.NORMAL, APIState.HAS_WARN):
            return
        if code == APIState.HAS_ERROR:
            error, _ = self._err_warn()
            self._latch(_describe_error(error) if error else "the controller refused the command (error set)")
            raise DriverError(f"{self._fault}; reset the fault before commanding")
        raise DriverError(f"xArm at {self.ip}: {method} failed: {_describe_api(code)}")

    def _require_arm(self) -> Any:
        if self._arm is None:
            raise DriverError(f"the xArm at {self.ip} is not connected")
        return self._arm

    def _require_ready(self) -> None:
        self._require_arm()
        if self._fault is not None:
            raise DriverError(f"{self._fault}; reset the fault before commanding")


# -- messages from the SDK's own code tables -----------------------------------------------------


def _describe_error(code: int) -> str:
    info = ControllerError(code)
    description = info.description["en"]
    return f"error {code}: {info.title['en']}" + (f" ({description})" if description else "")


def _describe_warn(code: int) -> str:
    return f"warning {code}: {ControllerWarn(code).title['en']}"


def _describe_api(code: int) -> str:
    return f"API code {code} ({_API_NAMES.get(code, 'unknown')})"


def _disconnect(arm: Any) -> None:
    try:
        arm.disconnect()
    except Exception:  # closing what never opened: nothing to add to the original error
        logger.debug("xArm disconnect failed.", exc_info=True)


# -- units: the one place where mm and degrees meet metres, radians and quaternions -------------

MM_PER_M = 1000.0
GRIPPER_OPEN_WIRE = 850.0  # xArm Gripper position units: 850 = fully open, 0 = closed


def _pose_to_wire(pose: Pose) -> list[float]:
    """[x, y, z] metres + (x, y, z, w) -> [x, y, z] mm + roll, pitch, yaw degrees (R = Rz Ry Rx)."""
    rpy = np.degrees(quat_to_rpy(pose.quaternion))
    return [*(np.asarray(pose.position, dtype=float) * MM_PER_M).tolist(), *rpy.tolist()]


def _pose_from_wire(values: Any) -> Pose:
    v = np.asarray(values, dtype=float)
    return Pose(position=v[:3] / MM_PER_M, quaternion=rpy_to_quat(np.radians(v[3:6])))


def _joints_to_wire(q: np.ndarray) -> list[float]:
    return [float(v) for v in np.degrees(np.asarray(q, dtype=float))]


def _joints_from_wire(values: Any) -> np.ndarray:
    radians: np.ndarray = np.radians(np.asarray(values, dtype=float))
    return radians


def _gripper_to_wire(opening: float) -> float:
    return opening * GRIPPER_OPEN_WIRE


def _gripper_from_wire(position: float) -> float:
    return min(1.0, max(0.0, float(position) / GRIPPER_OPEN_WIRE))


def _checked_pose(pose: Pose) -> Pose:
    position = np.asarray(pose.position, dtype=float)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise DriverError(f"an xArm target position must be 3 finite numbers, got {position.tolist()!r}")
    try:
        quaternion = quat_normalize(np.asarray(pose.quaternion, dtype=float))
    except ValueError as exc:
        raise DriverError(f"an xArm target orientation is invalid: {exc}") from exc
    return Pose(position=position, quaternion=quaternion)

"""Franka Emika Panda / Franka Research 3 through panda-python (``panda_py``).

libfranka runs its own 1 kHz torque loop in a thread that panda-python owns; this driver starts
one controller there (Cartesian impedance by default, joint position by option) and feeds it a new
target with ``set_control`` at the agent's control rate. Nothing here blocks for long: reads copy
the state the 1 kHz loop last stored, and the gripper, whose libfranka calls block until the
fingers stop, runs in its own thread.

A reflex or any control-loop error stops panda-python's loop; the driver then reports it in
``RobotState.fault`` (the agent latches the e-stop) and refuses commands. ``recover()`` is only
called from ``reset_fault()``, an explicit operator action. panda-python's ``start_controller``
recovers on its own, so a controller is never started while the robot reports an error.

Supported: panda-python >= 1.0.0 (any of its libfranka builds). Older releases segfault when a
``move_to_*`` trajectory fails on Python 3.9-3.11 (JeanElsner/panda-py#40) and ignore the
nullspace target of ``CartesianImpedance.set_control``; this driver never calls ``move_to_*``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from typing_extensions import override

from robot_agent.config import RobotConfig
from robot_agent.drivers._blocking import call_with_timeout
from robot_agent.drivers._options import build_options, choice, in_range, vector
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import ConfigError, DriverError, MissingExtra
from safety.arms import PANDA
from safety.config_loader import check_types
from safety.rotations import matrix_to_quat, quat_normalize
from safety.types import Pose

try:
    import panda_py
    from panda_py import controllers, libfranka
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("the Franka driver needs panda-python: pip install 'vla-deploy[franka]'") from exc

__all__ = ["FrankaOptions", "FrankaRobot"]

logger = logging.getLogger(__name__)

MIN_PANDA_PY = (1, 0, 0)
CONTROLLERS = ("cartesian_impedance", "joint_position")
# Robot modes in which panda-python's loop cannot run; start_controller would silently recover.
_FAULT_MODES = {
    libfranka.RobotMode.kReflex: "the robot is in reflex mode",
    libfranka.RobotMode.kUserStopped: "the user stop (external activation device) is pressed",
    libfranka.RobotMode.kOther: "the robot is not ready (brakes locked or FCI not active in Desk)",
    libfranka.RobotMode.kGuiding: "the robot is being guided by hand",
}


@dataclass(frozen=True)
class FrankaOptions:
    """The ``[robot.options]`` keys of a Franka, checked when built (:func:`build_options`).

    Example::

        [robot.options]
        controller = "cartesian_impedance"     # or "joint_position"
        impedance = [200, 200, 200, 10, 10, 10]  # N/m, N m/rad: soft, for a first run
        gripper = true

    Raises :class:`ConfigError` naming ``robot.options.<key>`` for a wrong type or a value out of range.
    """

    controller: str = "cartesian_impedance"
    impedance: tuple[float, ...] | None = None  # 6 values, N/m and N m/rad; None: panda-python's
    damping_ratio: float = 1.0
    nullspace_stiffness: float = 0.5
    filter_coeff: float = 1.0
    joint_stiffness: tuple[float, ...] | None = None  # 7 values (joint_position controller)
    joint_damping: tuple[float, ...] | None = None  # 7 values
    gripper: bool = True
    gripper_speed: float = 0.1  # m/s
    # N; > 0 closes with grasp() so the fingers squeeze what they hold, 0 closes with move().
    gripper_force: float = 20.0
    gripper_deadband: float = 0.05
    realtime: bool = False

    def __post_init__(self) -> None:
        check_types(self, ConfigError, section="robot.options")
        choice("controller", self.controller, CONTROLLERS)
        vector("impedance", self.impedance, 6, positive=True)
        in_range("damping_ratio", self.damping_ratio, low=0.0)
        in_range("nullspace_stiffness", self.nullspace_stiffness, low=0.0)
        in_range("filter_coeff", self.filter_coeff, low=0.0, high=1.0)
        vector("joint_stiffness", self.joint_stiffness, 7, positive=True)
        vector("joint_damping", self.joint_damping, 7, positive=True)
        in_range("gripper_speed", self.gripper_speed, low=0.0, high=0.2)
        in_range("gripper_force", self.gripper_force, low=0.0, high=70.0)
        in_range("gripper_deadband", self.gripper_deadband, low=0.0, high=1.0)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> FrankaOptions:
        """Build from the ``[robot.options]`` table; an unknown key is refused by name."""
        return build_options(cls, options)


class FrankaRobot(Robot):
    """A Franka arm behind panda-python. Built with :meth:`from_config`."""

    # The Panda's documented table until connect reads the envelope of the arm actually there.
    joint_limits = (np.array(PANDA.joint_min), np.array(PANDA.joint_max))
    home_joints = np.array(PANDA.home_joints)
    arm_limits = PANDA

    def __init__(
        self,
        ip: str,
        options: FrankaOptions,
        *,
        connect_timeout_s: float = 5.0,
        panda_factory: Callable[..., Any] | None = None,
        gripper_factory: Callable[[str], Any] | None = None,
    ) -> None:
        # The factories are the transport: panda_py.Panda and libfranka.Gripper by default, an
        # autospec of them in the tests.
        self.ip = ip
        self.options = options
        self.connect_timeout_s = connect_timeout_s
        self._panda_factory = panda_factory or panda_py.Panda
        self._gripper_factory = gripper_factory or libfranka.Gripper
        self._panda: Any = None
        self._controller: Any = None
        self._q_nullspace: np.ndarray = self.home_joints.copy()
        self._q_measured: np.ndarray = self.home_joints.copy()
        self._robot_time: float | None = None  # libfranka RobotState.time of the last new sample, s
        self._sample_seen_s = 0.0  # time.monotonic() when that sample was first read
        self._fault: str | None = None
        self._gripper: _GripperWorker | None = None

    @override
    @classmethod
    def from_config(cls, config: RobotConfig) -> FrankaRobot:
        if not config.ip:
            raise ConfigError(
                "robot.ip is required for a Franka (the FCI address, e.g. 172.16.0.2)", field="robot.ip"
            )
        return cls(
            config.ip, FrankaOptions.from_mapping(config.options), connect_timeout_s=config.connect_timeout_s
        )

    # -- lifecycle -------------------------------------------------------------------------------

    @override
    def connect(self) -> None:
        self._open()
        problem = _state_problem(self._panda.get_state())
        if problem is not None:
            # start_controller would recover() on its own: an error must be cleared on purpose.
            raise DriverError(
                f"the Franka at {self.ip} is not ready: {problem}; clear it in Desk or on the pilot "
                "(or with an explicit reset_fault()) and start again"
            )
        if self.options.gripper and self._gripper is None:
            gripper = self._bounded(lambda: self._gripper_factory(self.ip), "Franka Hand", None)
            self._gripper = _GripperWorker(gripper, self.options)
            self._gripper.start()
        self._start_controller()
        logger.info("Franka at %s ready (%s controller).", self.ip, self.options.controller)

    def _open(self) -> None:
        """Connect to the control unit (bounded) and read the arm's envelope; start nothing."""
        if self._panda is not None:
            return
        version = _version_tuple(getattr(panda_py, "__version__", "0"))
        if version < MIN_PANDA_PY:
            raise DriverError(
                f"panda-python {panda_py.__version__} is too old for the Franka driver; "
                f"install >= {'.'.join(map(str, MIN_PANDA_PY))} (older releases crash in move_to_* "
                "and ignore the nullspace target)"
            )
        realtime = (
            libfranka.RealtimeConfig.kEnforce if self.options.realtime else libfranka.RealtimeConfig.kIgnore
        )
        logger.info("Connecting to the Franka at %s.", self.ip)
        self._panda = self._bounded(
            lambda: self._panda_factory(self.ip, realtime_config=realtime), "Franka", None
        )
        # The envelope of the arm actually connected: the FER and the FR3 differ.
        self.joint_limits = (
            np.asarray(self._panda.get_joint_limits_lower(), dtype=float),
            np.asarray(self._panda.get_joint_limits_upper(), dtype=float),
        )

    def _bounded(self, fn: Callable[[], Any], what: str, on_late: Callable[[Any], Any] | None) -> Any:
        try:
            return call_with_timeout(
                fn, self.connect_timeout_s, name=f"connect {what} {self.ip}", on_late=on_late
            )
        except TimeoutError:
            raise DriverError(
                f"no {what} at {self.ip} after {self.connect_timeout_s:g} s: is the address right, "
                "the robot powered and FCI enabled in Desk?"
            ) from None
        except RuntimeError as exc:  # libfranka's NetworkException, IncompatibleVersionError, ...
            raise DriverError(f"no {what} at {self.ip}: {exc}") from exc

    def _start_controller(self) -> None:
        opts = self.options
        controller: Any
        if opts.controller == "joint_position":
            kwargs: dict[str, Any] = {"filter_coeff": opts.filter_coeff}
            if opts.joint_stiffness is not None:
                kwargs["stiffness"] = np.asarray(opts.joint_stiffness)
            if opts.joint_damping is not None:
                kwargs["damping"] = np.asarray(opts.joint_damping)
            controller = controllers.JointPosition(**kwargs)
        else:
            kwargs = {
                "damping_ratio": opts.damping_ratio,
                "nullspace_stiffness": opts.nullspace_stiffness,
                "filter_coeff": opts.filter_coeff,
            }
            if opts.impedance is not None:
                kwargs["impedance"] = np.diag(opts.impedance)
            controller = controllers.CartesianImpedance(**kwargs)
        state = self._panda.get_state()
        # Keep the elbow where it is: panda-python's default nullspace target is its start pose.
        self._q_nullspace = np.asarray(state.q, dtype=float)
        self._panda.start_controller(controller)
        self._controller = controller
        # Both controllers start by holding the pose they find; say so explicitly all the same.
        self._hold_measured(state)

    @override
    def stop(self) -> None:
        """Controlled stop: hold where the arm is, then end the control loop (the arm brakes)."""
        if self._panda is None:
            return
        if self._controller is not None and self._fault is None:
            self.hold()
        self._stop_controller()

    def _stop_controller(self) -> None:
        if self._controller is None:
            return
        self._controller = None
        try:
            self._panda.stop_controller()
        except RuntimeError as exc:
            raise DriverError(f"stopping the Franka controller at {self.ip} failed: {exc}") from exc

    @override
    def emergency_stop(self) -> None:
        """Abort the motion now (libfranka ``Robot.stop``), then end the loop and the gripper."""
        if self._fault is None:
            self._fault = f"Franka at {self.ip}: emergency stop"
        if self._panda is None:
            return
        try:
            self._panda.get_robot().stop()
        except RuntimeError:
            logger.warning("libfranka stop() at %s failed; ending the controller.", self.ip, exc_info=True)
        finally:
            try:
                self._stop_controller()
            finally:
                if self._gripper is not None:
                    self._gripper.halt()

    @override
    def reset_fault(self) -> None:
        """Operator reset: ``recover()`` the arm, clear the latched fault, hold the current pose.

        Also works before :meth:`connect` (which refuses an arm in error): it connects first, so a
        reset command can clear an arm the agent would not start with.
        """
        self._open()
        self._stop_controller()
        try:
            self._panda.recover()
        except RuntimeError as exc:
            raise DriverError(f"the Franka at {self.ip} could not recover: {exc}") from exc
        with contextlib.suppress(RuntimeError):
            self._panda.raise_error()  # what ended the old loop: history now, drop it
        problem = _state_problem(self._panda.get_state())
        if problem is not None:
            raise DriverError(f"the Franka at {self.ip} is still not ready after recovery: {problem}")
        self._fault = None
        if self._gripper is not None:
            self._gripper.clear_fault()
        self.connect()
        logger.info("Franka at %s recovered; holding its pose.", self.ip)

    @override
    def close(self) -> None:
        try:
            if self._panda is not None and self._controller is not None:
                self._stop_controller()
        finally:
            if self._gripper is not None:
                self._gripper.close()
                self._gripper = None
            self._panda = None

    # -- state -----------------------------------------------------------------------------------

    @override
    def read_state(self) -> RobotState:
        panda = self._require_panda()
        state = panda.get_state()
        now = time.monotonic()
        # get_state() returns the newest sample of panda-python's 1 kHz loop; if that loop stalls it
        # keeps returning the same one. The sample is as old as when it was first seen, so a state
        # whose robot time stands still ages, and the agent holds on it (stale_observation).
        robot_time = float(state.time.to_sec())
        if robot_time != self._robot_time:
            self._robot_time = robot_time
            self._sample_seen_s = now
        self._check_fault(state)
        ee = _pose_from_o_t_ee(state.O_T_EE)
        self._q_measured = np.asarray(state.q, dtype=float)
        gripper = self._gripper.opening if self._gripper is not None else 1.0
        return RobotState(
            time_s=self._sample_seen_s,
            joint_positions=np.asarray(state.q, dtype=float),
            joint_velocities=np.asarray(state.dq, dtype=float),
            ee=ee,
            gripper=gripper,
            external_torques=np.asarray(state.tau_ext_hat_filtered, dtype=float),
            fault=self._fault,
            external_wrench=np.asarray(state.O_F_ext_hat_K, dtype=float),
        )

    def _check_fault(self, state: Any) -> None:
        if self._fault is not None:
            return
        try:
            self._panda.raise_error()  # what ended panda-python's control loop, once
        except RuntimeError as exc:
            self._latch(f"control loop stopped: {exc}")
            return
        problem = _state_problem(state)
        if problem is not None:
            self._latch(problem)
        elif self._controller is not None and not self._panda.is_moving():
            self._latch("the controller stopped without an error")
        elif self._gripper is not None and self._gripper.fault is not None:
            self._latch(f"gripper: {self._gripper.fault}")

    def _latch(self, reason: str) -> None:
        self._fault = f"Franka at {self.ip}: {reason}"
        self._controller = None  # the loop is gone; never feed a dead controller
        logger.error("%s", self._fault)

    # -- commands --------------------------------------------------------------------------------

    @override
    def command_ee(self, pose: Pose) -> None:
        controller = self._require_controller()
        position, quaternion = _checked_pose(pose)
        if self.options.controller == "joint_position":
            # Analytic IK in the measured arm configuration, keeping joint 7 where it is.
            q_ref = self._q_measured
            q = np.asarray(panda_py.ik(position, quaternion, q_ref, float(q_ref[6])), dtype=float)
            if not np.all(np.isfinite(q)):
                raise DriverError(
                    f"no inverse kinematics solution for the Franka target {np.round(position, 4).tolist()} "
                    f"{np.round(quaternion, 4).tolist()}"
                )
            controller.set_control(q)
        else:
            controller.set_control(position, quaternion, self._q_nullspace)

    def inverse_kinematics(self, pose: Pose, seed: np.ndarray) -> np.ndarray | None:
        """panda-python's analytic IK near ``seed`` (joint 7 kept at the seed's); None when it
        finds no solution. Pure (no robot I/O): the safety shield calls it every tick."""
        position, quaternion = _checked_pose(pose)
        q_ref = np.asarray(seed, dtype=float)
        q = np.asarray(panda_py.ik(position, quaternion, q_ref, float(q_ref[6])), dtype=float).reshape(-1)
        return q if q.shape == (7,) and bool(np.all(np.isfinite(q))) else None

    def forward_kinematics(self, joints: np.ndarray) -> Pose:
        """panda-python's forward kinematics at ``joints`` (7 radians): the pose of the frame
        ``panda_py.fk`` gives, the one ``ik`` above solves for. Pure (no robot I/O): the safety
        shield calls it for every joint command."""
        position, quaternion = _pose_arrays(
            np.asarray(panda_py.fk(np.asarray(joints, dtype=float)), dtype=float)
        )
        return Pose(position=position, quaternion=quaternion)

    @override
    def command_joints(self, joints: np.ndarray) -> None:
        controller = self._require_controller()
        q = np.asarray(joints, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise DriverError(f"a Franka joint target must be 7 finite numbers, got {q.tolist()!r}")
        if self.options.controller == "joint_position":
            controller.set_control(q)
        else:
            # The impedance controller tracks poses; its nullspace term keeps the elbow near q.
            position, quaternion = _pose_arrays(np.asarray(panda_py.fk(q), dtype=float))
            controller.set_control(position, quaternion, q)

    @override
    def command_gripper(self, opening: float) -> None:
        if self._gripper is None:
            return
        if not math.isfinite(opening):
            raise DriverError(f"gripper opening must be finite, got {opening!r}")
        self._gripper.request(min(1.0, max(0.0, float(opening))))

    @override
    def hold(self) -> None:
        if self._fault is not None or self._controller is None:
            return  # in a fault the arm is already stopped by libfranka; nothing to hold with
        self._hold_measured(self._require_panda().get_state())

    def _hold_measured(self, state: Any) -> None:
        if self.options.controller == "joint_position":
            self._controller.set_control(np.asarray(state.q, dtype=float))
        else:
            position, quaternion = _pose_arrays(_o_t_ee_matrix(state.O_T_EE))
            self._controller.set_control(position, quaternion, self._q_nullspace)

    def _require_panda(self) -> Any:
        if self._panda is None:
            raise DriverError(f"the Franka at {self.ip} is not connected")
        return self._panda

    def _require_controller(self) -> Any:
        self._require_panda()
        if self._fault is not None:
            raise DriverError(f"{self._fault}; reset the fault before commanding")
        if self._controller is None:
            raise DriverError(f"the Franka at {self.ip} has no running controller")
        return self._controller


class _GripperWorker:
    """Runs the Franka Hand's blocking calls in a thread, latest request wins.

    ``move``/``grasp`` return only when the fingers stop (up to seconds), so the control tick only
    drops the wanted opening into a one-slot mailbox.
    """

    def __init__(self, gripper: Any, options: FrankaOptions) -> None:
        self._gripper = gripper
        self._options = options
        self._mailbox: queue.Queue[float | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="franka-gripper", daemon=True)
        state = gripper.read_once()
        self.max_width = float(state.max_width) or 0.08
        self.opening = min(1.0, float(state.width) / self.max_width)
        self._last_request: float | None = None
        self.fault: str | None = None

    def start(self) -> None:
        self._thread.start()

    def request(self, opening: float) -> None:
        if (
            self._last_request is not None
            and abs(opening - self._last_request) < self._options.gripper_deadband
        ):
            return
        self._last_request = opening
        self._put(opening)

    def _put(self, item: float | None) -> None:
        while True:
            try:
                self._mailbox.put_nowait(item)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._mailbox.get_nowait()  # replace the stale request

    def _run(self) -> None:
        while True:
            opening = self._mailbox.get()
            if opening is None:
                return
            width = opening * self.max_width
            try:
                closing = opening < self.opening
                if closing and self._options.gripper_force > 0:
                    # Wide tolerances: any object between the fingers counts as a successful grasp.
                    self._gripper.grasp(
                        width, self._options.gripper_speed, self._options.gripper_force, 0.08, 0.08
                    )
                else:
                    self._gripper.move(width, self._options.gripper_speed)
                self.opening = min(1.0, float(self._gripper.read_once().width) / self.max_width)
            except RuntimeError as exc:
                self.fault = str(exc)
                logger.error("Franka Hand failed: %s", exc)

    def halt(self) -> None:
        try:
            self._gripper.stop()
        except RuntimeError:
            logger.warning("Franka Hand stop() failed.", exc_info=True)

    def clear_fault(self) -> None:
        self.fault = None
        self._last_request = None

    def close(self) -> None:
        self._put(None)
        self._thread.join(timeout=1.0)


# -- conversions: libfranka's column-major O_T_EE <-> Pose, in one place -------------------------


def _o_t_ee_matrix(o_t_ee: Any) -> np.ndarray:
    """libfranka stores the 4x4 base-to-end-effector transform column-major."""
    return np.asarray(o_t_ee, dtype=float).reshape(4, 4, order="F")


def _pose_arrays(transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return transform[:3, 3].copy(), matrix_to_quat(transform[:3, :3])


def _pose_from_o_t_ee(o_t_ee: Any) -> Pose:
    position, quaternion = _pose_arrays(_o_t_ee_matrix(o_t_ee))
    return Pose(position=position, quaternion=quaternion)


def _checked_pose(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    position = np.asarray(pose.position, dtype=float)
    if position.shape != (3,) or not np.all(np.isfinite(position)):
        raise DriverError(f"a Franka target position must be 3 finite numbers, got {position.tolist()!r}")
    try:
        quaternion = quat_normalize(np.asarray(pose.quaternion, dtype=float))
    except ValueError as exc:
        raise DriverError(f"a Franka target orientation is invalid: {exc}") from exc
    # panda-python takes quaternions scalar last (x, y, z, w), as vla-deploy does.
    return position, quaternion


def _state_problem(state: Any) -> str | None:
    mode = state.robot_mode
    if mode in _FAULT_MODES:
        errors = state.current_errors or state.last_motion_errors
        detail = f" {errors!r}" if errors else ""
        return f"{_FAULT_MODES[mode]}{detail}"
    if state.current_errors:
        return f"errors {state.current_errors!r}"
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)

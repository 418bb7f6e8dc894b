"""The startup steps the agent and ``robot-agent check`` share, so the two cannot disagree.

A run and its preflight must refuse the same arm, the same ``[safety]`` section, the same camera
and the same policy, with the same one-line message: before this module each had its own copy
and they drifted (the agent checked the arm's nominal home joints against the joint band, the
check its current joints; the check never asked for the forward kinematics a joint policy needs
near keep-out zones). Each step is a small function; :class:`robot_agent.agent.Agent` runs them
in ``_startup`` and ``_accept_spec``, :func:`robot_agent.check.preflight` runs them one by one
and turns each error into a FAIL line.

The steps, in order:

1. :func:`connect_robot`, :func:`read_first_state`, :func:`refuse_fault`: the arm answers and
   reports no error (a Franka reflex, an xArm error code is cleared by a person, never here);
2. :func:`load_safety`, :func:`validate_safety`, :func:`build_shield`: ``[safety]`` is valid and
   fits this arm where it stands and where it starts from;
3. :func:`open_camera` for each configured camera, or :func:`probe_default_camera` when none is
   configured (the policy's cameras are then created once its spec is read);
4. at each (re)connect, :func:`fit_policy` and :func:`reconcile_cameras`: the policy's spec fits
   the arm, the shield and the cameras.

Blocking driver calls go through the caller's ``call`` (:class:`DriverCall`): the agent's one
driver thread, or ``asyncio.to_thread`` in the check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from robot_agent.action_space import ActionSpace, measured_from_state
from robot_agent.cameras import camera_class, create_camera
from robot_agent.cameras.capture import Sensors
from robot_agent.config import AgentConfig, CameraConfig, RobotConfig
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import AgentError, CameraError, ConfigError, DriverError, SpecMismatch
from safety import EStop, SafetyConfig, Shield
from safety.errors import SafetyConfigError
from vla.v1 import policy_pb2 as pb
from vla.vocabulary import STATE_NAMES, robot_can_fill

__all__ = [
    "CameraPlan",
    "DriverCall",
    "build_shield",
    "connect_robot",
    "fit_policy",
    "fit_spec",
    "load_safety",
    "open_camera",
    "probe_default_camera",
    "read_first_state",
    "reconcile_cameras",
    "refuse_fault",
    "require_forward_kinematics",
    "validate_safety",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class DriverCall(Protocol):
    """How a blocking driver method runs off the event loop: ``await call(robot.connect)``."""

    def __call__(self, fn: Callable[[], _T], /) -> Awaitable[_T]: ...


# --- the arm ------------------------------------------------------------------------------------


async def connect_robot(robot: Robot, config: RobotConfig, call: DriverCall) -> None:
    """Connect ``robot`` (built from ``config``, the ``[robot]`` section).

    A driver's own :class:`AgentError` passes unchanged (it names the address, as
    ``no Franka at 172.16.0.2 after 5 s``); anything else becomes :class:`DriverError`
    ``robot <kind> at <ip>: connect failed: <error>``.
    """
    where = f" at {config.ip}" if config.ip else ""
    logger.info("Connecting to robot %s%s", config.kind, where)
    try:
        await call(robot.connect)
    except AgentError:
        raise
    except Exception as exc:
        raise DriverError(f"robot {config.kind}{where}: connect failed: {exc}") from exc


async def read_first_state(robot: Robot, kind: str, call: DriverCall) -> RobotState:
    """The arm's first state; a failed read is :class:`DriverError` ``robot <kind>: reading the
    state failed: <error>`` (a driver's own :class:`AgentError` passes unchanged)."""
    try:
        return await call(robot.read_state)
    except AgentError:
        raise
    except Exception as exc:
        raise DriverError(f"robot {kind}: reading the state failed: {exc}") from exc


def refuse_fault(state: RobotState, kind: str) -> None:
    """Raise :class:`DriverError` ``robot <kind> reports a fault: <fault>`` when the arm reports
    an error: a person clears it (Desk, UFACTORY Studio), never the agent."""
    if state.fault:
        raise DriverError(f"robot {kind} reports a fault: {state.fault}")
    logger.info("Robot ready: %s, ee at %s", kind, np.round(state.ee.position, 3).tolist())


# --- the safety limits --------------------------------------------------------------------------


def load_safety(section: Mapping[str, Any]) -> SafetyConfig:
    """The ``[safety]`` section as a :class:`SafetyConfig`; an invalid one is :class:`ConfigError`
    naming the field (``safety.workspace``, ...), with :class:`SafetyConfigError`'s message."""
    try:
        return SafetyConfig.from_mapping(section)
    except SafetyConfigError as exc:
        raise ConfigError(str(exc), field=exc.field or "safety") from exc


def validate_safety(safety: SafetyConfig, robot: Robot, state: RobotState) -> None:
    """Check ``safety`` against this arm (:meth:`SafetyConfig.validate_against`); raise
    :class:`ConfigError` naming the limit and the pose that do not fit.

    Both poses must lie inside the limits: where the arm stands now (``state``: its tool in the
    workspace, out of the keep-out zones, within the tilt cone; its joints inside the joint band
    with ``margin_rad``), which is what ``robot-agent check`` promises (README, "Preflight"), and
    the arm's nominal start (``robot.home_joints`` inside the band), which is what the agent
    checked. The joint band must lie inside the arm's own range (``robot.joint_limits``), the
    rate limits at most the arm's documented ones: its ``robot.arm_limits`` table (the
    ``safety.arms`` sources; a rate the manufacturer does not publish is not checked), the
    Panda's when the arm has no table.
    """
    lower, upper = robot.joint_limits
    rates: dict[str, Any] = {}
    if robot.arm_limits is not None:
        rates = {
            "robot_cartesian_limits": robot.arm_limits.cartesian,
            "robot_joint_rates": robot.arm_limits.joint_rates,
        }
    try:
        safety.validate_against(
            home=state.ee,
            home_joints=np.asarray(state.joint_positions, dtype=float).tolist(),
            robot_joint_min=np.asarray(lower, dtype=float).tolist(),
            robot_joint_max=np.asarray(upper, dtype=float).tolist(),
            **rates,
        )
        safety.validate_against(
            home_joints=np.asarray(robot.home_joints, dtype=float).tolist(),
            robot_cartesian_limits=None,
            robot_joint_rates=None,
        )
    except SafetyConfigError as exc:
        raise ConfigError(str(exc), field=exc.field or "safety") from exc


def build_shield(safety: SafetyConfig, robot: Robot, state: RobotState, *, kind: str, estop: EStop) -> Shield:
    """The shield over ``safety`` with the arm's kinematics, seeded at rest at ``state``.

    With the arm's IK the shield checks an end-effector command's joints before sending it;
    without, only the measured joints (see :attr:`Robot.inverse_kinematics`). With its FK it
    checks each joint command's end-effector position against the workspace and keep-out zones;
    without, :func:`require_forward_kinematics` refuses joint policies with zones. ``estop`` is
    the run's one latch.
    """
    ik = robot.inverse_kinematics
    if ik is None:
        logger.info("Robot %s offers no IK: joint limits of ee commands are checked on measured joints", kind)
    shield = Shield(safety, ik=ik, fk=robot.forward_kinematics, estop=estop)
    shield.reset(measured_from_state(state))
    return shield


# --- the cameras --------------------------------------------------------------------------------


async def open_camera(name: str, config: CameraConfig, robot: Robot, sensors: Sensors) -> None:
    """Build camera ``name`` from ``config``, open it and wait for its first frame in ``sensors``
    (``Sensors.add``: at most 5 s). Raises :class:`CameraError` naming the camera, or
    :class:`ConfigError` for an unknown kind."""
    camera = create_camera(config, robot)
    await asyncio.to_thread(sensors.add, name, camera)
    logger.info("Camera %s ready (%s, %dx%d)", name, config.kind, config.width, config.height)


async def probe_default_camera(kind: str) -> None:
    """With no camera configured, each camera the policy asks for is a ``default_camera``,
    created once the spec is read; check now that its kind has a device, so a missing camera
    is reported even when no server runs, as a missing arm is. Raises :class:`CameraError`
    ``default_camera is '<kind>' but <what is missing>``."""
    cls = camera_class(kind, "default_camera")
    try:
        await asyncio.to_thread(cls.probe, CameraConfig(name="default", kind=kind))
    except CameraError as exc:
        raise CameraError(f"default_camera is {kind!r} but {exc}") from exc


# --- the policy's spec, at each (re)connect -----------------------------------------------------


def fit_spec(spec: pb.PolicySpec, *, num_joints: int, reference: np.ndarray, address: str) -> ActionSpace:
    """The action space for ``spec`` on an arm of ``num_joints`` joints; raise
    :class:`SpecMismatch` naming what does not fit (state entries, action space, dimensions).
    ``reference`` is the measured tool quaternion (x, y, z, w) a relative rotation starts from."""
    names = list(spec.state_names)
    if len(names) != spec.state_dim:
        raise SpecMismatch(
            f"policy at {address}: state_dim is {spec.state_dim} but it names {len(names)} state entries "
            f"(state_names {names}); the agent fills the state by name from: {', '.join(STATE_NAMES)}"
        )
    for name in names:
        if not robot_can_fill(name, num_joints):
            raise SpecMismatch(f"policy at {address}: state entry {name!r} is not one this robot can fill")
    if spec.dt_s <= 0 or spec.chunk_length < 1:
        raise SpecMismatch(
            f"policy at {address}: chunk_length {spec.chunk_length}, dt_s {spec.dt_s} are not usable"
        )
    try:
        return ActionSpace(spec.action_space, spec.action_dim, num_joints, reference=reference)
    except SpecMismatch as exc:
        raise SpecMismatch(f"policy at {address}: {exc}") from None


def require_forward_kinematics(
    space: ActionSpace, robot: Robot, robot_kind: str, safety: SafetyConfig, address: str
) -> None:
    """Refuse a joint-space policy the shield cannot keep out of the keep-out zones.

    The shield checks a joint command's end-effector position through the arm's forward
    kinematics (:attr:`Robot.forward_kinematics`, issue 10 kind 8). On an arm without one and
    with ``safety.keep_out`` zones, raise :class:`SpecMismatch` naming the robot; with only the
    workspace box, log a warning (the box is always configured, so refusing would bar every
    joint-space policy from such an arm): joint commands are then bounded by the joint band only.
    """
    if space.is_ee or robot.forward_kinematics is not None:
        return
    if safety.keep_out:
        names = ", ".join(repr(z.name or z.kind) for z in safety.keep_out)
        raise SpecMismatch(
            f"policy at {address}: its action space {space.name} commands joints, and robot "
            f"{robot_kind!r} offers no forward kinematics, so the safety shield cannot keep those "
            f"commands out of safety.keep_out ({names}); serve an end-effector policy, or run "
            "without keep-out zones"
        )
    logger.warning(
        "Robot %r offers no forward kinematics: the joint commands of a %s policy are checked "
        "against the joint limits only, not against safety.workspace",
        robot_kind,
        space.name,
    )


def fit_policy(
    spec: pb.PolicySpec,
    *,
    previous: pb.PolicySpec | None,
    robot: Robot,
    robot_kind: str,
    safety: SafetyConfig,
    reference: np.ndarray,
    address: str,
) -> ActionSpace:
    """:func:`fit_spec` on this arm, then :func:`require_forward_kinematics` unless the action
    space is the one ``previous`` (the spec accepted before a reconnect) already had. Raises
    :class:`SpecMismatch`."""
    space = fit_spec(spec, num_joints=len(robot.home_joints), reference=reference, address=address)
    if previous is None or previous.action_space != spec.action_space:
        require_forward_kinematics(space, robot, robot_kind, safety, address)
    return space


@dataclass(frozen=True)
class CameraPlan:
    """What the policy's cameras need: ``to_open`` the configs of the cameras it asks for that
    are not open yet (name → config: the configured one, else a ``default_camera`` of the size
    the policy gives), ``frame_age_bounds`` the oldest frame each may send, in seconds
    (``CameraConfig.max_age_s``, capped by ``server.request_timeout_ms``)."""

    to_open: Mapping[str, CameraConfig]
    frame_age_bounds: Mapping[str, float]


def reconcile_cameras(
    spec: pb.PolicySpec, *, previous: pb.PolicySpec | None, config: AgentConfig, opened: Sequence[str]
) -> CameraPlan:
    """Match the cameras ``spec`` asks for with those ``opened`` and configured.

    A camera the policy names that is not open yet is opened from its config, or created as a
    ``default_camera`` of the policy's size, at the first connect. After a reconnect
    (``previous`` set) a camera that is neither open nor configured is :class:`SpecMismatch`
    naming it and the cameras there are. At the first connect, configured cameras the policy
    does not use are logged.
    """
    address = config.server.address
    to_open: dict[str, CameraConfig] = {}
    for cam in spec.cameras:
        if cam.name in opened:
            continue
        if cam.name not in config.cameras and previous is not None:
            raise SpecMismatch(
                f"policy at {address} now asks for camera {cam.name!r}, which this agent does not have "
                f"(it has {', '.join(opened) or 'none'})"
            )
        to_open[cam.name] = config.camera_for(cam.name, cam.height, cam.width)
    unused = set(config.cameras) - {c.name for c in spec.cameras}
    if unused and previous is None:
        logger.warning("Configured camera(s) %s are not used by the policy", ", ".join(sorted(unused)))
    timeout_ms = config.server.request_timeout_ms
    frame_age_bounds = {
        cam.name: config.camera_for(cam.name, cam.height, cam.width).max_age_s(timeout_ms)
        for cam in spec.cameras
    }
    return CameraPlan(to_open=to_open, frame_age_bounds=frame_age_bounds)

"""A simulated Franka Panda: real kinematics, a simple tracking model, real time by default.

Kinematics are panda-python's own ``panda_py.fk`` / ``panda_py.ik`` (the analytical solver the
real driver uses), so joint limits, reach and IK failures behave like the real arm's. ``fk``
returns the Franka Hand's default TCP (flange + 0.1034 m along its z axis, between the
fingertips): that is the gripper tip, and the end-effector pose this robot reports and tracks.

Dynamics are deliberately simple: each joint follows its target as a first-order system
(time constant ``tracking_time_constant_s``) under velocity and acceleration limits, integrated
in fixed sub-steps of ``physics_dt_s``. Commands take effect after ``command_latency_s``; readings
carry Gaussian ``state_noise_std`` on the joints. The model advances lazily to ``clock.now()``
whenever the robot is touched: on the wall clock that is real time; with ``realtime = false`` a
``ManualClock`` moves only on ``step(dt)``, for data generation and fast evaluation.

Options (``[robot.options]``; all optional)::

    realtime = true                 # false: manual clock, advance with step(dt)
    command_latency_s = 0.0
    state_noise_std = 0.0           # radians, on joint positions
    max_joint_velocity = 1.0        # fraction of the Panda limits (a number), or 7 values in rad/s
    max_joint_acceleration = 1.0    # fraction of the Panda limits, or 7 values in rad/s^2
    tracking_time_constant_s = 0.05
    physics_dt_s = 0.001
    gripper_speed = 1.0             # opening fraction per second
    seed = 0                        # noise and scenes; absent: random
    time_limit_s = 15.0             # the world's episode limit
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import panda_py

from robot_agent.config import RobotConfig
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import ConfigError
from robot_agent.sim.clock import Clock, ManualClock, WallClock
from robot_agent.sim.world import SimWorld
from safety.rotations import matrix_to_quat, quat_to_matrix, quat_to_rotvec
from safety.types import Pose

__all__ = [
    "PANDA_HOME_JOINTS",
    "PANDA_JOINT_LIMITS",
    "PANDA_MAX_JOINT_ACCELERATION",
    "PANDA_MAX_JOINT_VELOCITY",
    "SimRobot",
]

logger = logging.getLogger(__name__)

# Franka Panda limits from Franka's "Robot and interface specifications" (FR3/Panda datasheet).
PANDA_JOINT_LIMITS = (
    np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]),
    np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]),
)
PANDA_MAX_JOINT_VELOCITY = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61])
PANDA_MAX_JOINT_ACCELERATION = np.array([15.0, 7.5, 10.0, 12.5, 15.0, 20.0, 20.0])
PANDA_HOME_JOINTS = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
for _a in (*PANDA_JOINT_LIMITS, PANDA_MAX_JOINT_VELOCITY, PANDA_MAX_JOINT_ACCELERATION, PANDA_HOME_JOINTS):
    _a.flags.writeable = False

_OPTIONS = {
    "realtime": True,
    "command_latency_s": 0.0,
    "state_noise_std": 0.0,
    "max_joint_velocity": 1.0,
    "max_joint_acceleration": 1.0,
    "tracking_time_constant_s": 0.05,
    "physics_dt_s": 0.001,
    "gripper_speed": 1.0,
    "seed": None,
    "time_limit_s": 15.0,
}
# An IK answer this far (rad, any joint) from the previous target means the solver switched
# branch: following it would swing the arm through space for a small Cartesian step.
_MAX_IK_JUMP_RAD = 1.0
_IK_POSITION_TOLERANCE_M = 1e-3
_Q7_OFFSETS = (-0.1, 0.1, -0.25, 0.25, -0.5, 0.5, -0.8, 0.8)
_SMALL_IK_STEP_RAD = 0.1  # a closed-form answer this close to the seed is the continuous one


def _limit_vector(name: str, value: Any, panda: np.ndarray) -> np.ndarray:
    """A number is a fraction of the Panda's documented limits; a list gives them per joint."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0.0 < float(value) <= 1.0:
            raise ConfigError(
                f"robot.options.{name} is {value!r}: a fraction must be in (0, 1]",
                field=f"robot.options.{name}",
            )
        return panda * float(value)
    arr = np.asarray(value, dtype=float)
    if arr.shape != (7,) or not np.all(np.isfinite(arr)) or not np.all(arr > 0):
        raise ConfigError(
            f"robot.options.{name} is {value!r}: give a fraction or 7 positive values",
            field=f"robot.options.{name}",
        )
    return arr


def solve_ik(
    transform: np.ndarray, seed: np.ndarray, limits: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray | None, str]:
    """The joint solution of ``transform`` nearest to ``seed``, through ``panda_py.ik``.

    Small steps go through damped least squares on ``panda_py.fk`` from the seed (continuous,
    all seven joints). The analytical solver covers larger moves; it takes joint 7 as given and
    picks its branch from the seed, and fails in ways handled here: when the shoulder passes
    straight up (joint 2 through 0) it flips joints 1 and 3 by pi, whereas ``(q1, q2, q3)`` and
    ``(q1 +- pi, -q2, q3 +- pi)`` are the same arm pose (the equivalent nearest the seed is kept),
    and with joint 7 fixed some poses have no solution (other values of joint 7 are tried last).
    Returns ``(q, "")`` or ``(None, reason)``.
    """
    lo, hi = limits
    seed = np.asarray(seed, dtype=float)
    any_finite = False

    def closed_form(q7: float) -> tuple[np.ndarray | None, float]:
        nonlocal any_finite
        q = np.asarray(panda_py.ik(transform, seed, q7), dtype=float).reshape(7)
        if not np.all(np.isfinite(q)):
            return None, math.inf
        if np.linalg.norm(panda_py.fk(q)[:3, 3] - transform[:3, 3]) > _IK_POSITION_TOLERANCE_M:
            return None, math.inf  # the solver's answer for a case that cannot reach this pose
        any_finite = True
        best, best_jump = None, math.inf
        for candidate in _shoulder_equivalents(q, seed):
            if np.any(candidate < lo) or np.any(candidate > hi):
                continue
            jump = float(np.max(np.abs(candidate - seed)))
            if jump < best_jump:
                best, best_jump = candidate, jump
        return best, best_jump

    # 1. Small steps (what the agent sends every tick): damped least squares on panda_py.fk
    # from the seed, the arm's own differential motion. It uses all seven joints, so it passes
    # where the closed form, which holds joint 7 fixed, has a singularity (joint 2 through 0) and
    # swings joints 1 and 3 (or flips them by pi).
    best: np.ndarray | None = None
    best_jump = math.inf
    refined = _refine_ik(transform, seed, limits)
    if refined is not None:
        best, best_jump = refined, float(np.max(np.abs(refined - seed)))
        if best_jump < _SMALL_IK_STEP_RAD:
            return best, ""
    # 2. Larger moves: the closed form with joint 7 kept (and the shoulder equivalents).
    candidate, jump = closed_form(float(seed[6]))
    if candidate is not None and jump < best_jump:
        best, best_jump = candidate, jump
    # 3. Last resort: other values of joint 7 (some poses have no solution with the seed's).
    if best is None or best_jump > _SMALL_IK_STEP_RAD:
        for dq7 in _Q7_OFFSETS:
            candidate, jump = closed_form(float(np.clip(seed[6] + dq7, lo[6], hi[6])))
            if candidate is not None and jump < best_jump:
                best, best_jump = candidate, jump
    if best is None:
        return (
            None,
            "IK solutions all outside the joint limits" if any_finite else "no IK solution (out of reach)",
        )
    if best_jump > _MAX_IK_JUMP_RAD:
        return None, f"IK needs a joint jump of {best_jump:.2f} rad from the last target"
    return best, ""


def _pose_error(transform: np.ndarray, q: np.ndarray) -> np.ndarray:
    current = np.asarray(panda_py.fk(q), dtype=float)
    rot = transform[:3, :3] @ current[:3, :3].T
    return np.concatenate([transform[:3, 3] - current[:3, 3], quat_to_rotvec(matrix_to_quat(rot))])


def _refine_ik(
    transform: np.ndarray, seed: np.ndarray, limits: tuple[np.ndarray, np.ndarray]
) -> np.ndarray | None:
    """Damped least squares on ``panda_py.fk`` (numerical Jacobian), from ``seed``."""
    lo, hi = limits
    q = np.asarray(seed, dtype=float).copy()
    eps = 1e-6
    for _ in range(30):
        err = _pose_error(transform, q)
        if np.linalg.norm(err[:3]) < 1e-4 and np.linalg.norm(err[3:]) < 1e-3:
            return q if np.all(q >= lo) and np.all(q <= hi) else None
        jac = np.empty((6, 7))
        for j in range(7):
            dq = np.zeros(7)
            dq[j] = eps
            jac[:, j] = (err - _pose_error(transform, q + dq)) / eps
        step = jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(6), err)
        q = np.clip(q + step, lo, hi)
    return None


def _shoulder_equivalents(q: np.ndarray, seed: np.ndarray) -> list[np.ndarray]:
    out = [q]
    for s1 in (-1.0, 1.0):
        for s3 in (-1.0, 1.0):
            alt = q.copy()
            alt[0] += s1 * math.pi
            alt[1] = -alt[1]
            alt[2] += s3 * math.pi
            out.append(alt)
    return out


class SimRobot(Robot):
    """The simulated Panda. ``world`` is the scene it moves in (reset, judged, drawn)."""

    joint_limits = PANDA_JOINT_LIMITS
    home_joints = PANDA_HOME_JOINTS

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        world: SimWorld | None = None,
        command_latency_s: float = 0.0,
        state_noise_std: float = 0.0,
        max_joint_velocity: np.ndarray | None = None,
        max_joint_acceleration: np.ndarray | None = None,
        tracking_time_constant_s: float = 0.05,
        physics_dt_s: float = 0.001,
        gripper_speed: float = 1.0,
        seed: int | None = None,
    ) -> None:
        for name, value, low in (
            ("command_latency_s", command_latency_s, 0.0),
            ("state_noise_std", state_noise_std, 0.0),
        ):
            if not (math.isfinite(value) and value >= low):
                raise ValueError(f"SimRobot: {name} must be a finite number >= {low}, got {value!r}")
        for name, value in (
            ("tracking_time_constant_s", tracking_time_constant_s),
            ("physics_dt_s", physics_dt_s),
            ("gripper_speed", gripper_speed),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"SimRobot: {name} must be a positive number, got {value!r}")
        self.clock: Clock = clock if clock is not None else WallClock()
        self.world = world if world is not None else SimWorld(clock=self.clock, seed=seed)
        self.command_latency_s = float(command_latency_s)
        self.state_noise_std = float(state_noise_std)
        self.max_joint_velocity = (
            PANDA_MAX_JOINT_VELOCITY.copy()
            if max_joint_velocity is None
            else np.asarray(max_joint_velocity, float)
        )
        self.max_joint_acceleration = (
            PANDA_MAX_JOINT_ACCELERATION.copy()
            if max_joint_acceleration is None
            else np.asarray(max_joint_acceleration, float)
        )
        self.tracking_time_constant_s = float(tracking_time_constant_s)
        self.physics_dt_s = float(physics_dt_s)
        self.gripper_speed = float(gripper_speed)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        # True model state.
        self._q = self.home_joints.copy()
        self._v = np.zeros(7)
        self._q_target = self.home_joints.copy()
        self._gripper = 1.0
        self._gripper_target = 1.0
        self._t = self.clock.now()
        # Commands waiting out the latency: (apply_time, kind, value).
        self._pending: collections.deque[tuple[float, str, Any]] = collections.deque()
        self._last_commanded_q = self.home_joints.copy()  # IK seed: where the arm is being sent
        self._estop = False
        self._ik_failing = False
        self.ik_failures = 0
        self.rejected_commands = 0
        self.world.bind(on_reset=self.go_home, sync=self.sync)
        self.world.observe_tip(self._tip_position(), self._t)

    @classmethod
    def from_config(cls, config: RobotConfig) -> SimRobot:
        """Build from the ``[robot]`` section; unknown options are refused by name."""
        options: Mapping[str, Any] = config.options or {}
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"robot.options: unknown option(s) {unknown!r} for the sim robot; known: {sorted(_OPTIONS)!r}",
                field="robot.options",
            )
        opts = {**_OPTIONS, **options}
        try:
            return cls._from_options(opts)
        except ValueError as exc:
            raise ConfigError(f"robot.options: {exc}", field="robot.options") from exc

    @classmethod
    def _from_options(cls, opts: Mapping[str, Any]) -> SimRobot:
        clock: Clock = WallClock() if bool(opts["realtime"]) else ManualClock()
        seed = opts["seed"]
        world = SimWorld(clock=clock, seed=seed, time_limit_s=float(opts["time_limit_s"]))
        return cls(
            clock=clock,
            world=world,
            command_latency_s=float(opts["command_latency_s"]),
            state_noise_std=float(opts["state_noise_std"]),
            max_joint_velocity=_limit_vector(
                "max_joint_velocity", opts["max_joint_velocity"], PANDA_MAX_JOINT_VELOCITY
            ),
            max_joint_acceleration=_limit_vector(
                "max_joint_acceleration", opts["max_joint_acceleration"], PANDA_MAX_JOINT_ACCELERATION
            ),
            tracking_time_constant_s=float(opts["tracking_time_constant_s"]),
            physics_dt_s=float(opts["physics_dt_s"]),
            gripper_speed=float(opts["gripper_speed"]),
            seed=None if seed is None else int(seed),
        )

    # -- Robot interface ---------------------------------------------------------------------
    def connect(self) -> None:
        self.sync()
        logger.info(
            "Simulated Panda ready (%s clock).", "wall" if isinstance(self.clock, WallClock) else "manual"
        )

    def read_state(self) -> RobotState:
        with self._lock:
            self.sync()
            q = self._q.copy()
            v = self._v.copy()
            if self.state_noise_std > 0:
                q += self._rng.normal(0.0, self.state_noise_std, 7)
                v += self._rng.normal(0.0, self.state_noise_std, 7)
            return RobotState(
                time_s=self._t,
                joint_positions=q,
                joint_velocities=v,
                ee=self._pose(q),
                gripper=self._gripper,
                fault="emergency stop (latched until reset_fault)" if self._estop else None,
            )

    def command_ee(self, pose: Pose) -> None:
        with self._lock:
            if self._refuse_if_estopped("command_ee"):
                return
            q = self._solve_ik(pose)
            if q is None:
                return
            self._last_commanded_q = q
            self._queue("joints", q)

    def command_joints(self, joints: np.ndarray) -> None:
        q = np.asarray(joints, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f"SimRobot.command_joints: need 7 finite values, got {joints!r}")
        with self._lock:
            if self._refuse_if_estopped("command_joints"):
                return
            q = np.clip(q, *self.joint_limits)
            self._last_commanded_q = q
            self._queue("joints", q)

    def command_gripper(self, opening: float) -> None:
        if not math.isfinite(opening):
            raise ValueError(f"SimRobot.command_gripper: opening must be finite, got {opening!r}")
        with self._lock:
            if self._refuse_if_estopped("command_gripper"):
                return
            self._queue("gripper", min(1.0, max(0.0, float(opening))))

    def hold(self) -> None:
        with self._lock:
            self.sync()
            self._pending.clear()
            self._q_target = self._q.copy()
            self._last_commanded_q = self._q.copy()
            self._gripper_target = self._gripper

    def stop(self) -> None:
        self.hold()
        logger.info("Simulated Panda stopping.")

    def emergency_stop(self) -> None:
        with self._lock:
            self.sync()
            self._estop = True
            self._pending.clear()
            self._v[:] = 0.0
            self._q_target = self._q.copy()
            self._last_commanded_q = self._q.copy()
            self._gripper_target = self._gripper
        logger.warning("Simulated Panda: emergency stop, latched until reset_fault().")

    def reset_fault(self) -> None:
        with self._lock:
            if self._estop:
                logger.info("Simulated Panda: emergency stop cleared.")
            self._estop = False

    def close(self) -> None:
        self.hold()

    # -- simulation ---------------------------------------------------------------------------
    @property
    def estopped(self) -> bool:
        return self._estop

    def step(self, dt_s: float) -> None:
        """Advance a manual-clock simulation by ``dt_s`` seconds (``realtime = false`` only)."""
        if not isinstance(self.clock, ManualClock):
            raise RuntimeError(
                "SimRobot.step: this robot runs on the wall clock; build it with realtime = false"
            )
        self.clock.advance(dt_s)
        self.sync()

    def go_home(self) -> None:
        """Put the arm at home at rest with the gripper open, at once (a sim convenience for
        ``SimWorld.reset``; a real arm would drive there)."""
        with self._lock:
            self.sync()
            self._pending.clear()
            self._q = self.home_joints.copy()
            self._v = np.zeros(7)
            self._q_target = self.home_joints.copy()
            self._last_commanded_q = self.home_joints.copy()
            self._gripper = self._gripper_target = 1.0
            self.world.observe_tip(self._tip_position(), self._t)

    def true_joints(self) -> np.ndarray:
        with self._lock:
            self.sync()
            return self._q.copy()

    def true_ee(self) -> Pose:
        """The gripper tip pose without noise (for the camera, the expert and the judge)."""
        with self._lock:
            self.sync()
            return self._pose(self._q)

    def snapshot(self) -> tuple[Pose, float, float]:
        """The true tip pose, gripper opening and sim time, all at one instant (for drawing)."""
        with self._lock:
            self.sync()
            return self._pose(self._q), self._gripper, self._t

    def true_gripper(self) -> float:
        with self._lock:
            self.sync()
            return self._gripper

    def sync(self) -> None:
        """Advance the model to the clock's now in fixed sub-steps, applying due commands and
        reporting the tip to the world at each sub-step."""
        with self._lock:
            now = self.clock.now()
            while self._t < now - 1e-12:
                h = min(self.physics_dt_s, now - self._t)
                t_next = self._t + h
                while self._pending and self._pending[0][0] <= t_next:
                    _, kind, value = self._pending.popleft()
                    if kind == "joints":
                        self._q_target = value
                    else:
                        self._gripper_target = value
                self._integrate(h)
                self._t = t_next
                self.world.observe_tip(self._tip_position(), self._t)

    # -- internals ----------------------------------------------------------------------------
    def _integrate(self, h: float) -> None:
        if self._estop:
            self._v[:] = 0.0
            return
        err = self._q_target - self._q
        v_des = err / self.tracking_time_constant_s
        # Never ask for more speed than can be braked away before the target (no overshoot).
        v_brake = np.sqrt(2.0 * self.max_joint_acceleration * np.abs(err))
        v_des = np.clip(v_des, -v_brake, v_brake)
        v_des = np.clip(v_des, -self.max_joint_velocity, self.max_joint_velocity)
        dv = np.clip(v_des - self._v, -self.max_joint_acceleration * h, self.max_joint_acceleration * h)
        self._v = self._v + dv
        q = self._q + self._v * h
        lo, hi = self.joint_limits
        hit = (q < lo) | (q > hi)
        if np.any(hit):
            q = np.clip(q, lo, hi)
            self._v[hit] = 0.0
        self._q = q
        step = self.gripper_speed * h
        self._gripper += max(-step, min(step, self._gripper_target - self._gripper))

    def _queue(self, kind: str, value: Any) -> None:
        self.sync()
        self._pending.append((self._t + self.command_latency_s, kind, value))

    def _refuse_if_estopped(self, what: str) -> bool:
        if self._estop:
            self.rejected_commands += 1
            logger.debug("Simulated Panda: %s ignored, emergency stop latched.", what)
        return self._estop

    def _solve_ik(self, pose: Pose) -> np.ndarray | None:
        position = np.asarray(pose.position, dtype=float)
        quaternion = np.asarray(pose.quaternion, dtype=float)
        if position.shape != (3,) or quaternion.shape != (4,):
            raise ValueError(
                f"SimRobot.command_ee: pose needs a 3-vector and a quaternion, got {position!r}, {quaternion!r}"
            )
        if not (np.all(np.isfinite(position)) and np.all(np.isfinite(quaternion))):
            raise ValueError(
                f"SimRobot.command_ee: non-finite pose {position.tolist()!r} {quaternion.tolist()!r}"
            )
        transform = np.eye(4)
        transform[:3, :3] = quat_to_matrix(quaternion)
        transform[:3, 3] = position
        q, reason = solve_ik(transform, self._last_commanded_q, self.joint_limits)
        if q is None:
            self.ik_failures += 1
            if not self._ik_failing:
                logger.warning(
                    "Simulated Panda: end-effector target %s refused, %s; keeping the last target.",
                    np.round(position, 4).tolist(),
                    reason,
                )
            self._ik_failing = True
            return None
        if self._ik_failing:
            logger.info("Simulated Panda: end-effector targets reachable again.")
        self._ik_failing = False
        return q

    def inverse_kinematics(self, pose: Pose, seed: np.ndarray) -> np.ndarray | None:
        """The joints the arm would be sent to for ``pose`` (the solver ``command_ee`` uses), near
        ``seed``; None when unreachable. Pure: touches no state, so the shield may call it."""
        position = np.asarray(pose.position, dtype=float)
        quaternion = np.asarray(pose.quaternion, dtype=float)
        if position.shape != (3,) or quaternion.shape != (4,):
            return None
        transform = np.eye(4)
        transform[:3, :3] = quat_to_matrix(quaternion)
        transform[:3, 3] = position
        q, _ = solve_ik(transform, np.asarray(seed, dtype=float), self.joint_limits)
        return q

    def forward_kinematics(self, joints: np.ndarray) -> Pose:
        """The end-effector pose (the Franka Hand's TCP, as ``read_state`` reports it) at
        ``joints`` (7 radians), through ``panda_py.fk``. Pure, so the shield may call it."""
        return self._pose(np.asarray(joints, dtype=float))

    def _tip_position(self) -> np.ndarray:
        return np.asarray(panda_py.fk(self._q), dtype=float)[:3, 3]

    @staticmethod
    def _pose(q: np.ndarray) -> Pose:
        t = np.asarray(panda_py.fk(q), dtype=float)
        return Pose(position=t[:3, 3].copy(), quaternion=matrix_to_quat(t[:3, :3]))

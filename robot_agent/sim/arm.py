"""The simulated Franka Panda: real kinematics, a simple tracking model, real time by default.

Kinematics are panda-python's (:mod:`robot_agent.sim.kinematics`); limits are the Panda's
documented ones (:data:`safety.arms.PANDA`). Dynamics are deliberately simple: each joint follows
its target as a first-order system (time constant ``tracking_time_constant_s``) under velocity and
acceleration limits, integrated in fixed sub-steps of ``physics_dt_s``. Commands take effect after
``command_latency_s``; readings carry Gaussian ``state_noise_std`` on the joints. The model
advances lazily to ``clock.now()`` whenever the arm is touched: on the wall clock that is real
time; on a ``ManualClock`` it moves only on ``step(dt)``, for data generation and fast evaluation.

:class:`SimArm` knows nothing of the agent: ``robot_agent.drivers.sim.SimRobot`` adapts it to
the ``Robot`` interface and ``robot_agent.cameras.sim.SimCamera`` draws it in its world.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

from robot_agent.sim import panda_chain
from robot_agent.sim.arm_base import SimArmBase
from robot_agent.sim.clock import Clock, WallClock
from robot_agent.sim.kinematics import JointLimits, pose_to_transform, solve_ik, tip_pose, tip_position
from robot_agent.sim.world import SimWorld
from safety.arms import PANDA
from safety.types import Pose

__all__ = [
    "PANDA_HOME_JOINTS",
    "PANDA_JOINT_LIMITS",
    "PANDA_MAX_JOINT_ACCELERATION",
    "PANDA_MAX_JOINT_VELOCITY",
    "ArmReading",
    "SimArm",
]

logger = logging.getLogger(__name__)


def _frozen(values: tuple[float, ...]) -> np.ndarray:
    array = np.array(values, dtype=float)
    array.flags.writeable = False
    return array


#: The Panda's tables (:data:`safety.arms.PANDA`) as read-only arrays: (lower, upper) rad.
PANDA_JOINT_LIMITS: JointLimits = (_frozen(PANDA.joint_min), _frozen(PANDA.joint_max))
#: rad/s per joint.
PANDA_MAX_JOINT_VELOCITY = _frozen(PANDA.joint_velocity)
#: rad/s^2 per joint.
PANDA_MAX_JOINT_ACCELERATION = _frozen(PANDA.joint_acceleration)
#: rad, the ready pose.
PANDA_HOME_JOINTS = _frozen(PANDA.home_joints)

_Command = tuple[float, Literal["joints", "gripper"], "np.ndarray | float"]


@dataclass(frozen=True)
class ArmReading:
    """One reading of the simulated arm at sim time ``time_s`` (s): joints (7, rad), joint
    velocities (7, rad/s), both with the configured noise, the tip pose at those joints, the
    gripper opening (0 closed .. 1 open) and whether the e-stop is latched."""

    time_s: float
    joint_positions: np.ndarray
    joint_velocities: np.ndarray
    ee: Pose
    gripper: float
    estopped: bool


class SimArm(SimArmBase):
    """The simulated Panda in ``world`` (a new ``SimWorld`` on ``clock`` when not given).

    ``max_joint_velocity`` (rad/s) and ``max_joint_acceleration`` (rad/s^2) are 7 values each,
    the Panda's own by default. Raises ``ValueError`` naming a parameter that is out of range.
    Thread-safe: every method takes the arm's lock.
    """

    joint_limits: JointLimits = PANDA_JOINT_LIMITS
    home_joints: np.ndarray = PANDA_HOME_JOINTS

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
        for name, value in (("command_latency_s", command_latency_s), ("state_noise_std", state_noise_std)):
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"SimRobot: {name} must be a finite number >= 0.0, got {value!r}")
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
        panda_chain.load()  # the IK's compiled code, before the first tick asks for it
        # True model state.
        self._q = self.home_joints.copy()
        self._v = np.zeros(7)
        self._q_target = self.home_joints.copy()
        self._gripper = 1.0
        self._gripper_target = 1.0
        self._t = self.clock.now()
        # Commands waiting out the latency: (apply_time, kind, value).
        self._pending: collections.deque[_Command] = collections.deque()
        self._last_commanded_q = self.home_joints.copy()  # IK seed: where the arm is being sent
        self._estop = False
        self._ik_failing = False
        #: End-effector targets refused because IK had no acceptable answer.
        self.ik_failures = 0
        #: Commands ignored while the e-stop was latched.
        self.rejected_commands = 0
        self.world.bind(on_reset=self.go_home, sync=self.sync)
        self.world.observe_tip(tip_position(self._q), self._t)

    # -- reading -----------------------------------------------------------------------------
    def read(self) -> ArmReading:
        """The arm now, with the configured noise on the joints."""
        with self._lock:
            self.sync()
            q = self._q.copy()
            v = self._v.copy()
            if self.state_noise_std > 0:
                q += self._rng.normal(0.0, self.state_noise_std, 7)
                v += self._rng.normal(0.0, self.state_noise_std, 7)
            return ArmReading(
                time_s=self._t,
                joint_positions=q,
                joint_velocities=v,
                ee=tip_pose(q),
                gripper=self._gripper,
                estopped=self._estop,
            )

    def true_joints(self) -> np.ndarray:
        """The joints (7, rad) without noise."""
        with self._lock:
            self.sync()
            return self._q.copy()

    def true_ee(self) -> Pose:
        """The gripper tip pose without noise (for the camera, the expert and the judge)."""
        with self._lock:
            self.sync()
            return tip_pose(self._q)

    def true_gripper(self) -> float:
        """The gripper opening (0 closed .. 1 open) without noise."""
        with self._lock:
            self.sync()
            return self._gripper

    def snapshot(self) -> tuple[Pose, float, float]:
        """The true tip pose, gripper opening and sim time, all at one instant (for drawing)."""
        with self._lock:
            self.sync()
            return tip_pose(self._q), self._gripper, self._t

    # -- commanding --------------------------------------------------------------------------
    def command_pose(self, pose: Pose) -> None:
        """Track the tip pose ``pose`` through IK from the last target; an unreachable pose is
        counted in ``ik_failures`` and the last target kept. Raises ``ValueError`` on a pose that
        is not a finite 3-vector and quaternion."""
        with self._lock:
            if self._refuse_if_estopped("command_ee"):
                return
            position = np.asarray(pose.position, dtype=float)
            quaternion = np.asarray(pose.quaternion, dtype=float)
            if position.shape != (3,) or quaternion.shape != (4,):
                raise ValueError(
                    "SimRobot.command_ee: pose needs a 3-vector and a quaternion, "
                    f"got {position!r}, {quaternion!r}"
                )
            transform = pose_to_transform(pose)
            if transform is None:
                raise ValueError(
                    f"SimRobot.command_ee: non-finite pose {position.tolist()!r} {quaternion.tolist()!r}"
                )
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
                return
            if self._ik_failing:
                logger.info("Simulated Panda: end-effector targets reachable again.")
            self._ik_failing = False
            self._last_commanded_q = q
            self._queue("joints", q)

    def command_joints(self, joints: np.ndarray) -> None:
        """Track ``joints`` (7 rad), clipped to the joint limits. Raises ``ValueError`` unless
        they are 7 finite values."""
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
        """Move the gripper to ``opening`` (clipped to 0 .. 1) at ``gripper_speed``."""
        if not math.isfinite(opening):
            raise ValueError(f"SimRobot.command_gripper: opening must be finite, got {opening!r}")
        with self._lock:
            if self._refuse_if_estopped("command_gripper"):
                return
            self._queue("gripper", min(1.0, max(0.0, float(opening))))

    def hold(self) -> None:
        """Drop pending commands and track where the arm is now."""
        with self._lock:
            self.sync()
            self._pending.clear()
            self._q_target = self._q.copy()
            self._last_commanded_q = self._q.copy()
            self._gripper_target = self._gripper

    def emergency_stop(self) -> None:
        """Stop dead and ignore commands until :meth:`reset_fault`."""
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
        """Clear a latched emergency stop."""
        with self._lock:
            if self._estop:
                logger.info("Simulated Panda: emergency stop cleared.")
            self._estop = False

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
            self.world.observe_tip(tip_position(self._q), self._t)

    # -- time --------------------------------------------------------------------------------
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
                        self._q_target = np.asarray(value)
                    else:
                        self._gripper_target = float(value)
                self._integrate(h)
                self._t = t_next
                self.world.observe_tip(tip_position(self._q), self._t)

    # -- internals ---------------------------------------------------------------------------
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

    def _queue(self, kind: Literal["joints", "gripper"], value: np.ndarray | float) -> None:
        self.sync()
        self._pending.append((self._t + self.command_latency_s, kind, value))

"""What the two simulated Pandas (kinematic :class:`~robot_agent.sim.arm.SimArm`, MuJoCo
:class:`~robot_agent.sim.mujoco_arm.MujocoArm`) do the same way: panda-python's kinematics for the
shield's hooks, manual-clock stepping, and refusing commands while the e-stop is latched."""

from __future__ import annotations

import logging

import numpy as np

from robot_agent.sim.clock import Clock, ManualClock, WallClock
from robot_agent.sim.kinematics import JointLimits, pose_to_transform, solve_ik, tip_pose
from safety.types import Pose

__all__ = ["SimArmBase"]

logger = logging.getLogger(__name__)


class SimArmBase:
    """Mixin: needs ``joint_limits``, ``clock``, ``sync()``, ``_estop`` and ``rejected_commands``."""

    joint_limits: JointLimits
    clock: Clock
    rejected_commands: int
    _estop: bool

    @property
    def realtime(self) -> bool:
        """True on the wall clock (the model runs in real time)."""
        return isinstance(self.clock, WallClock)

    @property
    def estopped(self) -> bool:
        """True while an emergency stop is latched (until ``reset_fault``)."""
        return self._estop

    def sync(self) -> None:  # pragma: no cover - every arm defines it
        raise NotImplementedError

    def inverse_kinematics(self, pose: Pose, seed: np.ndarray) -> np.ndarray | None:
        """The joints (7 rad) reaching ``pose`` near ``seed`` through panda-python's IK (the solver
        the arm's own end-effector commands use in joint mode); None when unreachable. Pure."""
        transform = pose_to_transform(pose)
        if transform is None:
            return None
        q, _ = solve_ik(transform, np.asarray(seed, dtype=float), self.joint_limits)
        return q

    def forward_kinematics(self, joints: np.ndarray) -> Pose:
        """The tip pose (the Franka Hand's TCP, ``panda_py.fk``) at ``joints`` (7 rad). Pure."""
        return tip_pose(np.asarray(joints, dtype=float))

    def step(self, dt_s: float) -> None:
        """Advance a manual-clock simulation by ``dt_s`` seconds. Raises ``RuntimeError`` on the
        wall clock."""
        if not isinstance(self.clock, ManualClock):
            raise RuntimeError("SimRobot.step: this robot runs on the wall clock; build it with realtime = false")
        self.clock.advance(dt_s)
        self.sync()

    def _refuse_if_estopped(self, what: str) -> bool:
        if self._estop:
            self.rejected_commands += 1
            logger.debug("Simulated Panda: %s ignored, emergency stop latched.", what)
        return self._estop

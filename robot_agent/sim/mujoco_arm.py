"""The simulated Franka Panda in MuJoCo: rigid-body dynamics, contact, a two-finger hand.

:class:`MujocoArm` offers the calls of the kinematic :class:`robot_agent.sim.arm.SimArm` (so the
``sim`` driver and camera adapt either), but the arm is now a torque-driven multibody in the
scene of :mod:`robot_agent.sim.mujoco_scene`, and commands reach it the way the real drivers
drive a Franka:

- ``control_mode = "cartesian_impedance"`` (the Franka driver's default): an end-effector target
  is tracked by a Cartesian impedance law, the one of ``franka_ros``'s
  ``cartesian_impedance_example_controller``: tau = J^T (-K e - D J dq) + (I - J^T J^T#)(K_n
  (q_n - q) - D_n dq), with the pose error e (position; orientation from the rotation matrices,
  Siciliano et al., *Robotics*, eq. 3.85), K = diag(1000 N/m x3, 60 N m/rad x3), D = 2 sqrt(K),
  a null-space spring K_n = 10 N m/rad to the posture at reset; joint targets use the joint law;
- ``control_mode = "joint_impedance"``: an end-effector target goes through the IK (panda-python's,
  as the kinematic sim's) to a joint target, tracked by the joint impedance law tau = K_q (q_d -
  q) - D_q dq with ``franka_ros``'s ``joint_impedance_example_controller`` gains
  K_q = (600, 600, 600, 600, 250, 150, 50) N m/rad, D_q = (50, 50, 50, 20, 20, 20, 10) N m s/rad;
- gravity is compensated by the model (as the real arm's controller does); torques are clipped to
  the documented limits by the actuators; the gripper is a width command (0 closed .. 1 = 8 cm);
- an emergency stop brakes: the joints are held where they were with stiff, heavily damped
  gains (the real arm's brakes) and commands are ignored until :meth:`MujocoArm.reset_fault`.
  The brake's damping is the joints' passive damping while it is on (MuJoCo integrates that
  implicitly): as a torque computed once per 2 ms step it is unstable where two joint axes line
  up (joints 1 and 3 at q2 = 0 counter-rotate with about 0.2 kg m^2: D dt / I = 400 * 0.002 / 0.2 > 2).

Physics steps every 2 ms (500 Hz); the model advances lazily to ``clock.now()`` whenever the arm
is touched (wall clock: real time; ``ManualClock``: only on ``step(dt)``, faster than real time).
After each physics step the task world judges the state (:meth:`PickPlaceWorld.observe`).
Deterministic for a seed on a manual clock. Thread-safe: every method takes the arm's lock;
renderers copy the state (:meth:`MujocoArm.physics_state`) and draw without it.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from robot_agent.sim import panda_chain
from robot_agent.sim.arm import PANDA_HOME_JOINTS, PANDA_JOINT_LIMITS, ArmReading
from robot_agent.sim.arm_base import SimArmBase
from robot_agent.sim.clock import Clock, WallClock
from robot_agent.sim.kinematics import pose_to_transform, solve_ik, tip_pose
from robot_agent.sim.mujoco_render import import_mujoco
from robot_agent.sim.mujoco_scene import PAD_THICKNESS_M, PHYSICS_DT_S, SceneIds, build
from robot_agent.sim.mujoco_task import PickPlaceScene, PickPlaceWorld
from safety.types import Pose

__all__ = ["CONTROL_MODES", "ControlMode", "MujocoArm", "PhysicsState"]

logger = logging.getLogger(__name__)

ControlMode = Literal["cartesian_impedance", "joint_impedance"]
CONTROL_MODES: tuple[ControlMode, ...] = ("cartesian_impedance", "joint_impedance")

JOINT_STIFFNESS = np.array([600.0, 600.0, 600.0, 600.0, 250.0, 150.0, 50.0])
JOINT_DAMPING = np.array([50.0, 50.0, 50.0, 20.0, 20.0, 20.0, 10.0])
CARTESIAN_STIFFNESS = np.array([1000.0, 1000.0, 1000.0, 60.0, 60.0, 60.0])
CARTESIAN_DAMPING = 2.0 * np.sqrt(CARTESIAN_STIFFNESS)
NULLSPACE_STIFFNESS = 10.0
NULLSPACE_DAMPING = 2.0 * math.sqrt(NULLSPACE_STIFFNESS)
#: lambda^2 I of the damped null-space projector (the Jacobian's singular values at home are
#: 0.22 .. 1.8, so it changes nothing away from a singularity).
NULLSPACE_REGULARISATION = 1e-4 * np.eye(6)
BRAKE_STIFFNESS = 4.0 * JOINT_STIFFNESS
BRAKE_DAMPING = 4.0 * JOINT_DAMPING
FINGER_MAX_M = 0.04  # each finger; the hand opens to 8 cm

_Command = tuple[float, str, Any]


@dataclass(frozen=True)
class PhysicsState:
    """A copy of what a renderer needs, at sim time ``time_s``: ``qpos`` (model.nq),
    ``mocap_pos`` / ``mocap_quat`` (nmocap x 3 / x 4)."""

    time_s: float
    qpos: np.ndarray
    mocap_pos: np.ndarray
    mocap_quat: np.ndarray


class MujocoArm(SimArmBase):
    """The Panda in the MuJoCo scene, judged by ``world`` (a new :class:`PickPlaceWorld` on
    ``clock`` when not given; its ``conveyor`` decides whether the scene has the belt).

    Raises ``ValueError`` naming a parameter out of range, ``SceneError`` when the Panda model
    is not installed.
    """

    joint_limits = PANDA_JOINT_LIMITS
    home_joints = PANDA_HOME_JOINTS

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        world: PickPlaceWorld | None = None,
        control_mode: ControlMode = "cartesian_impedance",
        command_latency_s: float = 0.0,
        state_noise_std: float = 0.0,
        seed: int | None = None,
    ) -> None:
        mujoco = import_mujoco()
        if control_mode not in CONTROL_MODES:
            raise ValueError(f"MujocoArm: control_mode must be one of {CONTROL_MODES!r}, got {control_mode!r}")
        for name, value in (("command_latency_s", command_latency_s), ("state_noise_std", state_noise_std)):
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"MujocoArm: {name} must be a finite number >= 0.0, got {value!r}")
        self._mj = mujoco
        self.clock: Clock = clock if clock is not None else WallClock()
        self.world = world if world is not None else PickPlaceWorld(clock=self.clock, seed=seed)
        self.control_mode: ControlMode = control_mode
        self.command_latency_s = float(command_latency_s)
        self.state_noise_std = float(state_noise_std)
        self.physics_dt_s = PHYSICS_DT_S
        self.model, self.ids = build(conveyor=self.world.conveyor)
        self.data = mujoco.MjData(self.model)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        panda_chain.load()
        ids: SceneIds = self.ids
        self._nv = self.model.nv
        self._jacp = np.zeros((3, self._nv))
        self._jacr = np.zeros((3, self._nv))
        self._qa = ids.arm_qpos
        self._va = ids.arm_dof
        self._act = ids.arm_actuators
        self._t0_sim = 0.0
        self._t = self.clock.now()
        self._pending: collections.deque[_Command] = collections.deque()
        self._estop = False
        self._ik_failing = False
        self._mode: Literal["joint", "cartesian", "brake"] = "joint"
        self._free_damping = np.array(self.model.dof_damping[self._va], dtype=float)
        self._braking = False
        self._q_target = self.home_joints.copy()
        self._q_null = self.home_joints.copy()
        self._x_target = np.zeros(3)
        self._r_target = np.eye(3)
        self._gripper_target = 1.0
        self._last_commanded_q = self.home_joints.copy()
        #: End-effector targets refused because IK had no acceptable answer (joint mode).
        self.ik_failures = 0
        #: Commands ignored while the e-stop was latched.
        self.rejected_commands = 0
        #: The largest normal force (N) of any contact between the arm (links, hand, fingers) and
        #: the table since the last reset, and between the arm and anything but a cube.
        self.peak_table_force_n = 0.0
        self.peak_contact_force_n = 0.0
        self._arm_geoms = np.array([g for g in range(self.model.ngeom) if self.model.geom_bodyid[g] in ids.arm_bodies])
        self._is_arm_geom = np.zeros(self.model.ngeom, dtype=np.bool_)
        self._is_arm_geom[self._arm_geoms] = True
        self._cube_geom_colour = {g: c for c, g in ids.cube_geoms.items()}
        self._force = np.zeros(6)
        self._step_observers: list[Callable[[MujocoArm], None]] = []
        self.world.bind(apply=self._apply_scene, sync=self.sync)
        self._apply_scene(self.world.scene)

    # -- state ---------------------------------------------------------------------------------
    def read(self) -> ArmReading:
        """The arm now (joints with the configured noise; ee is the FK of the reported joints)."""
        with self._lock:
            self.sync()
            q = self.data.qpos[self._qa].copy()
            v = self.data.qvel[self._va].copy()
            if self.state_noise_std > 0:
                q += self._rng.normal(0.0, self.state_noise_std, 7)
                v += self._rng.normal(0.0, self.state_noise_std, 7)
            return ArmReading(
                time_s=self._t,
                joint_positions=q,
                joint_velocities=v,
                ee=tip_pose(q),
                gripper=self._opening(),
                estopped=self._estop,
            )

    def true_joints(self) -> np.ndarray:
        """The joint angles without noise: ``[7]`` rad."""
        with self._lock:
            self.sync()
            return np.array(self.data.qpos[self._qa], dtype=float)

    def true_ee(self) -> Pose:
        """The TCP pose without noise (for the expert and the judge)."""
        with self._lock:
            self.sync()
            return self._tcp_pose()

    def true_gripper(self) -> float:
        with self._lock:
            self.sync()
            return self._opening()

    def snapshot(self) -> tuple[Pose, float, float]:
        """The true TCP pose, gripper opening and sim time, all at one instant."""
        with self._lock:
            self.sync()
            return self._tcp_pose(), self._opening(), self._t

    def physics_state(self) -> PhysicsState:
        """A copy of the state a renderer draws (positions of everything), synced to now."""
        with self._lock:
            self.sync()
            d = self.data
            return PhysicsState(self._t, d.qpos.copy(), d.mocap_pos.copy(), d.mocap_quat.copy())

    def arm_geom_lowest_z(self) -> float:
        """The lowest point (m) of any collision geometry of the arm (links, hand, fingers) now,
        from each geom's bounding box in the world frame: what a table check must bound."""
        with self._lock:
            self.sync()
            return self.lowest_z_unsynced()

    def lowest_z_unsynced(self) -> float:
        """:meth:`arm_geom_lowest_z` at the last physics step, without advancing the physics: for
        a step observer (:meth:`add_step_observer`), which runs inside :meth:`sync`."""
        m, d = self.model, self.data
        g = self._arm_geoms
        centre = d.geom_xpos[g] + np.einsum("nij,nj->ni", d.geom_xmat[g].reshape(-1, 3, 3), m.geom_aabb[g, :3])
        half = np.einsum("nij,nj->ni", np.abs(d.geom_xmat[g].reshape(-1, 3, 3)), m.geom_aabb[g, 3:])
        return float(np.min(centre[:, 2] - half[:, 2]))

    def add_step_observer(self, observer: Callable[[MujocoArm], None]) -> None:
        """Call ``observer(arm)`` after every physics step (2 ms of sim time), under the arm's
        lock, so a safety watch sees every state the physics passes through, not only the ones a
        reader happens to sync to. The observer reads ``arm.data`` (and
        :meth:`lowest_z_unsynced`, ``peak_*_force_n``) as they are; it must not call a method that
        syncs (it would recurse) and should take microseconds (it runs 500 times a second)."""
        with self._lock:
            self._step_observers.append(observer)

    def link_positions(self) -> np.ndarray:
        """The origins of the arm's bodies (links, hand, fingers) now: ``[n, 3]`` metres."""
        with self._lock:
            self.sync()
            return np.array(self.data.xpos[list(self.ids.arm_bodies)], dtype=float)

    # -- commanding ----------------------------------------------------------------------------
    def command_pose(self, pose: Pose) -> None:
        """Track the TCP pose ``pose``: Cartesian impedance, or IK to a joint target in joint
        mode (an unreachable pose is counted in ``ik_failures`` and the last target kept).
        Raises ``ValueError`` on a pose that is not a finite 3-vector and quaternion."""
        transform = pose_to_transform(pose)
        if transform is None:
            raise ValueError(
                "SimRobot.command_ee: pose needs a finite 3-vector and quaternion, "
                f"got {np.asarray(pose.position).tolist()!r}, {np.asarray(pose.quaternion).tolist()!r}"
            )
        with self._lock:
            if self._refuse_if_estopped("command_ee"):
                return
            if self.control_mode == "cartesian_impedance":
                self._queue("pose", transform)
                return
            q, reason = solve_ik(transform, self._last_commanded_q, self.joint_limits)
            if q is None:
                self.ik_failures += 1
                if not self._ik_failing:
                    logger.warning("Simulated Panda: end-effector target %s refused, %s; keeping the last target.",
                                   np.round(transform[:3, 3], 4).tolist(), reason)  # fmt: skip
                self._ik_failing = True
                return
            self._ik_failing = False
            self._last_commanded_q = q
            self._queue("joints", q)

    def command_joints(self, joints: np.ndarray) -> None:
        """Track ``joints`` (7 rad, clipped to the limits) with the joint impedance law. Raises
        ``ValueError`` unless they are 7 finite values."""
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
        """Drive the fingers to ``opening`` (clipped to 0 .. 1; 1 = 8 cm). A cube between them
        stops them: the hand then squeezes it (the model's actuator force, about 12 N)."""
        if not math.isfinite(opening):
            raise ValueError(f"SimRobot.command_gripper: opening must be finite, got {opening!r}")
        with self._lock:
            if self._refuse_if_estopped("command_gripper"):
                return
            self._queue("gripper", min(1.0, max(0.0, float(opening))))

    def hold(self) -> None:
        """Drop pending commands and hold the joints where they are now (zero velocity)."""
        with self._lock:
            self.sync()
            self._pending.clear()
            if self._mode != "brake":
                self._mode = "joint"
            q = self.data.qpos[self._qa].copy()
            self._q_target = q
            self._last_commanded_q = q

    def emergency_stop(self) -> None:
        """Brake now and ignore commands until :meth:`reset_fault`."""
        with self._lock:
            self.sync()
            self._estop = True
            self._pending.clear()
            self._mode = "brake"
            self._q_target = self.data.qpos[self._qa].copy()
            self._last_commanded_q = self._q_target.copy()
        logger.warning("Simulated Panda: emergency stop, latched until reset_fault().")

    def reset_fault(self) -> None:
        """Clear a latched emergency stop; the arm holds where it is."""
        with self._lock:
            self.sync()
            if self._estop:
                logger.info("Simulated Panda: emergency stop cleared.")
            self._estop = False
            if self._mode == "brake":
                self._mode = "joint"
                q = np.array(self.data.qpos[self._qa], dtype=float)
                self._q_target = q
                self._last_commanded_q = q.copy()

    def go_home(self) -> None:
        """Put the arm at home at rest with the gripper open, at once (the scene stays)."""
        with self._lock:
            self.sync()
            self._home()
            self._mj.mj_forward(self.model, self.data)
            self._report()

    # -- time ----------------------------------------------------------------------------------
    def sync(self) -> None:
        """Run the physics up to the clock's now in 2 ms steps, applying due commands and
        letting the world judge after each step."""
        with self._lock:
            now = self.clock.now()
            dt = self.physics_dt_s
            while self._t + dt <= now + 1e-9:
                t_next = self._t + dt
                # A command due at t drives the steps from t on (not the step ending at t).
                while self._pending and self._pending[0][0] <= self._t + 1e-9:
                    _, kind, value = self._pending.popleft()
                    self._apply_command(kind, value)
                self._control()
                self._mj.mj_step(self.model, self.data)
                self._t = t_next
                self._watch_contacts()
                self._report()
                for observer in self._step_observers:
                    observer(self)

    # -- internals -------------------------------------------------------------------------------
    def _apply_scene(self, scene: PickPlaceScene) -> None:
        with self._lock:
            self.sync()
            m, d = self.model, self.data
            self._mj.mj_resetData(m, d)
            self._home()
            for cube in scene.cubes:
                a = self.ids.cube_qpos[cube.colour]
                d.qpos[a : a + 3] = cube.position
                d.qpos[a + 3 : a + 7] = (math.cos(cube.yaw / 2), 0.0, 0.0, math.sin(cube.yaw / 2))
            d.mocap_pos[self.ids.pad_mocap] = (scene.pad[0], scene.pad[1], PAD_THICKNESS_M / 2)
            if self.ids.belt_actuator is not None:
                d.ctrl[self.ids.belt_actuator] = scene.conveyor_speed
                d.qvel[self.model.jnt_dofadr[self.model.actuator_trnid[self.ids.belt_actuator, 0]]] = scene.conveyor_speed
            self._mj.mj_forward(m, d)
            self.peak_table_force_n = 0.0
            self.peak_contact_force_n = 0.0
            self._report()

    def _home(self) -> None:
        d = self.data
        self._pending.clear()
        d.qpos[self._qa] = self.home_joints
        d.qvel[self._va] = 0.0
        d.qpos[self.ids.finger_qpos] = FINGER_MAX_M
        d.qvel[self.ids.finger_dof] = 0.0
        d.ctrl[:] = 0.0
        if self.ids.belt_actuator is not None:
            d.ctrl[self.ids.belt_actuator] = self.world.conveyor_speed
        d.ctrl[self.ids.gripper_actuator] = 1.0
        self._gripper_target = 1.0
        self._q_target = self.home_joints.copy()
        self._q_null = self.home_joints.copy()
        self._last_commanded_q = self.home_joints.copy()
        self._mode = "brake" if self._estop else "joint"

    def _apply_command(self, kind: str, value: Any) -> None:
        if self._estop:
            return
        if kind == "joints":
            self._q_target = np.asarray(value, dtype=float)
            self._mode = "joint"
        elif kind == "pose":
            self._x_target = value[:3, 3].copy()
            self._r_target = value[:3, :3].copy()
            self._mode = "cartesian"
        else:
            self._gripper_target = float(value)
            self.data.ctrl[self.ids.gripper_actuator] = self._gripper_target

    def _set_brake(self, on: bool) -> None:
        """The brake's damping as the arm joints' passive damping (implicit in MuJoCo's
        integrator, stable at any gain), or the model's own damping back."""
        if on != self._braking:
            self.model.dof_damping[self._va] = self._free_damping + BRAKE_DAMPING if on else self._free_damping
            self._braking = on

    def _control(self) -> None:
        self._set_brake(self._mode == "brake")
        d = self.data
        q = d.qpos[self._qa]
        dq = d.qvel[self._va]
        if self._mode == "cartesian":
            mj = self._mj
            mj.mj_jacSite(self.model, d, self._jacp, self._jacr, self.ids.tcp_site)
            jac = np.vstack([self._jacp[:, self._va], self._jacr[:, self._va]])
            r = d.site_xmat[self.ids.tcp_site].reshape(3, 3)
            err = np.empty(6)
            err[:3] = d.site_xpos[self.ids.tcp_site] - self._x_target
            # -1/2 sum_i r_i x rd_i (Siciliano eq. 3.85) is vee(R Rd^T - Rd R^T) / 2 (columns r_i,
            # rd_i), since [a x b]_x = b a^T - a b^T: one 3x3 product instead of three np.cross.
            s = r @ self._r_target.T
            err[3] = 0.5 * (s[2, 1] - s[1, 2])
            err[4] = 0.5 * (s[0, 2] - s[2, 0])
            err[5] = 0.5 * (s[1, 0] - s[0, 1])
            twist = jac @ dq
            wrench = -CARTESIAN_STIFFNESS * err - CARTESIAN_DAMPING * twist
            tau = jac.T @ wrench
            # Null-space torque (I - J^T J^T#) tau_n with J^T# = (J J^T)^-1 J, the pseudo-inverse of
            # J^T at full rank; damped (J J^T + lambda^2 I) so that it stays bounded at a
            # singularity: one 6x6 solve, about 1/4 the cost of np.linalg.pinv.
            tau_n = NULLSPACE_STIFFNESS * (self._q_null - q) - NULLSPACE_DAMPING * dq
            tau += tau_n - jac.T @ np.linalg.solve(jac @ jac.T + NULLSPACE_REGULARISATION, jac @ tau_n)
        elif self._mode == "brake":
            tau = BRAKE_STIFFNESS * (self._q_target - q)  # damping: the joints' own, see _set_brake
        else:
            tau = JOINT_STIFFNESS * (self._q_target - q) - JOINT_DAMPING * dq
        d.ctrl[self._act] = tau  # the actuators clip to the documented torque limits

    def _watch_contacts(self) -> None:
        d = self.data
        n = d.ncon
        if n == 0:
            return
        geoms = d.contact.geom[:n]
        arm = self._is_arm_geom[geoms]
        touching = arm[:, 0] ^ arm[:, 1]
        if not touching.any():
            return
        table = self.ids.table_geom
        for i in np.flatnonzero(touching):
            other = int(geoms[i, 1] if arm[i, 0] else geoms[i, 0])
            if other in self._cube_geom_colour:
                continue
            self._mj.mj_contactForce(self.model, d, int(i), self._force)
            f = abs(float(self._force[0]))
            self.peak_contact_force_n = max(self.peak_contact_force_n, f)
            if other == table:
                self.peak_table_force_n = max(self.peak_table_force_n, f)

    def _report(self) -> None:
        d, ids = self.data, self.ids
        cubes: dict[str, np.ndarray] = {}
        yaw: dict[str, float] = {}
        speed: dict[str, float] = {}
        for colour, a in ids.cube_qpos.items():
            cubes[colour] = d.qpos[a : a + 3].copy()
            w, x, y, z = d.qpos[a + 3 : a + 7]
            yaw[colour] = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
            v = ids.cube_dof[colour]
            speed[colour] = float(np.linalg.norm(d.qvel[v : v + 3]))
        gripping = dict.fromkeys(cubes, False)
        n = d.ncon
        if n:
            geoms = d.contact.geom[:n]
            fingers = self.ids.finger_geoms
            for g1, g2 in geoms:
                if g1 in fingers or g2 in fingers:
                    touched = self._cube_geom_colour.get(int(g2 if g1 in fingers else g1))
                    if touched is not None:
                        gripping[touched] = True
        pad = d.mocap_pos[ids.pad_mocap].copy()
        pad[2] = PAD_THICKNESS_M
        self.world.observe(self._t, tcp=d.site_xpos[ids.tcp_site].copy(), cubes=cubes, cube_yaw=yaw,
                           cube_speed=speed, gripping=gripping, pad=pad)  # fmt: skip

    def _tcp_pose(self) -> Pose:
        d = self.data
        quat = np.zeros(4)
        self._mj.mju_mat2Quat(quat, d.site_xmat[self.ids.tcp_site])
        w, x, y, z = quat
        if w < 0:
            w, x, y, z = -w, -x, -y, -z
        return Pose(d.site_xpos[self.ids.tcp_site].copy(), np.array([x, y, z, w]))

    def _opening(self) -> float:
        width = float(np.sum(self.data.qpos[self.ids.finger_qpos]))
        return min(1.0, max(0.0, width / (2 * FINGER_MAX_M)))

    def _queue(self, kind: str, value: Any) -> None:
        self.sync()
        self._pending.append((self._t + self.command_latency_s, kind, value))

"""The one place that converts between policy actions and robot targets.

A policy speaks one of four action spaces (``PolicySpec.action_space``; their words and sizes
are ``vla.vocabulary``'s); the arm takes absolute end-effector poses or joint positions. Chunks
are converted on arrival into *waypoints*, absolute vectors the trajectory code can blend and
interpolate component-wise without knowing what they mean:

- end-effector spaces: ``[x, y, z, r0, r1, r2, gripper]``, where the orientation is
  ``R = exp(r) * R_ref`` for a fixed reference orientation ``R_ref`` (the pose at start). Near the
  working orientation ``r`` is small, away from the rotation-vector wrap at pi (a gripper
  pointing down sits right on it in base-frame rotation vectors); a policy that turns the tool
  half a turn from there reaches it, hence the unwrapping below.
- joint spaces: ``[q0, ..., q(n-1), gripper]``.

The gripper is always absolute (0 closed, 1 open). Rotation maths comes from ``safety.rotations``.

Rotation vectors are not unique: axis * (angle + 2*pi*k) is the same rotation for every integer
k, and ``quat_to_rotvec`` returns the one with angle in [0, pi], which jumps (+3.107 -> -3.107
about z) as a turn passes pi. Anything interpolated or differenced must use the representative
nearest the previous value instead (``safety.rotations.rotvec_nearest``, :func:`unwrap_rotvecs`): the waypoints of a chunk
(:meth:`ActionSpace.to_waypoints`), a chunk against the plan (:meth:`ActionSpace.unwrap_waypoints`,
given to the ``Trajectory``), ``prev_actions`` (:meth:`ActionSpace.to_actions`) and the state
vector from one observation to the next (:class:`StateVectorBuilder`). Joint angles are not
wrapped: ``q`` and ``q + 2*pi`` are different commands for a joint whose range exceeds a turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from robot_agent.drivers.base import RobotState
from robot_agent.errors import SpecMismatch
from safety.compiled import jit
from safety.rotations import (
    quat_conjugate,
    quat_multiply,
    quat_normalize,
    quat_to_rotvec,
    rotvec_nearest,
    rotvec_to_quat,
)
from safety.types import Measured, Pose, Target
from vla import vocabulary
from vla.vocabulary import ACTION_SPACES, EE_POSITION_NAMES, EE_ROTVEC_NAMES, STATE_NAMES

__all__ = [
    "ActionSpace",
    "StateVectorBuilder",
    "load_compiled",
    "measured_from_state",
    "state_vector",
    "unwrap_rotvecs",
]


# How far from a decision of rotvec_nearest a row must be for the compiled check to call it
# (relative): its sums may differ from numpy's dot products in the last bits (BLAS orders and
# fuses them), never by anything near this.
_MARGIN = 1e-9
_SMALL_ANGLE = 1e-8  # safety.rotations._SMALL_ANGLE: below it, rotvec_nearest's identity branch


@jit
def _unchanged_rows(rotvecs: np.ndarray, near: np.ndarray) -> int:
    """How many leading rows of ``rotvecs`` ``[n, 3]`` :func:`unwrap_rotvecs` certainly leaves as
    they are: each non-finite (or after one: passed through) or, for ``rotvec_nearest`` (the
    row before, the first ``near`` ``[3]``, as reference), ``k = 0`` with the rounding of every
    decision far from its boundary. The first row it cannot vouch for (a wrap, or a decision
    within :data:`_MARGIN` of its boundary) stops the count; the caller takes it from there
    with ``rotvec_nearest`` itself, so the result is bit for bit the same."""
    rx, ry, rz = near[0], near[1], near[2]
    two_pi = 2.0 * math.pi
    for k in range(rotvecs.shape[0]):
        x, y, z = rotvecs[k, 0], rotvecs[k, 1], rotvecs[k, 2]
        if (
            math.isfinite(x) and math.isfinite(y) and math.isfinite(z)
            and math.isfinite(rx) and math.isfinite(ry) and math.isfinite(rz)
        ):  # fmt: skip
            theta = math.sqrt(x * x + y * y + z * z)
            if theta < _SMALL_ANGLE * (1.0 + 1e-6):
                if not theta < _SMALL_ANGLE * (1.0 - 1e-6):
                    return k  # on the identity's boundary
                # the identity: unchanged while the reference is less than half a turn
                if not math.sqrt(rx * rx + ry * ry + rz * rz) < math.pi * (1.0 - _MARGIN):
                    return k
            else:
                along = (rx * x + ry * y + rz * z) / theta
                turns = (along - theta) / two_pi
                if not abs(turns) < 0.5 - _MARGIN * (1.0 + abs(along) + theta):
                    return k  # k != 0, or too near 0.5 to call
        rx, ry, rz = x, y, z
    return int(rotvecs.shape[0])


@jit
def _quats_of(
    rotvecs: np.ndarray, dots: np.ndarray, first: np.ndarray, second: np.ndarray, out: np.ndarray
) -> int:
    """``out[k]`` ``[4]`` := ``rotvec_to_quat(rotvecs[k])`` times ``first`` ``[4]``, then times
    ``second`` (``[4]``, or ``[0]``: none), as ``safety.rotations`` computes them on Python
    floats, given ``dots[k]`` = ``rotvecs[k].dot(rotvecs[k])`` (numpy's, see :func:`_row_dots`).
    Returns -1, or the first row where Python's ``math.sin`` would refuse the angle (infinite)."""
    for k in range(rotvecs.shape[0]):
        theta = math.sqrt(dots[k])
        half = 0.5 * theta
        if math.isinf(half):
            return k
        f = 0.5 - theta * theta / 48.0 if theta < _SMALL_ANGLE else math.sin(half) / theta
        ax, ay, az, aw = f * rotvecs[k, 0], f * rotvecs[k, 1], f * rotvecs[k, 2], math.cos(half)
        for b in (first, second):
            if b.shape[0] == 4:
                bx, by, bz, bw = b[0], b[1], b[2], b[3]
                ax, ay, az, aw = (
                    aw * bx + ax * bw + ay * bz - az * by,
                    aw * by - ax * bz + ay * bw + az * bx,
                    aw * bz + ax * by - ay * bx + az * bw,
                    aw * bw - ax * bx - ay * by - az * bz,
                )
        out[k, 0], out[k, 1], out[k, 2], out[k, 3] = ax, ay, az, aw
    return -1


@jit
def _rotvecs_of(quats: np.ndarray, dots: np.ndarray, out: np.ndarray) -> int:
    """``out[k]`` ``[3]`` := ``quat_to_rotvec(quats[k])`` as ``safety.rotations`` computes it on
    Python floats, given ``dots[k]`` = ``quats[k].dot(quats[k])`` (numpy's). Returns -1, or the
    first row ``quat_normalize`` would refuse (a norm not finite or below 1e-12)."""
    for k in range(quats.shape[0]):
        norm = math.sqrt(dots[k])
        if not math.isfinite(norm) or norm < 1e-12:
            return k
        x, y, z, w = quats[k, 0] / norm, quats[k, 1] / norm, quats[k, 2] / norm, quats[k, 3] / norm
        lead = x if x != 0.0 else (y if y != 0.0 else (z if z != 0.0 else 0.0))
        if w < 0 or (w == 0.0 and lead < 0):
            x, y, z, w = -x, -y, -z, -w
        s = math.sqrt(x * x + y * y + z * z)
        theta = 2.0 * math.atan2(s, w)
        f = 2.0 + theta * theta / 12.0 if s < _SMALL_ANGLE else theta / s
        out[k, 0], out[k, 1], out[k, 2] = f * x, f * y, f * z
    return -1


def _row_dots(rows: np.ndarray) -> np.ndarray:
    """``rows[k].dot(rows[k])`` for each row of ``rows`` ``[n, m]`` (C-contiguous float64), in one
    call: ``matmul``'s vector-by-vector case calls the BLAS ``ddot`` that ``ndarray.dot`` does,
    so the bits are the same (``test_action_space_compiled.py`` checks it)."""
    out: np.ndarray = np.matmul(rows[:, None, :], rows[:, :, None]).reshape(rows.shape[0])
    return out


_NO_QUATERNION = np.empty(0)


def _rotvecs_through(rotvecs: np.ndarray, first: np.ndarray, second: np.ndarray | None) -> np.ndarray | None:
    """``quat_to_rotvec(quat_multiply(quat_multiply(rotvec_to_quat(r), first), second))`` for each
    row ``r`` of ``rotvecs`` ``[n, 3]`` (``second`` None: without it), ``[n, 3]``, bit for bit
    what the ``safety.rotations`` calls give, in four calls instead of four per row; None where
    one of them would raise (the caller then makes them, and they raise)."""
    rows = np.array(rotvecs, dtype=np.float64, order="C")
    quats = np.empty((rows.shape[0], 4))
    after = _NO_QUATERNION if second is None else np.array(second, dtype=np.float64)
    if _quats_of(rows, _row_dots(rows), np.array(first, dtype=np.float64), after, quats) >= 0:
        return None
    out = np.empty((rows.shape[0], 3))
    if _rotvecs_of(quats, _row_dots(quats), out) >= 0:
        return None
    return out


def load_compiled() -> None:
    """Load (or on a machine's first run compile) the compiled loops now, not at the first chunk."""
    _unchanged_rows(np.zeros((1, 3)), np.zeros(3))
    _rotvecs_through(np.zeros((1, 3)), np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, 1.0]))
    _rotvecs_through(np.zeros((1, 3)), np.array([0.0, 0.0, 0.0, 1.0]), None)


def _nearest(rotvec: np.ndarray, near: np.ndarray) -> np.ndarray:
    """``rotvec_nearest``, passing a non-finite input through unchanged (nothing to choose
    between; the shield refuses non-finite targets) instead of raising inside chunk intake.
    When :func:`_unchanged_rows` vouches for it, the copy ``rotvec_nearest`` would return,
    without its numpy calls."""
    row = np.array(rotvec, dtype=float)
    ref = np.array(near, dtype=float)
    if row.shape == (3,) and ref.shape == (3,) and _unchanged_rows(row.reshape(1, 3), ref) == 1:
        return row
    if not (np.isfinite(rotvec).all() and np.isfinite(near).all()):
        return np.array(rotvec, dtype=float)
    return rotvec_nearest(rotvec, near)


def unwrap_rotvecs(rotvecs: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Rotation vectors ``[n, 3]`` (radians) in sequence, each the representative of its rotation
    nearest the one before it, the first nearest ``near`` ``[3]``
    (``safety.rotations.rotvec_nearest``: ``u * (theta + 2*pi*k)`` with the k that brings it
    closest). Continuity fails only near ``|r| = 2*pi*k``, a whole turn away from where the
    coordinates are centred. Non-finite rows come back unchanged. The rows the compiled check
    vouches for (:func:`_unchanged_rows`: all of them, unless the sequence crosses a wrap) are
    not recomputed."""
    out = np.array(rotvecs, dtype=float)
    previous = np.asarray(near, dtype=float)
    start = 0
    if out.ndim == 2 and out.shape[1] == 3 and previous.shape == (3,):
        start = _unchanged_rows(out, np.array(previous, dtype=float))
        if start:
            previous = out[start - 1]
    for k in range(start, out.shape[0]):
        out[k] = previous = _nearest(out[k], previous)
    return out


def measured_from_state(state: RobotState) -> Measured:
    """The shield's view of one robot reading."""
    return Measured(
        time_s=state.time_s,
        ee=state.ee,
        joints=np.asarray(state.joint_positions, dtype=float),
        gripper=state.gripper,
    )


def state_vector(
    state: RobotState, names: Sequence[str], near_rotvec: np.ndarray | None = None
) -> np.ndarray:
    """The policy's state vector ``[len(names)]``, float32, filled entry by entry from ``names``
    (the spec's ``state_names``, words of :data:`vla.vocabulary.STATE_NAMES`); ``ee_r*`` is the
    base-frame rotation vector of the end-effector (radians), the representative nearest
    ``near_rotvec`` when given (else angle in [0, pi]). Raises :class:`SpecMismatch` for a name
    not in ``STATE_NAMES``. Observation after observation, use :class:`StateVectorBuilder`,
    which keeps ``ee_r*`` continuous."""
    return _state_vector(state, names, None, near_rotvec)


# Where a state-vector entry comes from: (_JOINT, j), (_POSITION, i), (_ROTVEC, i), (_GRIPPER, 0).
_JOINT, _POSITION, _ROTVEC, _GRIPPER = range(4)


def _sources(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Where each of ``names`` is read from; raises :class:`SpecMismatch` for the first that is
    not fillable."""
    out = []
    for name in names:
        joint = vocabulary.joint_index(name)
        if joint is not None:
            out.append((_JOINT, joint))
        elif name in EE_POSITION_NAMES:
            out.append((_POSITION, EE_POSITION_NAMES.index(name)))
        elif name in EE_ROTVEC_NAMES:
            out.append((_ROTVEC, EE_ROTVEC_NAMES.index(name)))
        elif name == "gripper":
            out.append((_GRIPPER, 0))
        else:
            raise _not_fillable(name)
    return tuple(out)


def _state_vector(
    state: RobotState,
    names: Sequence[str],
    sources: tuple[tuple[int, int], ...] | None,
    near_rotvec: np.ndarray | None,
) -> np.ndarray:
    """:func:`state_vector`, reading ``sources`` (``_sources(names)``, given or worked out)."""
    rotvec = quat_to_rotvec(state.ee.quaternion)
    if near_rotvec is not None:
        rotvec = _nearest(rotvec, np.asarray(near_rotvec, dtype=float))
    if sources is None:
        sources = _sources(names)
    out = np.empty(len(sources), dtype=np.float32)
    for i, (kind, index) in enumerate(sources):
        if kind == _JOINT:
            out[i] = state.joint_positions[index]
        elif kind == _POSITION:
            out[i] = state.ee.position[index]
        elif kind == _ROTVEC:
            out[i] = rotvec[index]
        else:
            out[i] = state.gripper
    return out


def _not_fillable(name: str) -> SpecMismatch:
    return SpecMismatch(f"state name {name!r} is not one the agent can fill ({', '.join(STATE_NAMES)})")


class StateVectorBuilder:
    """The policy's state vectors, observation after observation, with ``ee_r*`` continuous.

    The base-frame rotation vector of a tool pointing down sits on the pi wrap, so read afresh
    each time it flips between +3.1416 and -3.1416 with sensor noise; here each observation's is
    the representative nearest the previous one (``rotvec_nearest``). One per policy
    session; :meth:`reset` forgets the previous orientation (a new episode, a new policy).

        builder = StateVectorBuilder(spec.state_names)
        vector = builder.build(state)  # float32 [len(state_names)]
    """

    def __init__(self, names: Sequence[str]) -> None:
        unknown = [name for name in names if name not in STATE_NAMES]
        if unknown:
            raise _not_fillable(unknown[0])
        self.names = tuple(names)
        self._sources = _sources(self.names)
        self._rotvec: np.ndarray | None = None

    @property
    def rotvec(self) -> np.ndarray | None:
        """The end-effector rotation vector ``[3]`` of the last vector built (the representative
        sent), or None before the first; what ``ActionSpace.to_actions(near_rotvec=...)`` takes."""
        return None if self._rotvec is None else self._rotvec.copy()

    def build(self, state: RobotState) -> np.ndarray:
        """The state vector of ``state`` (see :func:`state_vector`)."""
        rotvec = quat_to_rotvec(state.ee.quaternion)
        if self._rotvec is not None:
            rotvec = _nearest(rotvec, self._rotvec)
        self._rotvec = rotvec
        return _state_vector(state, self.names, self._sources, rotvec)

    def reset(self) -> None:
        self._rotvec = None


class ActionSpace:
    """Conversions for one policy action space on one arm.

    ``reference`` is the orientation ``R_ref`` of end-effector waypoints (see the module docs);
    any orientation near the working one will do, the arm's pose at start is the natural choice.
    """

    def __init__(
        self, name: str, action_dim: int, num_joints: int, reference: np.ndarray | None = None
    ) -> None:
        if name not in ACTION_SPACES:
            raise SpecMismatch(
                f"action_space {name!r} is not supported (supported: {', '.join(ACTION_SPACES)})"
            )
        self.name = name
        self.is_ee = vocabulary.is_end_effector(name)
        self.is_delta = vocabulary.is_delta(name)
        self.num_joints = num_joints
        expected = vocabulary.action_dim(name, num_joints)
        if action_dim != expected:
            layout = vocabulary.action_layout(name, num_joints)
            raise SpecMismatch(f"action_dim is {action_dim}, {name} on this arm needs {expected} ({layout})")
        self.action_dim = action_dim
        self.waypoint_dim = expected
        self._ref = quat_normalize(reference) if reference is not None else np.array([0.0, 0.0, 0.0, 1.0])
        self._ref_inv = quat_conjugate(self._ref)

    @property
    def bounded_columns(self) -> tuple[int, ...]:
        """Waypoint columns that are bounded and step-like: the gripper (last, 0 closed .. 1
        open). The ``Trajectory`` interpolates them without overshoot (``bounded_columns``)."""
        return (self.waypoint_dim - 1,)

    # --- robot state <-> waypoint -----------------------------------------------------------
    def waypoint_of(self, state: RobotState) -> np.ndarray:
        """The waypoint the arm is at: where a hold keeps it and a new trajectory starts from."""
        if self.is_ee:
            return np.concatenate([state.ee.position, self._local(state.ee.quaternion), [state.gripper]])
        return np.concatenate([np.asarray(state.joint_positions, dtype=float), [state.gripper]])

    def target_of(self, waypoint: np.ndarray, time_s: float) -> Target:
        """The robot target a waypoint stands for, meant for ``time_s``."""
        gripper = float(waypoint[-1])
        if self.is_ee:
            quat = quat_multiply(rotvec_to_quat(waypoint[3:6]), self._ref)
            return Target(
                time_s=time_s,
                ee=Pose(position=np.array(waypoint[:3], dtype=float), quaternion=quat),
                gripper=gripper,
            )
        return Target(time_s=time_s, joints=np.array(waypoint[:-1], dtype=float), gripper=gripper)

    # --- policy actions <-> waypoints -------------------------------------------------------
    def to_waypoints(self, actions: np.ndarray, capture: RobotState) -> np.ndarray:
        """Actions ``[n, action_dim]`` relative to the state at capture -> waypoints ``[n, D]``;
        end-effector rotations continuous along the chunk, the first nearest the capture's."""
        actions = np.asarray(actions, dtype=float)
        out = np.empty((actions.shape[0], self.waypoint_dim))
        out[:, -1] = actions[:, -1]
        if not self.is_ee:
            base = np.asarray(capture.joint_positions, dtype=float) if self.is_delta else 0.0
            out[:, :-1] = actions[:, :-1] + base
            return out
        # Rotation vector applied in the base frame (delta): R = exp(drot) * R_capture; stored as
        # _local(R): the rotation vector of R * R_ref^-1.
        cap_q = capture.ee.quaternion
        if self.is_delta:
            out[:, :3] = capture.ee.position + actions[:, :3]
            local = _rotvecs_through(actions[:, 3:6], cap_q, self._ref_inv)
        else:
            out[:, :3] = actions[:, :3]
            local = _rotvecs_through(actions[:, 3:6], self._ref_inv, None)
        if local is not None:
            out[:, 3:6] = local
        else:  # a row safety.rotations refuses: its own calls, row by row, raise as they did
            for k in range(actions.shape[0]):
                quat = rotvec_to_quat(actions[k, 3:6])
                out[k, 3:6] = self._local(quat_multiply(quat, cap_q) if self.is_delta else quat)
        out[:, 3:6] = unwrap_rotvecs(out[:, 3:6], self._local(capture.ee.quaternion))
        return out

    def unwrap_waypoints(self, waypoints: np.ndarray, near: np.ndarray) -> np.ndarray:
        """The same targets ``[n, D]`` as ``waypoints``, each end-effector rotation vector the
        representative nearest the row before's (the first nearest ``near`` ``[D]``'s); joint
        waypoints unchanged. What the ``Trajectory`` takes as ``unwrap``."""
        out = np.array(waypoints, dtype=float)
        if self.is_ee:
            out[:, 3:6] = unwrap_rotvecs(out[:, 3:6], np.asarray(near, dtype=float)[3:6])
        return out

    def to_actions(
        self, waypoints: np.ndarray, capture: RobotState, near_rotvec: np.ndarray | None = None
    ) -> np.ndarray:
        """Inverse of :meth:`to_waypoints`: what the policy would have sent ``[n, action_dim]``
        (float32), relative to ``capture``. Used for ``prev_actions`` (the not-yet-executed
        rest of a chunk). Rotations are continuous along the rows. For ``ee_absolute`` the
        first is nearest ``near_rotvec`` ``[3]``, the base-frame rotation vector the policy was
        last shown (:attr:`StateVectorBuilder.rotvec`; default: the capture's own, angle in
        [0, pi]); for ``ee_delta`` it is nearest no rotation and ``near_rotvec`` is ignored
        (a delta from the capture is small whatever the capture's coordinates)."""
        waypoints = np.asarray(waypoints, dtype=float)
        out = np.empty((waypoints.shape[0], self.action_dim), dtype=np.float32)
        out[:, -1] = waypoints[:, -1]
        if not self.is_ee:
            base = np.asarray(capture.joint_positions, dtype=float) if self.is_delta else 0.0
            out[:, :-1] = waypoints[:, :-1] - base
            return out
        cap_inv = quat_conjugate(capture.ee.quaternion)
        if self.is_delta:
            out[:, :3] = waypoints[:, :3] - capture.ee.position
            rotvecs = _rotvecs_through(waypoints[:, 3:6], self._ref, cap_inv)
        else:
            out[:, :3] = waypoints[:, :3]
            rotvecs = _rotvecs_through(waypoints[:, 3:6], self._ref, None)
        if rotvecs is not None:
            out[:, 3:6] = rotvecs
        else:  # a row safety.rotations refuses: its own calls, row by row, raise as they did
            for k in range(waypoints.shape[0]):
                quat = quat_multiply(rotvec_to_quat(waypoints[k, 3:6]), self._ref)
                out[k, 3:6] = quat_to_rotvec(quat_multiply(quat, cap_inv) if self.is_delta else quat)
        if self.is_delta:
            near = np.zeros(3)
        elif near_rotvec is None:
            near = quat_to_rotvec(capture.ee.quaternion)
        else:
            near = np.asarray(near_rotvec, dtype=float)
        out[:, 3:6] = unwrap_rotvecs(out[:, 3:6].astype(float), near)
        return out

    def _local(self, quat: np.ndarray) -> np.ndarray:
        return quat_to_rotvec(quat_multiply(quat, self._ref_inv))

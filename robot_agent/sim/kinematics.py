"""The simulated Panda's kinematics: panda-python's own ``panda_py.fk`` / ``panda_py.ik``.

These are the analytical solvers the real driver's arm uses, so joint limits, reach and IK failures
behave like the real arm's. ``panda_py.fk`` returns the Franka Hand's default TCP (flange +
0.103 m along its z axis, between the fingertips): that is the gripper tip, and the end-effector
pose the simulated arm reports and tracks. Pure functions, safe to call from any thread.
"""

from __future__ import annotations

import math

import numpy as np
import panda_py

from robot_agent.sim.panda_chain import refine
from safety.rotations import matrix_to_quat, quat_to_matrix
from safety.types import Pose

__all__ = ["JointLimits", "pose_to_transform", "solve_ik", "tip_pose", "tip_position"]

#: (lower, upper) joint positions in radians, 7 values each.
JointLimits = tuple[np.ndarray, np.ndarray]

# An IK answer this far (rad, any joint) from the previous target means the solver switched
# branch: following it would swing the arm through space for a small Cartesian step.
_MAX_IK_JUMP_RAD = 1.0
_IK_POSITION_TOLERANCE_M = 1e-3
_Q7_OFFSETS = (-0.1, 0.1, -0.25, 0.25, -0.5, 0.5, -0.8, 0.8)
_SMALL_IK_STEP_RAD = 0.1  # a closed-form answer this close to the seed is the continuous one


def tip_pose(q: np.ndarray) -> Pose:
    """The gripper tip pose (Franka Hand TCP) at joints ``q`` (7 rad), through ``panda_py.fk``."""
    t = np.asarray(panda_py.fk(q), dtype=float)
    return Pose(position=t[:3, 3].copy(), quaternion=matrix_to_quat(t[:3, :3]))


def tip_position(q: np.ndarray) -> np.ndarray:
    """The gripper tip position (3, metres, base frame) at joints ``q`` (7 rad)."""
    return np.asarray(panda_py.fk(q), dtype=float)[:3, 3]


def pose_to_transform(pose: Pose) -> np.ndarray | None:
    """The 4x4 homogeneous transform of ``pose``; None unless it is a finite 3-vector and quaternion."""
    position = np.asarray(pose.position, dtype=float)
    quaternion = np.asarray(pose.quaternion, dtype=float)
    if position.shape != (3,) or quaternion.shape != (4,):
        return None
    if not (np.all(np.isfinite(position)) and np.all(np.isfinite(quaternion))):
        return None
    transform = np.eye(4)
    transform[:3, :3] = quat_to_matrix(quaternion)
    transform[:3, 3] = position
    return transform


def solve_ik(transform: np.ndarray, seed: np.ndarray, limits: JointLimits) -> tuple[np.ndarray | None, str]:
    """The joint solution of ``transform`` (4x4) nearest to ``seed`` (7 rad), through ``panda_py.ik``.

    Small steps go through damped least squares on the same chain from the seed (continuous,
    all seven joints; :func:`robot_agent.sim.panda_chain.refine`, compiled, about 7 us). The
    analytical solver covers larger moves; it takes joint 7 as given and picks its branch from the seed, and fails in ways handled here: when the shoulder passes
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
        for candidate in _shoulder_equivalents(q):
            if np.any(candidate < lo) or np.any(candidate > hi):
                continue
            jump = float(np.max(np.abs(candidate - seed)))
            if jump < best_jump:
                best, best_jump = candidate, jump
        return best, best_jump

    # 1. Small steps (what the agent sends every tick): damped least squares on the Panda's
    # chain (panda_chain.refine: panda_py.fk's, compiled) from the seed, the arm's own
    # differential motion. It uses all seven joints, so it passes
    # where the closed form, which holds joint 7 fixed, has a singularity (joint 2 through 0) and
    # swings joints 1 and 3 (or flips them by pi).
    best: np.ndarray | None = None
    best_jump = math.inf
    refined = refine(transform, seed, lo, hi)
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


def _shoulder_equivalents(q: np.ndarray) -> list[np.ndarray]:
    out = [q]
    for s1 in (-1.0, 1.0):
        for s3 in (-1.0, 1.0):
            alt = q.copy()
            alt[0] += s1 * math.pi
            alt[1] = -alt[1]
            alt[2] += s3 * math.pi
            out.append(alt)
    return out

"""The sim IK's damped-least-squares refinement as it was before issue 13 (numpy on
``panda_py.fk``, numerical Jacobian): the reference ``robot_agent.sim.panda_chain.refine`` is
held to (test_panda_chain.py)."""

from __future__ import annotations

import numpy as np
import panda_py

from safety.rotations import matrix_to_quat, quat_to_rotvec


def _pose_error(transform: np.ndarray, q: np.ndarray) -> np.ndarray:
    current = np.asarray(panda_py.fk(q), dtype=float)
    rot = transform[:3, :3] @ current[:3, :3].T
    return np.concatenate([transform[:3, 3] - current[:3, 3], quat_to_rotvec(matrix_to_quat(rot))])


def refine_ik(transform: np.ndarray, seed: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """Damped least squares on ``panda_py.fk`` (numerical Jacobian), from ``seed``."""
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

"""The Panda's kinematic chain as compiled scalar code: forward kinematics and the IK's refinement.

The chain is Franka's published modified (Craig) Denavit-Hartenberg table, "Robot and interface
specifications", https://frankaemika.github.io/docs/control_parameters.html#denavithartenberg-parameters
(a, d, alpha per joint; the flange d = 0.107 m), followed by the Franka Hand's frame (rotated
-pi/4 about the flange's z axis) and its TCP 0.103 m along that axis: ``panda_py.fk`` to
within 1e-15 (tests/robot_agent/sim/test_panda_chain.py checks it on random joints).

:func:`refine` is the damped-least-squares step of :func:`robot_agent.sim.kinematics.solve_ik`,
written as loops over float64 scalars in the order of operations of the numpy code it replaced
(numerical Jacobian by forward differences, the same damping, tolerances and iteration count), so
it computes the same joints up to floating-point noise, about 50x faster: numpy's per-call cost
and eight ``panda_py.fk`` calls per iteration dominated on 4x4 and 6x7 arrays. Compiled by numba
when it is installed (``vla-deploy[agent]``), else interpreted (same results, slower).
"""

from __future__ import annotations

import math

import numpy as np

from safety.compiled import jit

__all__ = ["forward", "load", "refine"]


# Franka's modified DH table (joints 1-7, then the flange with theta = 0): metres and radians.
_A = np.array([0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088, 0.0])
_D = np.array([0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0, 0.107])
_ALPHA = np.array([0.0, -math.pi / 2, math.pi / 2, math.pi / 2, -math.pi / 2, math.pi / 2, math.pi / 2, 0.0])
_COS_ALPHA = np.cos(_ALPHA)
_SIN_ALPHA = np.sin(_ALPHA)
# The Franka Hand: -pi/4 about the flange's z, TCP 0.103 m along it (panda_py.fk's end effector).
_HAND_ANGLE = -math.pi / 4
_HAND_TCP_M = 0.103

# _refine_kernel's constants, the numpy code's (kinematics._refine_ik before issue 13).
_EPS = 1e-6
_DAMPING = 1e-4
_ITERATIONS = 30
_POSITION_TOLERANCE_M = 1e-4
_ROTATION_TOLERANCE_RAD = 1e-3
_SMALL_ANGLE = 1e-8  # safety.rotations._SMALL_ANGLE


@jit
def _fk_kernel(
    q: np.ndarray, a: np.ndarray, d: np.ndarray, ca: np.ndarray, sa: np.ndarray, out: np.ndarray
) -> None:
    """``out`` (4x4) := the tip transform at joints ``q`` (7): T_1 ... T_7 T_flange T_hand."""
    for i in range(4):
        for j in range(4):
            out[i, j] = 1.0 if i == j else 0.0
    for k in range(9):
        if k < 8:
            th = q[k] if k < 7 else 0.0
            ct, st = math.cos(th), math.sin(th)
            # Craig's link transform RotX(alpha) TransX(a) RotZ(theta) TransZ(d).
            t00, t01, t02, t03 = ct, -st, 0.0, a[k]
            t10, t11, t12, t13 = st * ca[k], ct * ca[k], -sa[k], -d[k] * sa[k]
            t20, t21, t22, t23 = st * sa[k], ct * sa[k], ca[k], d[k] * ca[k]
        else:
            ct, st = math.cos(_HAND_ANGLE), math.sin(_HAND_ANGLE)
            t00, t01, t02, t03 = ct, -st, 0.0, 0.0
            t10, t11, t12, t13 = st, ct, 0.0, 0.0
            t20, t21, t22, t23 = 0.0, 0.0, 1.0, _HAND_TCP_M
        for i in range(3):
            m0, m1, m2, m3 = out[i, 0], out[i, 1], out[i, 2], out[i, 3]
            out[i, 0] = m0 * t00 + m1 * t10 + m2 * t20
            out[i, 1] = m0 * t01 + m1 * t11 + m2 * t21
            out[i, 2] = m0 * t02 + m1 * t12 + m2 * t22
            out[i, 3] = m0 * t03 + m1 * t13 + m2 * t23 + m3


@jit
def _pose_error_kernel(
    target: np.ndarray,
    q: np.ndarray,
    a: np.ndarray,
    d: np.ndarray,
    ca: np.ndarray,
    sa: np.ndarray,
    scratch: np.ndarray,
    err: np.ndarray,
) -> None:
    """``err`` (6) := target position - tip position, then the rotation vector of
    ``R_target R_tip^T`` (``safety.rotations``' Shepperd ``matrix_to_quat``, then ``quat_to_rotvec``)."""
    _fk_kernel(q, a, d, ca, sa, scratch)
    for i in range(3):
        err[i] = target[i, 3] - scratch[i, 3]
    m = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            m[i, j] = (
                target[i, 0] * scratch[j, 0] + target[i, 1] * scratch[j, 1] + target[i, 2] * scratch[j, 2]
            )
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(1.0 + tr)
        x, y, z, w = (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 0.0))
        x, y, z, w = 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s
    elif m[1, 1] >= m[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 + m[1, 1] - m[0, 0] - m[2, 2], 0.0))
        x, y, z, w = (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s
    else:
        s = 2.0 * math.sqrt(max(1.0 + m[2, 2] - m[0, 0] - m[1, 1], 0.0))
        x, y, z, w = (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s
    # matrix_to_quat: normalise, w >= 0; quat_to_rotvec: normalise again, the shorter of q and -q.
    for _ in range(2):
        n = math.sqrt(x * x + y * y + z * z + w * w)
        x, y, z, w = x / n, y / n, z / n, w / n
        if w < 0:
            x, y, z, w = -x, -y, -z, -w
    if w == 0.0:  # exactly a half turn: the first non-zero component is made positive
        first = x if x != 0.0 else (y if y != 0.0 else z)
        if first < 0:
            x, y, z = -x, -y, -z
    sn = math.sqrt(x * x + y * y + z * z)
    theta = 2.0 * math.atan2(sn, w)
    k = 2.0 + theta * theta / 12.0 if sn < _SMALL_ANGLE else theta / sn
    err[3], err[4], err[5] = k * x, k * y, k * z


@jit
def _refine_kernel(
    target: np.ndarray,
    seed: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    a: np.ndarray,
    d: np.ndarray,
    ca: np.ndarray,
    sa: np.ndarray,
    q: np.ndarray,
) -> bool:
    """Damped least squares from ``seed`` into ``q`` (7); True when it converged within limits."""
    scratch = np.empty((4, 4))
    err = np.empty(6)
    err_j = np.empty(6)
    jac = np.empty((6, 7))
    lhs = np.empty((6, 6))
    x = np.empty(6)
    qd = np.empty(7)
    for i in range(7):
        q[i] = seed[i]
    for _ in range(_ITERATIONS):
        _pose_error_kernel(target, q, a, d, ca, sa, scratch, err)
        p2 = err[0] * err[0] + err[1] * err[1] + err[2] * err[2]
        r2 = err[3] * err[3] + err[4] * err[4] + err[5] * err[5]
        if math.sqrt(p2) < _POSITION_TOLERANCE_M and math.sqrt(r2) < _ROTATION_TOLERANCE_RAD:
            inside = True
            for i in range(7):
                inside = inside and lo[i] <= q[i] <= hi[i]
            return inside
        for j in range(7):
            for i in range(7):
                qd[i] = q[i]
            qd[j] = q[j] + _EPS
            _pose_error_kernel(target, qd, a, d, ca, sa, scratch, err_j)
            for i in range(6):
                jac[i, j] = (err[i] - err_j[i]) / _EPS
        # (J J^T + damping I) x = err by Gaussian elimination with partial pivoting (LAPACK's gesv).
        for i in range(6):
            for k in range(6):
                acc = 0.0
                for j in range(7):
                    acc += jac[i, j] * jac[k, j]
                lhs[i, k] = acc + (_DAMPING if i == k else 0.0)
            x[i] = err[i]
        for col in range(6):
            pivot = col
            for r in range(col + 1, 6):
                if abs(lhs[r, col]) > abs(lhs[pivot, col]):
                    pivot = r
            if pivot != col:
                for k in range(6):
                    lhs[col, k], lhs[pivot, k] = lhs[pivot, k], lhs[col, k]
                x[col], x[pivot] = x[pivot], x[col]
            for r in range(col + 1, 6):
                f = lhs[r, col] / lhs[col, col]
                for k in range(col, 6):
                    lhs[r, k] -= f * lhs[col, k]
                x[r] -= f * x[col]
        for col in range(5, -1, -1):
            acc = x[col]
            for k in range(col + 1, 6):
                acc -= lhs[col, k] * x[k]
            x[col] = acc / lhs[col, col]
        for j in range(7):
            step = 0.0
            for i in range(6):
                step += jac[i, j] * x[i]
            q[j] = min(max(q[j] + step, lo[j]), hi[j])
    return False


def forward(q: np.ndarray) -> np.ndarray:
    """The tip transform (4x4, metres, base frame) at joints ``q`` (7 rad): ``panda_py.fk``'s."""
    out = np.empty((4, 4))
    out[3] = (0.0, 0.0, 0.0, 1.0)
    _fk_kernel(np.asarray(q, dtype=float), _A, _D, _COS_ALPHA, _SIN_ALPHA, out)
    return out


def refine(transform: np.ndarray, seed: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """Damped least squares toward ``transform`` (4x4) from ``seed`` (7 rad) within ``[lo, hi]``.

    Up to 30 iterations of ``q += J^T (J J^T + 1e-4 I)^-1 e`` (clipped to the limits), with ``e``
    the position error (m) and rotation vector (rad) from the tip to ``transform`` and ``J`` its
    forward-difference Jacobian (step 1e-6 rad). Returns the joints once ``|e_pos| < 1e-4 m`` and
    ``|e_rot| < 1e-3 rad``, or None when that point is outside the limits or never reached.
    """
    q = np.empty(7)
    ok = _refine_kernel(
        np.ascontiguousarray(transform, dtype=float),
        np.asarray(seed, dtype=float),
        np.asarray(lo, dtype=float),
        np.asarray(hi, dtype=float),
        _A,
        _D,
        _COS_ALPHA,
        _SIN_ALPHA,
        q,
    )
    return q if ok else None


def load() -> None:
    """Load (or on a machine's first run compile, about 2 s) the compiled code now, not on the
    first control tick."""
    home = np.zeros(7)
    refine(forward(home), home, home - 1.0, home + 1.0)

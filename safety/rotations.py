"""Rotation maths for vla-deploy, in one place: quaternions (x, y, z, w), matrices, rotation vectors.

The shield and the agent both need a handful of conversions; keeping them here (pure numpy, no
scipy) means there is exactly one implementation to test and one quaternion order: (x, y, z, w),
as panda-python, ROS and scipy use. Functions take and return float64 arrays and never mutate
their inputs. A rotation vector is axis * angle (radians), the exponential coordinates of SO(3).

One orientation has many coordinates: ``q`` and ``-q``; rotation vectors ``u * (theta + 2 pi k)``
(so ``+3.107`` and ``-3.176`` rad about the same axis, across +-pi); roll, pitch, yaw plus any
multiple of 2 pi. Anything that differences or interpolates orientations must pick, for each new
one, the coordinates nearest the previous ones (:func:`quat_nearest`, :func:`rotvec_nearest`,
:func:`unwrap_angles`), or a 4 degree turn reads as a 356 degree one (issue 10, kind 5).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "IDENTITY_QUATERNION",
    "matrix_to_quat",
    "quat_angle",
    "quat_conjugate",
    "quat_multiply",
    "quat_nearest",
    "quat_normalize",
    "quat_rotate",
    "quat_slerp",
    "quat_to_matrix",
    "quat_to_rotvec",
    "quat_to_rpy",
    "rotvec_nearest",
    "rotvec_to_quat",
    "rpy_to_quat",
    "unwrap_angles",
]

IDENTITY_QUATERNION = np.array([0.0, 0.0, 0.0, 1.0])
IDENTITY_QUATERNION.flags.writeable = False

# Below this angle the sin(x)/x terms use their Taylor series: exact to float64 precision there,
# and free of 0/0.
_SMALL_ANGLE = 1e-8


def quat_normalize(q: np.ndarray) -> np.ndarray:
    """Return ``q`` scaled to unit norm; raises ValueError for a zero or non-finite quaternion."""
    q = np.asarray(q, dtype=float)
    n = math.sqrt(float(q.dot(q)))
    if not math.isfinite(n) or n < 1e-12:
        raise ValueError(f"cannot normalise quaternion {q.tolist()!r}: norm is {n}")
    return q / n


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    """The inverse rotation of a unit quaternion."""
    x, y, z, w = np.asarray(q, dtype=float).tolist()
    return np.array([-x, -y, -z, w])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b``: rotate by ``b`` first, then by ``a`` (as matrices ``A @ B``)."""
    # Python floats: on four numbers numpy's per-call cost is most of the work.
    ax, ay, az, aw = np.asarray(a, dtype=float).tolist()
    bx, by, bz, bw = np.asarray(b, dtype=float).tolist()
    return np.array(
        [
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz,
        ]
    )


def quat_rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vector ``v`` by unit quaternion ``q``."""
    out: np.ndarray = quat_to_matrix(q) @ np.asarray(v, dtype=float)
    return out


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (normalised first, so a slightly off one is fine)."""
    x, y, z, w = quat_normalize(q).tolist()
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    return np.array(
        [
            [1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy)],
            [2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx)],
            [2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy)],
        ]
    )


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a rotation matrix, with w >= 0.

    Shepperd's method: pick the largest of the four squared components to divide by, so the
    result is accurate for every rotation, including angles near pi.
    """
    m = np.asarray(m, dtype=float)
    if m.shape != (3, 3):
        raise ValueError(f"rotation matrix must have shape (3, 3), got {m.shape}")
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * math.sqrt(1.0 + tr)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 + m[0, 0] - m[1, 1] - m[2, 2], 0.0))
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] >= m[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 + m[1, 1] - m[0, 0] - m[2, 2], 0.0))
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * math.sqrt(max(1.0 + m[2, 2] - m[0, 0] - m[1, 1], 0.0))
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    out = quat_normalize(np.array(q))
    return -out if out[3] < 0 else out


def rotvec_to_quat(v: np.ndarray) -> np.ndarray:
    """Exponential map: rotation vector (axis * angle) to unit quaternion."""
    v = np.asarray(v, dtype=float)
    theta = math.sqrt(float(v.dot(v)))
    half = 0.5 * theta
    # sin(theta/2)/theta, by its series near zero
    k = 0.5 - theta * theta / 48.0 if theta < _SMALL_ANGLE else math.sin(half) / theta
    x, y, z = v.tolist()
    return np.array([k * x, k * y, k * z, math.cos(half)])


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Logarithm map: unit quaternion to rotation vector with angle in [0, pi].

    ``q`` and ``-q`` are the same rotation; the shorter one is returned.
    """
    x, y, z, w = quat_normalize(q).tolist()
    if w < 0 or (w == 0.0 and _first_nonzero(np.array([x, y, z])) < 0):
        # At exactly pi (w = 0) both signs are as short: the first non-zero component decides,
        # so q and -q still give the same vector.
        x, y, z, w = -x, -y, -z, -w
    s = math.sqrt(x * x + y * y + z * z)
    theta = 2.0 * math.atan2(s, w)
    # theta / sin(theta/2); near zero its series is 2 + theta^2/12.
    k = 2.0 + theta * theta / 12.0 if s < _SMALL_ANGLE else theta / s
    return np.array([k * x, k * y, k * z])


def quat_nearest(q: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``q`` or ``-q`` (one orientation), whichever is nearer ``reference`` (``q . ref >= 0``).

    On an exact tie (a half turn away) the first non-zero component of ``q`` is made positive,
    so ``q`` and ``-q`` give the same answer. Shape (4,), not normalised; a float64 ``q`` that
    needs no flip is returned as it is (called on every control tick).
    """
    q = np.asarray(q, dtype=float)
    d = float(q.dot(np.asarray(reference, dtype=float)))
    if d < 0.0 or (d == 0.0 and _first_nonzero(q) < 0):
        return -q
    return q


def rotvec_nearest(v: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The rotation vector of ``v``'s rotation nearest ``reference`` (radians, shape (3,)).

    The rotation vectors of one rotation about unit axis ``u`` by ``theta`` are
    ``u * (theta + 2 pi k)`` for every integer k; the nearest to ``reference`` is the one whose
    component along ``u`` is nearest ``reference``'s. E.g. ``[0, 0, -3.107]`` (the tool turned
    178 degrees the other way) near ``[0, 0, 3.1]`` is ``[0, 0, 3.176]``.
    """
    v = np.asarray(v, dtype=float)
    ref = np.asarray(reference, dtype=float)
    theta = math.sqrt(float(v.dot(v)))
    if theta < _SMALL_ANGLE:
        # The identity: 2 pi k about any axis; the reference's own axis is the nearest.
        r = math.sqrt(float(ref.dot(ref)))
        if r < math.pi:
            return v.copy()
        return ref * (2.0 * math.pi * round(r / (2.0 * math.pi)) / r)
    u = v / theta
    k = round((float(ref.dot(u)) - theta) / (2.0 * math.pi))
    if k == 0:
        return v.copy()
    out: np.ndarray = u * (theta + 2.0 * math.pi * k)
    return out


def unwrap_angles(angles: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each angle plus the multiple of 2 pi that brings it nearest the same one of ``reference``.

    For roll, pitch, yaw (or any angles that are each 2 pi periodic), as ``numpy.unwrap`` does
    along a sequence: ``+3.1416`` after ``-3.14`` becomes ``-3.1416``. Shapes must match.
    """
    a = np.asarray(angles, dtype=float)
    ref = np.asarray(reference, dtype=float)
    out: np.ndarray = a + 2.0 * math.pi * np.round((ref - a) / (2.0 * math.pi))
    return out


def _first_nonzero(x: np.ndarray) -> float:
    for value in x.tolist():
        if value != 0.0:
            return float(value)
    return 0.0


def quat_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in radians, in [0, pi], of the rotation taking ``a`` to ``b``."""
    a = quat_normalize(a)
    b = quat_normalize(b)
    d = abs(float(a.dot(b)))
    # atan2 form instead of 2*acos(d): acos loses half the digits for small angles.
    rel = quat_multiply(quat_conjugate(a), b)
    s = math.sqrt(float(rel[0] * rel[0] + rel[1] * rel[1] + rel[2] * rel[2]))
    return 2.0 * math.atan2(s, d)


def quat_slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical linear interpolation from ``a`` (t=0) to ``b`` (t=1) along the shorter arc."""
    a = quat_normalize(a)
    b = quat_normalize(b)
    if float(a.dot(b)) < 0:
        b = -b
    rel = quat_multiply(quat_conjugate(a), b)
    return quat_normalize(quat_multiply(a, rotvec_to_quat(t * quat_to_rotvec(rel))))


def rpy_to_quat(rpy: np.ndarray) -> np.ndarray:
    """Roll, pitch, yaw (radians; R = Rz(yaw) @ Ry(pitch) @ Rx(roll), as ROS) to a quaternion."""
    r, p, y = (0.5 * float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array(
        [
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy,
        ]
    )


def quat_to_rpy(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rpy_to_quat`; pitch in [-pi/2, pi/2], roll and yaw in [-pi, pi]."""
    m = quat_to_matrix(q)
    pitch = math.asin(max(-1.0, min(1.0, -float(m[2, 0]))))
    if abs(float(m[2, 0])) < 1.0 - 1e-12:
        roll = math.atan2(float(m[2, 1]), float(m[2, 2]))
        yaw = math.atan2(float(m[1, 0]), float(m[0, 0]))
    else:  # gimbal lock: only roll - yaw (or roll + yaw) is defined; put it all in yaw
        roll = 0.0
        yaw = math.atan2(-float(m[0, 1]), float(m[1, 1]))
    return np.array([roll, pitch, yaw])

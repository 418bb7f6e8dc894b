"""The shield's rotation maths on float64 scalars, compiled: the same bits as :mod:`safety.rotations`.

Each kernel is the function of ``safety.rotations`` it names, operation for operation, on
quaternions passed as four floats (x, y, z, w) and vectors as three, returning tuples: no array
is built, and numba inlines them into the kernels that call them (``safety/ee_kernels.py``).
Dot products round as numpy's do (:func:`safety.compiled.dot3`, ``fused`` =
:data:`safety.compiled.NUMPY_DOT_FUSED`); everything else is element-wise arithmetic, rounded as
numpy rounds it, and libm's ``sqrt``, ``sin``, ``cos``, ``atan2``, ``acos`` as ``math`` calls them.
Unlike :func:`safety.rotations.quat_normalize` nothing raises: callers pass quaternions whose norm
is known to be usable. ``tests/safety/test_rotation_kernels.py`` pins every one to its numpy
twin, compiled and interpreted.
"""

from __future__ import annotations

import math

from .compiled import dot3, dot4, jit

__all__ = [
    "q_angle_bound",
    "q_axis_z",
    "q_matrix",
    "q_mul",
    "q_nearest",
    "q_normalize",
    "q_rel_rotvec",
    "q_slerp",
    "q_to_rotvec",
    "q_untilt",
    "rotvec_to_q",
    "tool_tilt_q",
]

_SMALL_ANGLE = 1e-8  # as safety.rotations

Quat = tuple[float, float, float, float]
Vec = tuple[float, float, float]


@jit
def q_normalize(fused: bool, x: float, y: float, z: float, w: float) -> Quat:
    """:func:`~safety.rotations.quat_normalize` (without its checks)."""
    n = math.sqrt(dot4(fused, x, y, z, w, x, y, z, w))
    return x / n, y / n, z / n, w / n


@jit
def q_mul(ax: float, ay: float, az: float, aw: float, bx: float, by: float, bz: float, bw: float) -> Quat:
    """:func:`~safety.rotations.quat_multiply`: ``a * b``."""
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


@jit
def _first_nonzero(x: float, y: float, z: float, w: float) -> float:
    """``safety.rotations._first_nonzero`` of ``[x, y, z, w]`` (pass ``w = 0.0`` for three)."""
    if x != 0.0:
        return x
    if y != 0.0:
        return y
    if z != 0.0:
        return z
    return w


@jit
def q_to_rotvec(fused: bool, qx: float, qy: float, qz: float, qw: float) -> Vec:
    """:func:`~safety.rotations.quat_to_rotvec`: the rotation vector, angle in [0, pi]."""
    x, y, z, w = q_normalize(fused, qx, qy, qz, qw)
    if w < 0 or (w == 0.0 and _first_nonzero(x, y, z, 0.0) < 0):
        x, y, z, w = -x, -y, -z, -w
    s = math.sqrt(x * x + y * y + z * z)
    theta = 2.0 * math.atan2(s, w)
    k = 2.0 + theta * theta / 12.0 if s < _SMALL_ANGLE else theta / s
    return k * x, k * y, k * z


@jit
def rotvec_to_q(fused: bool, x: float, y: float, z: float) -> Quat:
    """:func:`~safety.rotations.rotvec_to_quat`: the exponential map."""
    theta = math.sqrt(dot3(fused, x, y, z, x, y, z))
    half = 0.5 * theta
    k = 0.5 - theta * theta / 48.0 if theta < _SMALL_ANGLE else math.sin(half) / theta
    return k * x, k * y, k * z, math.cos(half)


@jit
def q_rel_rotvec(
    fused: bool, x: float, y: float, z: float, w: float, rx: float, ry: float, rz: float, rw: float
) -> Vec:
    """``quat_to_rotvec(quat_multiply(q, quat_conjugate(ref)))``: the turn from ``ref`` to ``q``
    (world frame)."""
    a, b, c, d = q_mul(x, y, z, w, -rx, -ry, -rz, rw)
    return q_to_rotvec(fused, a, b, c, d)


@jit
def q_nearest(
    fused: bool, x: float, y: float, z: float, w: float, rx: float, ry: float, rz: float, rw: float
) -> Quat:
    """:func:`~safety.rotations.quat_nearest`: ``q`` or ``-q``, whichever is nearer ``ref``."""
    d = dot4(fused, x, y, z, w, rx, ry, rz, rw)
    if d < 0.0 or (d == 0.0 and _first_nonzero(x, y, z, w) < 0):
        return -x, -y, -z, -w
    return x, y, z, w


@jit
def q_slerp(
    fused: bool,
    ax: float,
    ay: float,
    az: float,
    aw: float,
    bx: float,
    by: float,
    bz: float,
    bw: float,
    t: float,
) -> Quat:
    """:func:`~safety.rotations.quat_slerp` from ``a`` (t=0) to ``b`` (t=1), the shorter arc."""
    ax, ay, az, aw = q_normalize(fused, ax, ay, az, aw)
    bx, by, bz, bw = q_normalize(fused, bx, by, bz, bw)
    if dot4(fused, ax, ay, az, aw, bx, by, bz, bw) < 0:
        bx, by, bz, bw = -bx, -by, -bz, -bw
    rx, ry, rz, rw = q_mul(-ax, -ay, -az, aw, bx, by, bz, bw)
    vx, vy, vz = q_to_rotvec(fused, rx, ry, rz, rw)
    ex, ey, ez, ew = rotvec_to_q(fused, t * vx, t * vy, t * vz)
    mx, my, mz, mw = q_mul(ax, ay, az, aw, ex, ey, ez, ew)
    return q_normalize(fused, mx, my, mz, mw)


@jit
def q_axis_z(fused: bool, qx: float, qy: float, qz: float, qw: float) -> Vec:
    """``quat_to_matrix(q)[:, 2]``: the tool axis (the frame's z axis) in the world."""
    x, y, z, w = q_normalize(fused, qx, qy, qz, qw)
    xx, yy = x * x, y * y
    xz, yz = x * z, y * z
    wx, wy = w * x, w * y
    return 2 * (xz + wy), 2 * (yz - wx), 1 - 2 * (xx + yy)


@jit
def q_matrix(
    fused: bool, qx: float, qy: float, qz: float, qw: float
) -> tuple[float, float, float, float, float, float, float, float, float]:
    """:func:`~safety.rotations.quat_to_matrix`, row by row."""
    x, y, z, w = q_normalize(fused, qx, qy, qz, qw)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    return (
        1 - 2 * (yy + zz),
        2 * (xy - wz),
        2 * (xz + wy),
        2 * (xy + wz),
        1 - 2 * (xx + zz),
        2 * (yz - wx),
        2 * (xz - wy),
        2 * (yz + wx),
        1 - 2 * (xx + yy),
    )


@jit
def _cross(ax: float, ay: float, az: float, bx: float, by: float, bz: float) -> Vec:
    """``np.cross(a, b)`` (each component a product minus a product, as numpy computes it)."""
    return ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx


@jit
def tool_tilt_q(
    fused: bool, nx: float, ny: float, nz: float, x: float, y: float, z: float, w: float
) -> float:
    """:func:`safety.config.tool_tilt` of ``q`` from a nominal orientation whose tool axis
    (``quat_to_matrix(nominal)[:, 2]``) is ``(nx, ny, nz)``: the angle between the axes (rad)."""
    bx, by, bz = q_axis_z(fused, x, y, z, w)
    cx, cy, cz = _cross(nx, ny, nz, bx, by, bz)
    return math.atan2(math.sqrt(dot3(fused, cx, cy, cz, cx, cy, cz)), dot3(fused, nx, ny, nz, bx, by, bz))


@jit
def q_untilt(
    fused: bool,
    nx: float,
    ny: float,
    nz: float,
    x: float,
    y: float,
    z: float,
    w: float,
    tilt: float,
    max_tilt: float,
) -> Quat:
    """``Shield._untilt``: ``q`` turned back onto the cone of half-angle ``max_tilt`` about the
    nominal tool axis ``(nx, ny, nz)`` (the shortest way), ``tilt`` being its tilt."""
    zx, zy, zz = q_axis_z(fused, x, y, z, w)
    ax, ay, az = _cross(zx, zy, zz, nx, ny, nz)
    n = math.sqrt(dot3(fused, ax, ay, az, ax, ay, az))
    if n < 1e-12:  # pointing exactly away from nominal: any perpendicular axis will do
        if abs(nx) < 0.9:
            ax, ay, az = _cross(nx, ny, nz, 1.0, 0.0, 0.0)
        else:
            ax, ay, az = _cross(nx, ny, nz, 0.0, 1.0, 0.0)
        n = math.sqrt(dot3(fused, ax, ay, az, ax, ay, az))
    turn = tilt - max_tilt
    ex, ey, ez, ew = rotvec_to_q(fused, ax / n * turn, ay / n * turn, az / n * turn)
    mx, my, mz, mw = q_mul(ex, ey, ez, ew, x, y, z, w)
    return q_normalize(fused, mx, my, mz, mw)


@jit
def q_angle_bound(
    fused: bool, ax: float, ay: float, az: float, aw: float, bx: float, by: float, bz: float, bw: float
) -> float:
    """``Shield._angle``: ``2 acos(min(1, |a . b|))``, the angle between two unit quaternions."""
    d = abs(dot4(fused, ax, ay, az, aw, bx, by, bz, bw))
    return 2.0 * math.acos(d if d < 1.0 else 1.0)  # min(1.0, d), nan included

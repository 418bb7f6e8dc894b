"""The end effector's per-tick maths in three compiled calls: the shield's fast path.

``Shield._filter_ee`` checks a target in a fixed order (see :mod:`safety.shield`). The numeric
work of that order runs here, on float64 scalars, with the same operations as the numpy code it
replaced (``safety.rotation_kernels`` for the rotations, ``safety.motion`` for the filter):

* :func:`ee_target`: the target's orientation (unit, the sign nearest the last command), the
  tracking bound of the last command, the workspace / keep-out check of the target, its tilt,
  and whether its tool (and the last command's) is far from the floor and every zone;
* :func:`ee_track`: the tracking bound of the target (clamped toward the measured pose) and
  whether the result is inside the filter's box;
* :func:`ee_motion`: the rotation error, the motion filter's step on the six axes (the target's
  velocity estimated from the last two), the new orientation, the commit, and whether the new
  command's tool is far from everything.

What needs Python (projecting a target out of a zone, the tool's projection, leaving a zone,
a new free box, the tool's floor) stays in the shield, between the calls; each call returns
bits saying what it found. Every result is pinned to the numpy shield it replaced by
``bench/shield_cost.py --reference`` and ``tests/safety/test_ee_kernels.py``.
"""

from __future__ import annotations

import math

import numpy as np

from .compiled import dot3, jit
from .motion import (
    _GRID,
    AMAX,
    CHANGED,
    JMAX,
    VLO,
    VMAX,
    A,
    P,
    V,
    _stop1,
    all_on_target,
    clamp_velocity_hint,
    commit,
    direct_mask,
    limited_step,
)
from .rotation_kernels import (
    q_angle_bound,
    q_mul,
    q_nearest,
    q_normalize,
    q_rel_rotvec,
    q_slerp,
    q_untilt,
    rotvec_to_q,
    tool_tilt_q,
)
from .zones import (
    _PROJECT_ROUNDS,
    _TOOL_ROUNDS,
    _project,
    _project_tool,
    _tool_depths,
    _tool_tick,
    first_inside,
    tool_clear_at,
)

__all__ = [
    "CONSTANTS",
    "INSIDE",
    "KEEP_OUT",
    "ROTATION_DIRECT",
    "TILT",
    "TOOL_CLEAR",
    "TOOL_NEAR",
    "TRACKING",
    "WORKSPACE",
    "ee_motion",
    "ee_rest",
    "ee_target",
    "ee_tick",
    "ee_track",
]

#: The layout of the shield's constants array (``Shield._ee_constants``).
CONSTANTS = (
    "max_translation_m",
    "max_rotation_rad",
    "has_tilt_limit",
    "max_tilt_rad",
    "nominal_z_x",
    "nominal_z_y",
    "nominal_z_z",
    "tool_reach",
    "floor_z",
    "rotation_lookahead",
    "tool_floor_z",
    "reject",
    "hold_on_tracking",
    "worst_stop_z",
    "tool_offsets_fused",
)
_MAX_T, _MAX_R, _HAS_TILT, _MAX_TILT, _NZ = 0, 1, 2, 3, 4
_REACH, _FLOOR, _LOOKAHEAD, _TOOL_FLOOR, _REJECT, _HOLD, _WORST_STOP_Z, _OFFSETS = 7, 8, 9, 10, 11, 12, 13, 14
#: The work array of a tick (:data:`WORK` values): ee_target's orientation, (projected) position,
#: the tool's first depth index at the target's and at the last command's orientation and its
#: floor; ee_track's position and orientation; ee_motion's command (position, orientation);
#: ee_tick's position moved for the tool.
W_QUAT, W_POS, W_K_TARGET, W_K_LAST, W_TOOL_FLOOR, W_TRACKED, W_COMMAND, W_MOVED, WORK = (
    0,
    4,
    7,
    8,
    9,
    10,
    17,
    24,
    27,
)

# Bits of the results.
TRACKING = 1  # ee_target: the last command is too far from the arm; ee_track: the target is
WORKSPACE = 2  # ee_target: the target is outside the workspace box
KEEP_OUT = 4  # ee_target: the target is inside a grown keep-out zone
TILT = 8  # the orientation was tilted beyond max_tilt_rad and brought back onto the cone
TOOL_NEAR = 16  # ee_target: the tool at the target or the last command may reach the floor or a zone
INSIDE = 32  # ee_track: the (clamped) target is inside the filter's box
ROTATION_DIRECT = 64  # ee_motion: the orientation took the target's exactly
TOOL_CLEAR = 128  # ee_motion: the new command's tool cannot reach the floor or a zone
UNPROJECTED = 256  # ee_target: the target is not allowed and no allowed point was found (or reject mode)
CLAMPED = 512  # ee_rest: the aim was clamped into the box (its tool floor included)
TOOL_MOVED = 1024  # ee_tick: the target moved so that the tool is out (Shield._tool_target)
TOOL_WAS_IN_FLOOR = 2048  # ... and, the tool being out at the target's orientation, in at the
TOOL_WAS_IN_ZONE = 4096  # last command's: below the floor, or in a zone
TOOL_DEEPER_FLOOR = 8192  # ee_motion: a tool point of the command deeper below the floor than the
TOOL_DEEPER_ZONE = 16384  # command before's (after a seed: the seed's), or deeper in a zone

#: The tool's record (Shield._tool_state), updated by ee_motion: whether the depths of the last
#: command (after a seed: the seed's, ``Zones.tool_penetration`` of the seed pose) are known,
#: whether they are all zero, then the depths (below the floor, in each grown zone).
T_KNOWN, T_ZERO, T_DEPTHS = 0, 1, 2


@jit
def ee_target(
    fused: bool,
    target_quat: np.ndarray,
    pos: np.ndarray,
    m_pos: np.ndarray,
    m_quat: np.ndarray,
    q_last: np.ndarray,
    pva: np.ndarray,
    box: np.ndarray,
    kinds: np.ndarray,
    params: np.ndarray,
    tool: np.ndarray,
    tool_zr: np.ndarray,
    c: np.ndarray,
    work: np.ndarray,
) -> int:
    """The target's checks, in the shield's order; bits :data:`TRACKING` (the last command,
    ``pva``'s position and ``q_last``, is too far from the measured ``m_pos``, ``m_quat``: nothing
    else is checked), :data:`WORKSPACE` or :data:`KEEP_OUT` (``pos`` is outside ``box``, rows
    min and max, or in a zone: projected out, :func:`safety.zones._project`, unless reject mode
    or :data:`UNPROJECTED`), :data:`TILT`, :data:`TOOL_NEAR` (the tool at the position or at the
    last command may reach the floor or a zone: then its depths and floor, ``Zones.tool_tick``).
    Into ``work`` (:data:`W_QUAT` ...): the orientation (normalised, the sign nearest ``q_last``,
    tilted back onto the cone), the position, the tool's. ``c``: the constants
    (:data:`CONSTANTS`); ``tool_zr``: rows the tool points' axial and radial offsets."""
    x, y, z, w = q_normalize(fused, target_quat[0], target_quat[1], target_quat[2], target_quat[3])
    x, y, z, w = q_nearest(fused, x, y, z, w, q_last[0], q_last[1], q_last[2], q_last[3])
    work[0], work[1], work[2], work[3] = x, y, z, w
    lx, ly, lz = pva[P, 0], pva[P, 1], pva[P, 2]
    dx, dy, dz = lx - m_pos[0], ly - m_pos[1], lz - m_pos[2]
    if math.sqrt(dot3(fused, dx, dy, dz, dx, dy, dz)) > c[_MAX_T] or (
        q_angle_bound(
            fused, q_last[0], q_last[1], q_last[2], q_last[3], m_quat[0], m_quat[1], m_quat[2], m_quat[3]
        )
        > c[_MAX_R]
    ):
        return TRACKING
    bits = 0
    px, py, pz = pos[0], pos[1], pos[2]
    work[4], work[5], work[6] = px, py, pz
    if not (box[0, 0] <= px <= box[1, 0] and box[0, 1] <= py <= box[1, 1] and box[0, 2] <= pz <= box[1, 2]):
        bits |= WORKSPACE
    elif first_inside(kinds, params, px, py, pz, 0.0) >= 0:
        bits |= KEEP_OUT
    if bits:
        if c[_REJECT] != 0.0 or not _project(
            fused, pos, box[0], box[1], kinds, params, _PROJECT_ROUNDS, work[4:7]
        ):
            bits |= UNPROJECTED
        px, py, pz = work[4], work[5], work[6]
    if c[_HAS_TILT] != 0.0:
        nx, ny, nz = c[_NZ], c[_NZ + 1], c[_NZ + 2]
        tilt = tool_tilt_q(fused, nx, ny, nz, x, y, z, w)
        if tilt > c[_MAX_TILT]:
            bits |= TILT
            x, y, z, w = q_untilt(fused, nx, ny, nz, x, y, z, w, tilt, c[_MAX_TILT])
            work[0], work[1], work[2], work[3] = x, y, z, w
    if bits & UNPROJECTED:
        return bits  # the shield decides where to go from (a hold, or on out of a seeded zone)
    reach, floor = c[_REACH], c[_FLOOR]
    if not (
        tool_clear_at(kinds, params, reach, floor, px, py, pz)
        and tool_clear_at(kinds, params, reach, floor, lx, ly, lz)
    ):
        bits |= TOOL_NEAR
        n = kinds.shape[0] + 1
        k, k_last, tool_floor = _tool_tick(
            work[4:7],
            work[0:4],
            q_last,
            tool,
            tool_zr[0],
            tool_zr[1],
            floor,
            c[_TOOL_FLOOR],
            kinds,
            params,
            np.zeros(n),
            np.zeros(n),
        )
        work[W_K_TARGET], work[W_K_LAST], work[W_TOOL_FLOOR] = float(k), float(k_last), tool_floor
    return bits


@jit
def ee_track(
    fused: bool,
    pos: np.ndarray,
    quat: np.ndarray,
    m_pos: np.ndarray,
    m_quat: np.ndarray,
    q_last: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    c: np.ndarray,
    out: np.ndarray,
) -> int:
    """The target ``pos``, ``quat`` within the tracking bound of the measured ``m_pos``,
    ``m_quat``, into ``out`` (position, then quaternion): moved toward the arm along the line,
    turned toward it along the geodesic (the sign nearest ``q_last``, tilted back onto the cone).
    Bits :data:`TRACKING` (it was beyond), :data:`TILT`, :data:`INSIDE` (the result is inside
    ``[lo, hi]``, their first three values)."""
    sx, sy, sz = pos[0] - m_pos[0], pos[1] - m_pos[1], pos[2] - m_pos[2]
    dist = math.sqrt(dot3(fused, sx, sy, sz, sx, sy, sz))
    x, y, z, w = quat[0], quat[1], quat[2], quat[3]
    angle = q_angle_bound(fused, m_quat[0], m_quat[1], m_quat[2], m_quat[3], x, y, z, w)
    out[0], out[1], out[2] = pos[0], pos[1], pos[2]
    bits = 0
    if dist > c[_MAX_T] or angle > c[_MAX_R]:
        bits |= TRACKING
        if dist > c[_MAX_T]:
            k = c[_MAX_T] / dist
            out[0], out[1], out[2] = m_pos[0] + sx * k, m_pos[1] + sy * k, m_pos[2] + sz * k
        if angle > c[_MAX_R]:
            x, y, z, w = q_slerp(
                fused, m_quat[0], m_quat[1], m_quat[2], m_quat[3], x, y, z, w, c[_MAX_R] / angle
            )
            x, y, z, w = q_nearest(fused, x, y, z, w, q_last[0], q_last[1], q_last[2], q_last[3])
            if c[_HAS_TILT] != 0.0:
                nx, ny, nz = c[_NZ], c[_NZ + 1], c[_NZ + 2]
                tilt = tool_tilt_q(fused, nx, ny, nz, x, y, z, w)
                if tilt > c[_MAX_TILT]:
                    bits |= TILT
                    x, y, z, w = q_untilt(fused, nx, ny, nz, x, y, z, w, tilt, c[_MAX_TILT])
    out[3], out[4], out[5], out[6] = x, y, z, w
    if lo[0] <= out[0] <= hi[0] and lo[1] <= out[1] <= hi[1] and lo[2] <= out[2] <= hi[2]:
        bits |= INSIDE
    return bits


@jit
def ee_motion(
    fused: bool,
    aim: np.ndarray,
    quat: np.ndarray,
    q_last: np.ndarray,
    pos_free: np.ndarray,
    quat_free: np.ndarray,
    prev: np.ndarray,
    pva: np.ndarray,
    limits: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    vlo: np.ndarray,
    vhi: np.ndarray,
    dt: float,
    c: np.ndarray,
    kinds: np.ndarray,
    params: np.ndarray,
    tool: np.ndarray,
    tool_state: np.ndarray,
    seed_pose: np.ndarray,
    out: np.ndarray,
) -> int:
    """One step of the end effector's motion filter toward ``aim``, ``quat`` (``Axes.step`` on
    translation and rotation, the rotation in world-frame rotation vectors relative to the last
    command ``q_last``), committed in ``pva``; the new command into ``out`` (position, then
    quaternion). ``pos_free``, ``quat_free``: the allowed target before the clamps that depend on
    the arm and the filter; ``prev`` (``[known, position, quaternion]``) the last tick's, for the
    target's velocity, then this tick's. Bits: the step's (``motion.JERK`` ... ``CHANGED``),
    :data:`ROTATION_DIRECT`, :data:`TOOL_CLEAR`, and (the shield's check of every command's tool
    against ``tool_state``, :data:`T_KNOWN` ...; ``seed_pose``: the seed's position and
    quaternion) :data:`TOOL_DEEPER_FLOOR` or :data:`TOOL_DEEPER_ZONE`: refused (the shield
    holds, which reseeds what was committed here)."""
    n = 6
    for i in range(3, n):
        pva[P, i] = 0.0
    ex, ey, ez = q_rel_rotvec(
        fused, quat[0], quat[1], quat[2], quat[3], q_last[0], q_last[1], q_last[2], q_last[3]
    )
    full_x, full_y, full_z = ex, ey, ez
    turn = math.sqrt(dot3(fused, ex, ey, ez, ex, ey, ez))
    if turn > c[_LOOKAHEAD]:
        # Aim along the geodesic, a little ahead (see Shield._filter_ee).
        k = c[_LOOKAHEAD] / turn
        ex, ey, ez = ex * k, ey * k, ez * k
    target = np.empty(n)
    target[0], target[1], target[2], target[3], target[4], target[5] = aim[0], aim[1], aim[2], ex, ey, ez
    mask = np.empty(n, dtype=np.bool_)
    x_new = np.empty(n)
    n_direct = direct_mask(target, pva, lo, hi, limits, vlo, vhi, dt, mask)
    if n_direct == n and all_on_target(pva):
        bits = 0
        for i in range(n):
            x_new[i] = target[i]
    else:
        # How fast the allowed target moves, from the last two (0 without a last one).
        vt = np.zeros(n)
        if prev[0] != 0.0:
            vt[0] = (pos_free[0] - prev[1]) / dt
            vt[1] = (pos_free[1] - prev[2]) / dt
            vt[2] = (pos_free[2] - prev[3]) / dt
            tx, ty, tz = q_rel_rotvec(
                fused,
                quat_free[0],
                quat_free[1],
                quat_free[2],
                quat_free[3],
                prev[4],
                prev[5],
                prev[6],
                prev[7],
            )
            vt[3], vt[4], vt[5] = tx / dt, ty / dt, tz / dt
        clamp_velocity_hint(vt, vlo, vhi)
        bits = limited_step(target, mask, n_direct, pva, lo, hi, limits, vlo, vhi, vt, dt, _GRID, x_new)
    if not bits & CHANGED or (mask[3] and mask[4] and mask[5]):
        bits |= ROTATION_DIRECT
        qx, qy, qz, qw = quat[0], quat[1], quat[2], quat[3]
        tx, ty, tz = full_x, full_y, full_z  # the turn the commit records: the one computed above
    else:
        rx, ry, rz, rw = rotvec_to_q(fused, x_new[3], x_new[4], x_new[5])
        mx, my, mz, mw = q_mul(rx, ry, rz, rw, q_last[0], q_last[1], q_last[2], q_last[3])
        qx, qy, qz, qw = q_normalize(fused, mx, my, mz, mw)
        tx, ty, tz = q_rel_rotvec(fused, qx, qy, qz, qw, q_last[0], q_last[1], q_last[2], q_last[3])
    x_new[3], x_new[4], x_new[5] = tx, ty, tz
    commit(pva, x_new, dt)
    prev[0] = 1.0
    prev[1], prev[2], prev[3] = pos_free[0], pos_free[1], pos_free[2]
    prev[4], prev[5], prev[6], prev[7] = quat_free[0], quat_free[1], quat_free[2], quat_free[3]
    out[0], out[1], out[2] = x_new[0], x_new[1], x_new[2]
    out[3], out[4], out[5], out[6] = qx, qy, qz, qw
    if tool_clear_at(kinds, params, c[_REACH], c[_FLOOR], x_new[0], x_new[1], x_new[2]):
        bits |= TOOL_CLEAR
        if tool_state[T_ZERO] != 0.0:
            return bits  # far from the floor and every zone: every depth stays zero
    if c[_REACH] < 0.0:
        return bits  # no tool points
    # No tool point deeper than the last command's (the shield's tool check, Zones.tool_over).
    n = kinds.shape[0] + 1
    depths = tool_state[T_DEPTHS : T_DEPTHS + n]
    if tool_state[T_KNOWN] == 0.0:
        _tool_depths(seed_pose[0:3], seed_pose[3:7], tool, c[_FLOOR], kinds, params, np.zeros(n), depths)
        tool_state[T_KNOWN] = 1.0
    now = np.empty(n)
    k = _tool_depths(out[0:3], out[3:7], tool, c[_FLOOR], kinds, params, depths, now)
    if k >= 0:
        return bits | (TOOL_DEEPER_FLOOR if k == 0 else TOOL_DEEPER_ZONE)
    zero = 1.0
    for i in range(n):
        depths[i] = now[i]
        if now[i] != 0.0:
            zero = 0.0
    tool_state[T_ZERO] = zero
    return bits


@jit
def ee_tick(
    fused: bool,
    target_quat: np.ndarray,
    pos: np.ndarray,
    m_pos: np.ndarray,
    m_quat: np.ndarray,
    q_last: np.ndarray,
    pva: np.ndarray,
    limits: np.ndarray,
    box: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    kinds: np.ndarray,
    params: np.ndarray,
    tool: np.ndarray,
    tool_zr: np.ndarray,
    c: np.ndarray,
    prev: np.ndarray,
    dt: float,
    go_on: bool,
    box_fixed: bool,
    tool_state: np.ndarray,
    seed_pose: np.ndarray,
    work: np.ndarray,
) -> tuple[int, int, int, int]:
    """:func:`ee_target`, then :func:`ee_rest`, as far as none of the shield's Python steps is
    needed between them: the bits of ee_target, ee_track and ee_motion (0 for one not run) and
    how many ran. ``go_on``: no seeded escape (else the shield goes on); ``box_fixed``: as
    :func:`ee_rest`."""
    t_bits = ee_target(
        fused, target_quat, pos, m_pos, m_quat, q_last, pva, box, kinds, params, tool, tool_zr, c, work
    )
    if not go_on or t_bits & (TRACKING | UNPROJECTED):
        return t_bits, 0, 0, 1
    near = t_bits & TOOL_NEAR != 0
    pos_free, quat_free = work[W_POS : W_POS + 3], work[W_QUAT : W_QUAT + 4]
    if near and (work[W_K_TARGET] >= 0.0 or work[W_K_LAST] >= 0.0):
        # The tool in at the target's orientation or the last command's: Shield._tool_target.
        if c[_OFFSETS] < 0.0 or (work[W_K_TARGET] >= 0.0 and c[_REJECT] != 0.0):
            return t_bits, 0, 0, 1  # offsets numpy rounds otherwise (one point), or a hold
        moved = work[W_MOVED : W_MOVED + 3]
        how = (fused, c[_OFFSETS] != 0.0)
        lo_ws, hi_ws = box[0], box[1]
        if not _project_tool(
            how, pos_free, quat_free, q_last, 2, tool, lo_ws, hi_ws, kinds, params, _TOOL_ROUNDS, moved
        ) and not _project_tool(
            how, pos_free, quat_free, q_last, 1, tool, lo_ws, hi_ws, kinds, params, _TOOL_ROUNDS, moved
        ):
            if work[W_K_TARGET] >= 0.0:
                return t_bits, 0, 0, 1  # no way out for the tool: a hold
            moved[0], moved[1], moved[2] = pos_free[0], pos_free[1], pos_free[2]
        t_bits |= TOOL_MOVED
        if work[W_K_TARGET] < 0.0 and (
            moved[0] != pos_free[0] or moved[1] != pos_free[1] or moved[2] != pos_free[2]
        ):
            n = kinds.shape[0] + 1
            k = _tool_depths(pos_free, q_last, tool, c[_FLOOR], kinds, params, np.zeros(n), np.zeros(n))
            t_bits |= (
                TOOL_WAS_IN_ZONE if k > 0 else TOOL_WAS_IN_FLOOR
            )  # Zones.tool_violation's kind, or workspace
        pos_free = moved
    tool_floor = work[W_TOOL_FLOOR] if near else -math.inf
    r_bits, m_bits, reached = ee_rest(
        fused,
        pos_free,
        quat_free,
        m_pos,
        m_quat,
        q_last,
        pva,
        limits,
        lo,
        hi,
        kinds,
        params,
        c,
        prev,
        dt,
        tool_floor,
        box_fixed,
        tool,
        tool_state,
        seed_pose,
        work,
    )
    return t_bits, r_bits, m_bits, reached


@jit
def ee_rest(
    fused: bool,
    pos_free: np.ndarray,
    quat_free: np.ndarray,
    m_pos: np.ndarray,
    m_quat: np.ndarray,
    q_last: np.ndarray,
    pva: np.ndarray,
    limits: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    kinds: np.ndarray,
    params: np.ndarray,
    c: np.ndarray,
    prev: np.ndarray,
    dt: float,
    tool_floor: float,
    box_fixed: bool,
    tool: np.ndarray,
    tool_state: np.ndarray,
    seed_pose: np.ndarray,
    work: np.ndarray,
) -> tuple[int, int, int]:
    """From the allowed target ``pos_free``, ``quat_free``: :func:`ee_track`, then the box and the
    aim, then :func:`ee_motion`, for a tick without a seeded escape. A target inside the box
    ``lo``, ``hi`` needs no new box; one outside it is clamped into it (:data:`CLAMPED`) when
    ``box_fixed`` (no zones, the box is the workspace's: ``Zones.free_box`` gives the same box
    while the last command is inside it), else the shield looks for a new box. As the shield:
    the tool's floor (``tool_floor``, -inf for none) raises the box's floor as far as braking
    stays above it, and an aim below it is clamped too. The bits of ee_track and ee_motion (0 if not run) and the stages reached
    (2: stopped after ee_track, for a hold or a new box; 3: done)."""
    tracked = work[W_TRACKED : W_TRACKED + 7]
    r_bits = ee_track(fused, pos_free, quat_free, m_pos, m_quat, q_last, lo, hi, c, tracked)
    if r_bits & TRACKING and c[_HOLD] != 0.0:
        return r_bits, 0, 2
    inside = r_bits & INSIDE != 0
    lx, ly, lz = pva[P, 0], pva[P, 1], pva[P, 2]
    if not inside and not (
        box_fixed and lo[0] <= lx <= hi[0] and lo[1] <= ly <= hi[1] and lo[2] <= lz <= hi[2]
    ):
        return r_bits, 0, 2  # Zones.free_box may give another box
    floor_lo = lo
    if tool_floor > -math.inf:
        # The TCP's floor for the tool (Shield._ee_step), raised only as far as braking allows.
        floor = tool_floor
        if floor > lo[2]:
            if lz - c[_WORST_STOP_Z] < floor:
                low = lz - _stop1(-pva[V, 2], -pva[A, 2], limits[AMAX, 2], limits[JMAX, 2])
                floor = low if low < floor else floor  # min(floor, low)
            if floor > lo[2]:
                floor_lo = lo.copy()
                floor_lo[2] = floor
                if inside and tracked[2] < floor:
                    inside = False
    aim = tracked[0:3]
    if not inside:
        aim = np.empty(3)
        for i in range(3):
            x = tracked[i] if tracked[i] >= floor_lo[i] else floor_lo[i]  # np.maximum, then
            aim[i] = x if x <= hi[i] else hi[i]  # np.minimum
            if aim[i] != tracked[i]:
                r_bits |= CLAMPED
    m_bits = ee_motion(
        fused,
        aim,
        tracked[3:7],
        q_last,
        pos_free,
        quat_free,
        prev,
        pva,
        limits,
        floor_lo,
        hi,
        limits[VLO],
        limits[VMAX],
        dt,
        c,
        kinds,
        params,
        tool,
        tool_state,
        seed_pose,
        work[W_COMMAND : W_COMMAND + 7],
    )
    return r_bits, m_bits, 3

"""The trajectory's evaluation as compiled loops over float64 scalars (issue 13: chunk intake).

A curve is ``times [n]`` and a table ``[3, n, D]`` (positions, velocities, accelerations at the
waypoints; rows a curve does not use are never read) with its ``order`` (1 linear, 3 cubic
Hermite, 5 quintic Hermite) and a mask of the bounded columns ``[D]``. A plan is a curve faded in
from an older one (see :mod:`robot_agent.trajectory.trajectory`). On 7-column arrays numpy's
per-call cost was most of the work: a plan sample took some 40 numpy calls, freezing a fading
plan some 260, 28 times a second on the event loop.

The loops are written in the order of operations of the numpy expressions they replaced
(``tests/robot_agent/trajectory/_reference_trajectory.py`` keeps those), term by term, left to
right, so compiled (numba, no fastmath: no contraction, no reassociation) and interpreted they
give the same bits; ``test_trajectory_kernels.py`` checks it on random plans. Maxima, minima and
clips follow numpy's (2.x) results for floats, NaN and signed zeros included (checked against
numpy on special values in the tests).

The smoothstep of a fade is not computed here: its ``(1 - tau) ** 2`` is C's ``pow`` in Python
and a multiplication in numba, which may differ in the last bit; callers pass it in.
"""

from __future__ import annotations

import numpy as np

from safety.compiled import jit

__all__ = ["curve_at", "curve_at1", "kernel_array", "load", "plan_at", "plan_at1", "tangents"]

_FLOAT64 = np.dtype(np.float64)


def kernel_array(x: object) -> np.ndarray:
    """``x`` as the one array type the kernels are compiled for (writable, aligned, C-contiguous
    float64: ``flags.carray``): ``x`` itself when it is one, else a copy. Any other type (a
    read-only chunk, a strided slice, float32) would compile a new specialisation, about a
    second, inside the event loop (``safety.motion._kernel_array`` does the same)."""
    if type(x) is np.ndarray and x.flags.carray and x.dtype == _FLOAT64:
        return x
    return np.array(x, dtype=np.float64, order="C")


@jit
def _maximum(x: float, y: float) -> float:
    """``np.maximum`` of two floats: NaN propagates, a tie gives ``y`` (so ``-0.0, 0.0`` -> ``0.0``)."""
    return x if (x > y or x != x) else y


@jit
def _minimum(x: float, y: float) -> float:
    """``np.minimum`` of two floats: NaN propagates, a tie gives ``y``."""
    return x if (x < y or x != x) else y


@jit
def _clip(x: float, lo: float, hi: float) -> float:
    """``np.clip(x, lo, hi)`` for floats: ``lo`` where ``x < lo``, then ``hi`` where above it; a
    NaN bound wins, a NaN ``x`` passes, a tie keeps ``x``."""
    m = lo if (lo != lo or x < lo) else x
    return hi if (hi != hi or m > hi) else m


@jit
def _point(
    times: np.ndarray,
    table: np.ndarray,
    order: int,
    bounded: np.ndarray,
    t: float,
    p: np.ndarray,
    v: np.ndarray,
    a: np.ndarray,
) -> None:
    """``p, v, a`` ``[D]`` := the curve's position, velocity and acceleration at ``t``: in the
    segment ``bisect_right(times, t) - 1`` (clamped to the first and last), at the phase clamped
    to ``[0, 1]``; one waypoint: its value, at rest. Bounded columns linear, clipped between
    the segment's ends. (``Curve._segment`` with ``LinearCurve.derivatives`` and
    ``HermiteCurve._derivatives`` before issue 13.)"""
    n = times.shape[0]
    d = table.shape[2]
    if n == 1:
        for c in range(d):
            p[c] = table[0, 0, c]
            v[c] = 0.0
            a[c] = 0.0
        return
    lo = 0
    hi = n
    while lo < hi:  # bisect.bisect_right
        mid = (lo + hi) // 2
        if t < times[mid]:
            hi = mid
        else:
            lo = mid + 1
    k = lo - 1
    if k < 0:
        k = 0
    if k > n - 2:
        k = n - 2
    h = times[k + 1] - times[k]
    s = (t - times[k]) / h
    if s < 0.0:  # Python's min(max(s, 0.0), 1.0)
        s = 0.0
    if s > 1.0:
        s = 1.0
    if order == 1:
        for c in range(d):
            p0 = table[0, k, c]
            p1 = table[0, k + 1, c]
            p[c] = (1.0 - s) * p0 + s * p1
            v[c] = (p1 - p0) / h
            a[c] = 0.0
    elif order == 3:
        s2 = s * s
        s3 = s * s * s
        c0 = 2 * s3 - 3 * s2 + 1
        c1 = s3 - 2 * s2 + s
        c2 = -2 * s3 + 3 * s2
        c3 = s3 - s2
        e0 = 6 * s2 - 6 * s
        e1 = 3 * s2 - 4 * s + 1
        e2 = -6 * s2 + 6 * s
        e3 = 3 * s2 - 2 * s
        f0 = 12 * s - 6
        f1 = 6 * s - 4
        f2 = -12 * s + 6
        f3 = 6 * s - 2
        hh = h * h
        for c in range(d):
            p0 = table[0, k, c]
            p1 = table[0, k + 1, c]
            v0 = table[1, k, c] * h
            v1 = table[1, k + 1, c] * h
            p[c] = c0 * p0 + c1 * v0 + c2 * p1 + c3 * v1
            v[c] = (e0 * p0 + e1 * v0 + e2 * p1 + e3 * v1) / h
            a[c] = (f0 * p0 + f1 * v0 + f2 * p1 + f3 * v1) / hh
    else:
        s2 = s * s
        s3 = s * s * s
        s4 = s3 * s
        s5 = s3 * s2
        c0 = 1 - 10 * s3 + 15 * s4 - 6 * s5
        c1 = s - 6 * s3 + 8 * s4 - 3 * s5
        c2 = 0.5 * s2 - 1.5 * s3 + 1.5 * s4 - 0.5 * s5
        c3 = 0.5 * s3 - s4 + 0.5 * s5
        c4 = -4 * s3 + 7 * s4 - 3 * s5
        c5 = 10 * s3 - 15 * s4 + 6 * s5
        e0 = -30 * s2 + 60 * s3 - 30 * s4
        e1 = 1 - 18 * s2 + 32 * s3 - 15 * s4
        e2 = s - 4.5 * s2 + 6 * s3 - 2.5 * s4
        e3 = 1.5 * s2 - 4 * s3 + 2.5 * s4
        e4 = -12 * s2 + 28 * s3 - 15 * s4
        f0 = -60 * s + 180 * s2 - 120 * s3
        f1 = -36 * s + 96 * s2 - 60 * s3
        f2 = 1 - 9 * s + 18 * s2 - 10 * s3
        f3 = 3 * s - 12 * s2 + 10 * s3
        f4 = -24 * s + 84 * s2 - 60 * s3
        hh = h * h
        for c in range(d):
            p0 = table[0, k, c]
            p1 = table[0, k + 1, c]
            v0 = table[1, k, c] * h
            v1 = table[1, k + 1, c] * h
            a0 = table[2, k, c] * h * h
            a1 = table[2, k + 1, c] * h * h
            p[c] = c0 * p0 + c1 * v0 + c2 * a0 + c3 * a1 + c4 * v1 + c5 * p1
            dp = p0 - p1
            v[c] = (e0 * dp + e1 * v0 + e2 * a0 + e3 * a1 + e4 * v1) / h
            a[c] = (f0 * dp + f1 * v0 + f2 * a0 + f3 * a1 + f4 * v1) / hh
    for c in range(d):
        if bounded[c]:
            p0 = table[0, k, c]
            p1 = table[0, k + 1, c]
            p[c] = _clip((1.0 - s) * p0 + s * p1, _minimum(p0, p1), _maximum(p0, p1))
            v[c] = (p1 - p0) / h
            a[c] = 0.0


@jit
def _continued(
    times: np.ndarray,
    table: np.ndarray,
    order: int,
    bounded: np.ndarray,
    t: float,
    p: np.ndarray,
    v: np.ndarray,
    a: np.ndarray,
) -> None:
    """:func:`_point` inside the curve's span; outside it, the state at the nearer end continued
    at constant velocity, the bounded columns held (``_Continued`` before issue 13)."""
    start = times[0]
    end = times[times.shape[0] - 1]
    edge = start if start > t else t  # Python's min(max(t, start), end)
    edge = end if end < edge else edge
    _point(times, table, order, bounded, edge, p, v, a)
    if edge != t:
        dt = t - edge
        for c in range(p.shape[0]):
            vc = 0.0 if bounded[c] else v[c]
            v[c] = vc
            p[c] = p[c] + vc * dt
            a[c] = 0.0


@jit
def _plan_row(
    times: np.ndarray,
    table: np.ndarray,
    order: int,
    bounded: np.ndarray,
    old_times: np.ndarray,
    old_table: np.ndarray,
    old_order: int,
    old_bounded: np.ndarray,
    t: float,
    s0: float,
    s1: float,
    s2: float,
    fading: bool,
    rate: float,
    p: np.ndarray,
    v: np.ndarray,
    a: np.ndarray,
    po: np.ndarray,
    vo: np.ndarray,
    ao: np.ndarray,
) -> None:
    """``p, v, a`` := the plan at ``t``: the curve at ``t`` clamped to its span; when ``fading``
    (the caller's test at the clamped time), faded from the old curve (continued) by the
    smoothstep ``s0, s1, s2`` of that time, ``rate = 1 / length`` (product rule); outside the
    span, continued at constant velocity, bounded columns held (``_Plan.derivatives`` before
    issue 13). ``po, vo, ao``: scratch ``[D]``."""
    start = times[0]
    end = times[times.shape[0] - 1]
    edge = start if start > t else t
    edge = end if end < edge else edge
    _point(times, table, order, bounded, edge, p, v, a)
    d = p.shape[0]
    if fading:
        _continued(old_times, old_table, old_order, old_bounded, edge, po, vo, ao)
        for c in range(d):
            gap = p[c] - po[c]
            dv = v[c] - vo[c]
            da = a[c] - ao[c]
            x = po[c] + s0 * gap
            if bounded[c]:
                x = _clip(x, _minimum(po[c], p[c]), _maximum(po[c], p[c]))
            v[c] = vo[c] + s0 * dv + s1 * rate * gap
            a[c] = ao[c] + s0 * da + 2.0 * s1 * rate * dv + s2 * rate * rate * gap
            p[c] = x
    if edge != t:
        dt = t - edge
        for c in range(d):
            vc = 0.0 if bounded[c] else v[c]
            v[c] = vc
            p[c] = p[c] + vc * dt
            a[c] = 0.0


@jit
def tangents(times: np.ndarray, table: np.ndarray, row: int) -> None:
    """``table[row + 1]`` := the finite-difference derivative of ``table[row]`` ``[n, D]`` at each
    waypoint: central inside, one-sided at the ends, zero for one waypoint (``_tangents`` in
    ``interpolation.py`` before issue 13)."""
    n = times.shape[0]
    src = table[row]
    dst = table[row + 1]
    d = table.shape[2]
    if n < 2:
        for c in range(d):
            dst[0, c] = 0.0
        return
    h0 = times[1] - times[0]
    h1 = times[n - 1] - times[n - 2]
    for c in range(d):
        dst[0, c] = (src[1, c] - src[0, c]) / h0
        dst[n - 1, c] = (src[n - 1, c] - src[n - 2, c]) / h1
    for i in range(1, n - 1):
        h = times[i + 1] - times[i - 1]
        for c in range(d):
            dst[i, c] = (src[i + 1, c] - src[i - 1, c]) / h
    return


@jit
def curve_at(
    times: np.ndarray, table: np.ndarray, order: int, bounded: np.ndarray, ts: np.ndarray
) -> np.ndarray:
    """``[3, m, D]``: position, velocity, acceleration of the curve at each of ``ts`` ``[m]``
    (:func:`_point`)."""
    out = np.empty((3, ts.shape[0], table.shape[2]))
    for i in range(ts.shape[0]):
        _point(times, table, order, bounded, ts[i], out[0, i], out[1, i], out[2, i])
    return out


@jit
def curve_at1(times: np.ndarray, table: np.ndarray, order: int, bounded: np.ndarray, t: float) -> np.ndarray:
    """``[3, D]``: position, velocity, acceleration of the curve at ``t`` (:func:`_point`)."""
    out = np.empty((3, table.shape[2]))
    _point(times, table, order, bounded, t, out[0], out[1], out[2])
    return out


@jit
def plan_at(
    times: np.ndarray,
    table: np.ndarray,
    order: int,
    bounded: np.ndarray,
    old_times: np.ndarray,
    old_table: np.ndarray,
    old_order: int,
    old_bounded: np.ndarray,
    ts: np.ndarray,
    steps: np.ndarray,
    rate: float,
) -> np.ndarray:
    """``[3, m, D]``: the plan (:func:`_plan_row`) at each of ``ts`` ``[m]``; ``steps [m, 4]``:
    the smoothstep ``s0, s1, s2`` of each row and whether it fades (non-zero)."""
    d = table.shape[2]
    out = np.empty((3, ts.shape[0], d))
    scratch = np.empty((3, d))
    for i in range(ts.shape[0]):
        _plan_row(
            times, table, order, bounded, old_times, old_table, old_order, old_bounded, ts[i],
            steps[i, 0], steps[i, 1], steps[i, 2], steps[i, 3] != 0.0, rate,
            out[0, i], out[1, i], out[2, i], scratch[0], scratch[1], scratch[2],
        )  # fmt: skip
    return out


@jit
def plan_at1(
    times: np.ndarray,
    table: np.ndarray,
    order: int,
    bounded: np.ndarray,
    old_times: np.ndarray,
    old_table: np.ndarray,
    old_order: int,
    old_bounded: np.ndarray,
    t: float,
    s0: float,
    s1: float,
    s2: float,
    fading: bool,
    rate: float,
) -> np.ndarray:
    """``[3, D]``: the plan (:func:`_plan_row`) at ``t``."""
    d = table.shape[2]
    out = np.empty((6, d))
    _plan_row(
        times, table, order, bounded, old_times, old_table, old_order, old_bounded, t, s0, s1, s2, fading,
        rate,
        out[0], out[1], out[2], out[3], out[4], out[5],
    )  # fmt: skip
    return out[:3]


def load() -> None:
    """Load (or on a machine's first run compile, some seconds) the compiled code of every entry
    point now, for the array types the trajectory passes, not at the first chunk."""
    times = np.zeros(1)
    table = np.zeros((3, 1, 1))
    mask = np.zeros(1, dtype=np.bool_)
    curve_at(times, table, 1, mask, times)
    tangents(times, table, 0)
    curve_at1(times, table, 1, mask, 0.0)
    plan_at(times, table, 1, mask, times, table, 1, mask, times, np.zeros((1, 4)), 1.0)
    plan_at1(times, table, 1, mask, times, table, 1, mask, 0.0, 0.0, 0.0, 0.0, False, 1.0)

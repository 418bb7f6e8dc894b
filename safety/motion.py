"""A jerk-limited filter that keeps position, velocity, acceleration and jerk bounds at once.

Why hand-written: Ruckig plans whole trajectories at a fixed cycle; the shield needs one step at
a time, at whatever dt the last tick really took, with a *guarantee* on the finite differences
that a recording will show. Each axis carries the state of the last command: position ``p``,
velocity ``v = (p - p_prev) / dt`` and acceleration ``a = (v - v_prev) / dt``, exactly the
quantities ``verify_trace`` recomputes. A step picks the next acceleration ``a'``; then

    v' = v + a' dt,   p' = p + v' dt,   jerk = (a' - a) / dt.

Every bound is an interval on ``a'``: jerk ``|a' - a| <= J dt``, acceleration ``|a'| <= A``,
velocity ``|v'| <= V``, position ``lo <= p' <= hi``. Clamping them one by one is not enough:
near a velocity or position bound the jerk limit may leave no admissible ``a'`` on the next tick.
So two more intervals keep the state *viable*, i.e. able to brake in time, whatever dts follow:

* velocity: ``-V <= v' + a'|a'| / (2J) <= V`` (the velocity reached by ramping ``a'`` to zero);
* position: ``p' + S(v', a') <= hi`` and the mirror for ``lo``, where ``S`` bounds how far the arm
  travels while braking (accel ramped to ``-A`` at rate ``J``).

The braking step ``a' = max(a - J dt, -A)`` satisfies both upper conditions again, and its
mirror the lower ones (a right-endpoint Riemann sum of a decreasing rate never exceeds its
integral), so a state that starts viable stays viable. The hypothesis tests in
``tests/safety/test_safety_properties.py`` check the claim on adversarial input.

Between the bounds the filter aims for the target: in one step when that is admissible (so a
smooth input passes unchanged), otherwise as fast as it can while still able to stop at it; when
the caller says how fast the target moves, "stop" means "match its speed", so a filter that fell
behind a moving target (a ramp started too abruptly) rejoins it and then passes it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from safety.compiled import jit

__all__ = ["Axes", "StepResult", "stop_distance"]

# The kernels below (compiled by safety.compiled.jit) are plain loops over float64 scalars, written
# in the order of operations of the numpy expressions they replaced, so compiled and interpreted
# they give the same bits as the numpy filter did.

_FLOAT64 = np.dtype(np.float64)


def _kernel_array(x: Any) -> np.ndarray:
    """``x`` as the one array type the kernels are compiled for (writable, aligned, C-contiguous
    float64; ``flags.carray``): ``x`` itself when it is one, else a copy."""
    if type(x) is np.ndarray and x.flags.carray and x.dtype == _FLOAT64:
        return x
    return np.array(x, dtype=np.float64, order="C")


# Candidate accelerations per axis when a viability bound must be searched numerically.
_GRID = 16


def stop_distance(v: np.ndarray, a: np.ndarray, amax: np.ndarray, jmax: np.ndarray) -> np.ndarray:
    """Upper bound on the distance travelled in +direction while braking from (v, a).

    Braking: the acceleration falls at rate ``jmax`` to ``-amax`` and stays there until the
    velocity reaches zero. While ``a > 0`` the velocity still rises to ``v + a^2 / (2 jmax)``;
    that phase is bounded by peak velocity times its duration (cheap, conservative, and
    consistent along the braking path, which is what viability needs). Called on every tick:
    written for few numpy calls.
    """
    ap = np.maximum(a, 0.0)
    tau1 = ap / jmax
    v0 = v + 0.5 * ap * tau1  # velocity when the acceleration reaches zero
    v0p = np.maximum(v0, 0.0)
    a0 = a - ap  # min(a, 0)
    t1 = (a0 + amax) / jmax  # time for a0 to ramp down to -amax
    v1 = v0 + t1 * (a0 - 0.5 * jmax * t1)
    # The velocity reaches zero during the ramp (at ts) or after it, at constant -amax.
    ts = (a0 + np.sqrt(a0 * a0 + 2.0 * jmax * v0p)) / jmax
    t = np.where(v1 <= 0.0, ts, t1)
    d2 = t * (v0 + t * (0.5 * a0 - jmax * t / 6.0)) + np.where(v1 > 0.0, v1 * v1 / (2.0 * amax), 0.0)
    out: np.ndarray = v0p * tau1 + np.where(v0 > 0.0, np.maximum(d2, 0.0), 0.0)
    return out


@jit
def _stop1(v: float, a: float, amax: float, jmax: float) -> float:
    """:func:`stop_distance` for one axis in plain floats, the same operations in the same order."""
    ap = a if a > 0.0 else 0.0
    tau1 = ap / jmax
    v0 = v + 0.5 * ap * tau1
    if v0 <= 0.0:
        return 0.0
    a0 = a - ap
    t1 = (a0 + amax) / jmax
    v1 = v0 + t1 * (a0 - 0.5 * jmax * t1)
    if v1 <= 0.0:
        t = (a0 + math.sqrt(a0 * a0 + 2.0 * jmax * v0)) / jmax
        d2 = t * (v0 + t * (0.5 * a0 - jmax * t / 6.0))
    else:
        d2 = t1 * (v0 + t1 * (0.5 * a0 - jmax * t1 / 6.0)) + v1 * v1 / (2.0 * amax)
    return v0 * tau1 + (d2 if d2 > 0.0 else 0.0)


@jit
def _direct1(
    x: float,
    pi: float,
    vi: float,
    ai: float,
    lo: float,
    hi: float,
    am: float,
    jm: float,
    vlo: float,
    vhi: float,
    dt: float,
    dt2: float,
) -> bool:
    """One axis of :func:`_direct_kernel`: is the target ``x`` reachable in one step?"""
    a_new = (x - pi - vi * dt) / dt2
    v_new = vi + a_new * dt
    w_lo = pi if pi < lo else lo
    w_hi = pi if pi > hi else hi
    return (
        abs(a_new - ai) <= jm * dt
        and abs(a_new) <= am
        and vlo <= v_new <= vhi
        # Velocity viability: the velocity reached by ramping the acceleration to zero.
        and vlo <= v_new + a_new * abs(a_new) / (2.0 * jm) <= vhi
        and w_lo <= x <= w_hi
        and x + _stop1(v_new, a_new, am, jm) <= w_hi
        and x - _stop1(-v_new, -a_new, am, jm) >= w_lo
    )


@jit
def _max(x: float, y: float) -> float:
    return x if x >= y else y


@jit
def _min(x: float, y: float) -> float:
    return x if x <= y else y


@jit
def _step1(
    x: float,
    direct: bool,
    pi: float,
    vi: float,
    ai: float,
    lo_in: float,
    hi_in: float,
    am: float,
    jm: float,
    vlo: float,
    vhi: float,
    vt: float,
    dt: float,
    dt2: float,
    grid: int,
) -> tuple[float, bool, bool, bool, bool]:
    """One axis of :func:`_step_kernel`: its new position, and whether the one-step target breaks
    its jerk, acceleration, velocity and position bounds."""
    last = grid - 1
    # Seeded outside its box (the arm started there): allow motion back, never further out.
    lo = _min(lo_in, pi)
    hi = _max(hi_in, pi)
    pv = pi + vi * dt
    a_des = (x - pv) / dt2
    # Closed-form intervals: jerk, acceleration, velocity, position, velocity viability.
    lj, uj = ai - jm * dt, ai + jm * dt
    rv_up = _max(vhi - vi, 0.0)
    rv_dn = _max(vi - vlo, 0.0)
    # Roots of v + a' dt + a'|a'| / (2J) = +-V, written without cancellation.
    uv = 2.0 * rv_up / (dt + math.sqrt(dt2 + 2.0 * rv_up / jm))
    lv = -2.0 * rv_dn / (dt + math.sqrt(dt2 + 2.0 * rv_dn / jm))
    lp, up = (lo - pv) / dt2, (hi - pv) / dt2
    f_jerk = a_des < lj or a_des > uj
    f_acc = abs(a_des) > am
    f_vel = a_des < lv or a_des > uv
    f_pos = a_des < lp or a_des > up
    if direct:
        return x, f_jerk, f_acc, f_vel, f_pos
    # Narrowed in order of priority: should rounding ever leave no room (a viable state
    # always has some), the lower-priority bound gives way, never jerk or acceleration.
    lo_a, hi_a = _max(lj, -am), _min(uj, am)
    hi_a = _max(lo_a, hi_a)
    for k in range(3):
        if k == 0:
            lb, ub = (vlo - vi) / dt, (vhi - vi) / dt
        elif k == 1:
            lb, ub = lp, up
        else:
            lb, ub = lv, uv
        new_lo = _min(_max(lb, lo_a), hi_a)
        new_hi = _min(_max(ub, lo_a), hi_a)
        new_lo = _min(new_lo, new_hi)
        lo_a, hi_a = new_lo, _max(new_hi, new_lo)
    # The grid search of Axes._search, on this axis.
    step = (hi_a - lo_a) / last
    n_up = n_dn = n_reach_up = n_reach_dn = 0
    for k in range(grid):
        cand = lo_a + step * float(k)
        v_new = vi + cand * dt
        p_new = pi + v_new * dt
        if p_new + _stop1(v_new, cand, am, jm) <= hi:
            n_up += 1
        if p_new - _stop1(-v_new, -cand, am, jm) >= lo:
            n_dn += 1
        # Relative to the moving target: braking only has to bring the speed to its speed.
        v_rel = v_new - vt
        if p_new + _stop1(v_rel, cand, am, jm) <= x:
            n_reach_up += 1
        if p_new - _stop1(-v_rel, -cand, am, jm) >= x:
            n_reach_dn += 1
    i_lo, i_hi = grid - n_dn, n_up - 1
    if i_lo <= i_hi:
        lo_v = lo_a + step * float(i_lo)
        hi_v = lo_a + step * float(i_hi)
    else:  # none admissible only through rounding at a wall: brake along the motion
        lo_v = hi_v = lo_a if vi > 0 else hi_a
    best_up = lo_a + step * float(n_reach_up - 1) if n_reach_up > 0 else lo_a
    best_dn = lo_a + step * float(grid - n_reach_dn) if n_reach_dn > 0 else hi_a
    goal = _min(a_des, best_up) if pi <= x else _max(a_des, best_dn)
    a_new = _min(_max(goal, lo_v), hi_v)
    return pv + a_new * dt2, f_jerk, f_acc, f_vel, f_pos


# The state a step reads and writes (Axes._pva, updated in place): rows position, velocity and
# acceleration of the last command, and whether each axis' last step took its target (1.0, else
# 0.0). The limits (Axes.limits): rows max acceleration, max jerk, -max velocity, max velocity.
P, V, A, ON_TARGET = 0, 1, 2, 3
AMAX, JMAX, VLO, VMAX = 0, 1, 2, 3

# The bits of a step's outcome (:func:`limited_step`, the kernels): which bounds the one-step
# target would have broken on some axis, and whether some axis did not take its target.
JERK, ACCELERATION, VELOCITY, POSITION, CHANGED = 1, 2, 4, 8, 16


@jit
def direct_mask(
    target: np.ndarray,
    pva: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    limits: np.ndarray,
    vlo: np.ndarray,
    vhi: np.ndarray,
    dt: float,
    mask: np.ndarray,
) -> int:
    """``mask[i]``: whether axis i may take ``target[i]`` in one step (:func:`_direct1`); returns
    how many may."""
    dt2 = dt * dt
    n_direct = 0
    for i in range(target.shape[0]):
        ok = _direct1(
            target[i],
            pva[P, i],
            pva[V, i],
            pva[A, i],
            lo[i],
            hi[i],
            limits[AMAX, i],
            limits[JMAX, i],
            vlo[i],
            vhi[i],
            dt,
            dt2,
        )
        mask[i] = ok
        n_direct += ok
    return n_direct


@jit
def all_on_target(pva: np.ndarray) -> bool:
    """Whether every axis' last step took its target."""
    for i in range(pva.shape[1]):  # noqa: SIM110 (numba compiles the loop, not all() of a generator)
        if pva[ON_TARGET, i] == 0.0:
            return False
    return True


@jit
def clamp_velocity_hint(vt: np.ndarray, vlo: np.ndarray, vhi: np.ndarray) -> None:
    """The caller's estimate of the target's velocity made usable, in place: 0 where it is not
    finite, then within ``[vlo, vhi]`` (``np.minimum(np.maximum(vt, vlo), vhi)``)."""
    for i in range(vt.shape[0]):
        x = vt[i] if math.isfinite(vt[i]) else 0.0
        vt[i] = _min(_max(x, vlo[i]), vhi[i])


@jit
def limited_step(
    target: np.ndarray,
    mask: np.ndarray,
    n_direct: int,
    pva: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    limits: np.ndarray,
    vlo: np.ndarray,
    vhi: np.ndarray,
    vt: np.ndarray,
    dt: float,
    grid: int,
    out: np.ndarray,
) -> int:
    """The rest of :meth:`Axes.step` once the target's velocity ``vt`` (clamped) is known and
    not every axis is known to take its target (``mask``, ``n_direct`` as :func:`direct_mask`):
    ``out`` is the new position, ``pva[ON_TARGET]`` which axes took their target; returns the
    outcome's bits (:data:`JERK` ... :data:`CHANGED`)."""
    n = target.shape[0]
    dt2 = dt * dt
    settle_j = settle_a = False
    if n_direct > 0 and not all_on_target(pva):
        # An axis catching up may land on the target only in a state that can go on with it
        # (the target's velocity next tick, then zero acceleration the tick after, each
        # within one tick's jerk); landing faster overshoots and the filter would chase the
        # target around it, crossing back and forth over a point it was asked to stop at.
        for i in range(n):
            if not mask[i] or pva[ON_TARGET, i] != 0.0:
                continue
            jm_dt = limits[JMAX, i] * dt
            v1 = (target[i] - pva[P, i]) / dt
            a1 = (v1 - pva[V, i]) / dt
            a_next = (vt[i] - v1) / dt
            s_j = abs(a_next - a1) > jm_dt or abs(a_next) > jm_dt
            s_a = abs(a_next) > limits[AMAX, i]
            if s_j or s_a:
                mask[i] = False
                n_direct -= 1
                settle_j = settle_j or s_j
                settle_a = settle_a or s_a
    if n_direct == n:
        for i in range(n):
            out[i] = target[i]
            pva[ON_TARGET, i] = 1.0
        return 0
    bits = CHANGED
    if settle_j:
        bits |= JERK
    if settle_a:
        bits |= ACCELERATION
    for i in range(n):
        x, f_jerk, f_acc, f_vel, f_pos = _step1(
            target[i],
            mask[i],
            pva[P, i],
            pva[V, i],
            pva[A, i],
            lo[i],
            hi[i],
            limits[AMAX, i],
            limits[JMAX, i],
            vlo[i],
            vhi[i],
            vt[i],
            dt,
            dt2,
            grid,
        )
        out[i] = x
        pva[ON_TARGET, i] = 1.0 if mask[i] else 0.0
        if f_jerk:
            bits |= JERK
        if f_acc:
            bits |= ACCELERATION
        if f_vel:
            bits |= VELOCITY
        if f_pos:
            bits |= POSITION
    if not bits & (JERK | ACCELERATION | VELOCITY):
        bits |= POSITION  # a step limited by nothing else was limited by its walls
    return bits


@jit
def commit(pva: np.ndarray, p_new: np.ndarray, dt: float) -> None:
    """Take ``p_new`` as the commanded position, in place: ``v = (p_new - p) / dt``,
    ``a = (v_new - v) / dt``, as a recording computes them."""
    for i in range(p_new.shape[0]):
        v_new = (p_new[i] - pva[P, i]) / dt
        pva[A, i] = (v_new - pva[V, i]) / dt
        pva[V, i] = v_new
        pva[P, i] = p_new[i]


@jit
def _direct_kernel(
    target: np.ndarray,
    pva: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    limits: np.ndarray,
    vlo: np.ndarray,
    vhi: np.ndarray,
    dt: float,
    mask: np.ndarray,
    out: np.ndarray,
) -> int:
    """The start of :meth:`Axes.step`: the one-step mask; -1 if every axis takes its target and
    did on the last step (``out`` is then the target; nothing more to do), else how many may
    (the caller then needs the target's velocity, for :func:`_step_kernel`)."""
    n_direct = direct_mask(target, pva, lo, hi, limits, vlo, vhi, dt, mask)
    if n_direct == target.shape[0] and all_on_target(pva):
        for i in range(target.shape[0]):
            out[i] = target[i]
        return -1
    return n_direct


@jit
def _step_kernel(
    target: np.ndarray,
    mask: np.ndarray,
    n_direct: int,
    pva: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    limits: np.ndarray,
    vlo: np.ndarray,
    vhi: np.ndarray,
    vt: np.ndarray,
    dt: float,
    grid: int,
    out: np.ndarray,
) -> int:
    """The end of :meth:`Axes.step` (:func:`limited_step`), ``vt`` the caller's raw estimate."""
    clamp_velocity_hint(vt, vlo, vhi)
    return limited_step(target, mask, n_direct, pva, lo, hi, limits, vlo, vhi, vt, dt, grid, out)


@jit
def _seed_kernel(pva: np.ndarray, p: np.ndarray) -> None:
    """:meth:`Axes.seed` in place: at ``p``, at rest, every axis on its target."""
    for i in range(p.shape[0]):
        pva[P, i] = p[i]
        pva[V, i] = 0.0
        pva[A, i] = 0.0
        pva[ON_TARGET, i] = 1.0


@jit
def _commit_kernel(pva: np.ndarray, p_new: np.ndarray, dt: float) -> None:
    """:func:`commit` (a kernel of its own, so the interpreted run can swap it)."""
    commit(pva, p_new, dt)


class StepResult:
    """What a step did: ``direct`` marks the axes that took the target exactly; the flags say
    which bounds the one-step target would have broken on some axis."""

    __slots__ = ("acceleration", "changed", "direct", "jerk", "position", "velocity")

    def __init__(self, direct: np.ndarray, changed: bool | None = None) -> None:
        self.direct = direct
        self.changed = not bool(direct.all()) if changed is None else changed
        self.jerk = False
        self.acceleration = False
        self.velocity = False
        self.position = False


class Axes:
    """The per-axis state of one group (e.g. 3 translation + 3 rotation, or N joints).

    ``state`` is what the compiled kernels update in place: rows position, velocity,
    acceleration of the last command (``p``, ``v`` and ``a`` are views of them) and whether each
    axis' last step took its target (:data:`ON_TARGET`); ``limits``: rows max acceleration,
    max jerk, ``-vmax`` and ``vmax``; ``vlo``: ``-vmax``. :mod:`safety.ee_kernels` steps the end effector's six axes in
    one call on these arrays.
    """

    def __init__(self, vmax: np.ndarray, amax: np.ndarray, jmax: np.ndarray) -> None:
        self.vmax = np.asarray(vmax, dtype=float)
        self.amax = np.asarray(amax, dtype=float)
        self.jmax = np.asarray(jmax, dtype=float)
        n = self.vmax.size
        self.state = np.zeros((4, n))
        self.state[ON_TARGET] = 1.0
        self.p, self.v, self.a = self.state[P], self.state[V], self.state[A]
        self.limits = np.ascontiguousarray(np.stack([self.amax, self.jmax, -self.vmax, self.vmax]))
        self._a2 = np.concatenate([self.amax, self.amax])
        self._j2 = np.concatenate([self.jmax, self.jmax])
        self._all_true = np.ones(n, dtype=bool)
        self.vlo = -self.vmax
        # Load the compiled kernels now (about 0.15 s from numba's cache, 1.5 s to compile on
        # a machine's first run), not on the first control tick.
        rest = np.zeros((4, n))
        mask, out = np.empty(n, dtype=bool), np.empty(n)
        bounds = (self.p, self.p, self.limits, self.vlo, self.vmax)
        _direct_kernel(self.p, rest, *bounds, 0.01, mask, out)
        _step_kernel(self.p, mask, 0, rest, *bounds, np.zeros(n), 0.01, _GRID, out)
        _commit_kernel(rest, out, 0.01)
        _seed_kernel(rest, out)

    def seed(self, p: np.ndarray) -> None:
        """At rest at ``p`` (after reset or a hold): nothing to brake, so any bound is reachable."""
        p = _kernel_array(p)
        if p.shape == (self.state.shape[1],):
            _seed_kernel(self.state, p)
            return
        self.state[P] = p  # numpy's broadcasting, and its error for a shape that cannot
        self.state[V] = 0.0
        self.state[A] = 0.0
        self.state[ON_TARGET] = 1.0

    def envelope(self) -> tuple[np.ndarray, np.ndarray]:
        """Where braking from the current state may still reach, below and above."""
        return self._reach(self.p, self.v, self.a)

    def step(
        self,
        target: np.ndarray,
        dt: float,
        lo: np.ndarray,
        hi: np.ndarray,
        target_velocity: Callable[[], np.ndarray] | None = None,
        direction: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, StepResult]:
        """Advance one tick toward ``target`` within ``[lo, hi]``; returns the new position.

        Axes whose one-step value is admissible get the target exactly (bit for bit). Rotation
        axes work in coordinates relative to the last command (p = 0, target = the error
        rotation vector, walls at infinity). The caller then commits with :meth:`commit`, once
        it knows the final output (rotations round-trip through quaternions).

        ``target_velocity`` (called only when the target is out of one step's reach) says how
        fast the target moves: the filter then closes on it as on a moving point, i.e. it may
        arrive at the target's speed instead of braking to rest at the target's current
        position. Without it a ramp is chased at a constant lag (the braking distance at the
        ramp's speed) and never rejoined. Safety never depends on it: the aim is clamped to
        the admissible interval whatever it says.

        ``direction = (up_only, down_only)`` (boolean arrays, one value per axis) is a ratchet:
        on an up-only axis the velocity, and the velocity reached by ramping the acceleration
        to zero, stay >= 0, so the position never decreases (mirror for down-only; both: the
        axis stays still). It is the velocity bound with ``-V`` replaced by 0, so the viability
        argument above holds unchanged; it must be switched on at rest (a seed) and may only
        be relaxed afterwards. The shield uses it to leave a keep-out zone, the workspace or a
        joint limit band monotonically (issue 10, kind 8).
        """
        # The kernels were compiled for writable C-contiguous float64 arrays and a float dt
        # (__init__); any other type (a caller's read-only or strided target, a float32 dt) would
        # compile a new specialisation, about a second, inside the control tick. ``lo`` and
        # ``hi`` are the caller's own bounds arrays, built once: they must be of that type.
        target, dt = _kernel_array(target), float(dt)
        if direction is None:
            vlo, vhi = self.vlo, self.vmax
        else:
            up_only, down_only = direction
            vlo = np.where(up_only, 0.0, self.vlo)
            vhi = np.where(down_only, 0.0, self.vmax)
        n = target.shape[0]
        mask, out = np.empty(n, dtype=bool), np.empty(n)
        n_direct = _direct_kernel(target, self.state, lo, hi, self.limits, vlo, vhi, dt, mask, out)
        if n_direct < 0:
            return out, StepResult(self._all_true, False)
        # A copy: the kernel clamps it in place.
        vt = np.zeros(n) if target_velocity is None else np.array(target_velocity(), dtype=np.float64)
        bits = _step_kernel(
            target, mask, n_direct, self.state, lo, hi, self.limits, vlo, vhi, vt, dt, _GRID, out
        )
        if not bits & CHANGED:
            return out, StepResult(self._all_true, False)
        res = StepResult(mask, True)
        res.jerk = bool(bits & JERK)
        res.acceleration = bool(bits & ACCELERATION)
        res.velocity = bool(bits & VELOCITY)
        res.position = bool(bits & POSITION)
        return out, res

    def commit(self, p_new: np.ndarray, dt: float) -> None:
        """Take ``p_new`` as the commanded position; v and a as a recording would compute them."""
        _commit_kernel(self.state, _kernel_array(p_new), float(dt))

    # --- internals ------------------------------------------------------------------------------

    def _reach(self, p: np.ndarray, v: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest positions braking from (p, v, a) may reach, shape (n,)."""
        n = self.vmax.size
        d = stop_distance(np.concatenate([v, -v]), np.concatenate([a, -a]), self._a2, self._j2)
        return p - d[n:], p + d[:n]

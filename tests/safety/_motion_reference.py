# safety/motion.py as of 718dedd (numpy), kept verbatim as the oracle of test_motion_kernels.py: do not edit.
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

import numpy as np

__all__ = ["Axes", "StepResult", "stop_distance"]

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


def _stop1(v: float, a: float, amax: float, jmax: float) -> float:
    """:func:`stop_distance` for one axis in plain floats (cheaper than numpy for a handful)."""
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


def _narrow(lo: np.ndarray, hi: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersect [lo, hi] with [lb, ub]; where they miss, the point of [lo, hi] nearest to it."""
    new_lo = np.minimum(np.maximum(lb, lo), hi)
    new_hi = np.minimum(np.maximum(ub, lo), hi)
    new_lo = np.minimum(new_lo, new_hi)
    return new_lo, np.maximum(new_hi, new_lo)


class StepResult:
    """What a step did: ``direct`` marks the axes that took the target exactly; the flags say
    which bounds the one-step target would have broken on some axis."""

    __slots__ = ("acceleration", "changed", "direct", "jerk", "position", "velocity")

    def __init__(self, direct: np.ndarray) -> None:
        self.direct = direct
        self.changed = not bool(direct.all())
        self.jerk = False
        self.acceleration = False
        self.velocity = False
        self.position = False


class Axes:
    """The per-axis state of one group (e.g. 3 translation + 3 rotation, or N joints), vectorised.

    Upward and downward braking distances are computed in one call on stacked arrays: on small
    arrays numpy's cost is per call, not per element.
    """

    def __init__(self, vmax: np.ndarray, amax: np.ndarray, jmax: np.ndarray) -> None:
        self.vmax = np.asarray(vmax, dtype=float)
        self.amax = np.asarray(amax, dtype=float)
        self.jmax = np.asarray(jmax, dtype=float)
        n = self.vmax.size
        self.p = np.zeros(n)
        self.v = np.zeros(n)
        self.a = np.zeros(n)
        self._a2 = np.concatenate([self.amax, self.amax])
        self._j2 = np.concatenate([self.jmax, self.jmax])
        self._a2g = self._a2[:, None]
        self._j2g = self._j2[:, None]
        self._index = np.arange(_GRID, dtype=float)[None, :]
        self._all_true = np.ones(n, dtype=bool)
        self._on_target = self._all_true  # per axis: the last step took its target exactly
        self._limits = list(zip(self.vmax.tolist(), self.amax.tolist(), self.jmax.tolist(), strict=True))
        self._vlo_list = (-self.vmax).tolist()
        self._vhi_list = self.vmax.tolist()

    def seed(self, p: np.ndarray) -> None:
        """At rest at ``p`` (after reset or a hold): nothing to brake, so any bound is reachable."""
        self.p = np.array(p, dtype=float)
        self.v = np.zeros_like(self.p)
        self.a = np.zeros_like(self.p)
        self._on_target = self._all_true

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
        if direction is None:
            vlo_l, vhi_l = self._vlo_list, self._vhi_list
            vlo, vhi = -self.vmax, self.vmax
        else:
            up_only, down_only = direction
            vlo = np.where(up_only, 0.0, -self.vmax)
            vhi = np.where(down_only, 0.0, self.vmax)
            vlo_l, vhi_l = vlo.tolist(), vhi.tolist()
        mask = self._direct(target, dt, lo, hi, vlo_l, vhi_l)
        p, v, a = self.p, self.v, self.a
        amax, jmax = self.amax, self.jmax
        vt: np.ndarray | None = None
        settle_j = settle_a = None
        if not self._on_target.all() and any(mask):
            # An axis catching up may land on the target only in a state that can go on with it
            # (the target's velocity next tick, then zero acceleration the tick after, each
            # within one tick's jerk); landing faster overshoots and the filter would chase the
            # target around it, crossing back and forth over a point it was asked to stop at.
            vt = self._target_velocity(target_velocity, vlo, vhi)
            v1 = (target - p) / dt
            a1 = (v1 - v) / dt
            a_next = (vt - v1) / dt
            settle_j = (np.abs(a_next - a1) > jmax * dt) | (np.abs(a_next) > jmax * dt)
            settle_a = np.abs(a_next) > amax
            refuse = ~self._on_target & np.array(mask) & (settle_j | settle_a)
            if refuse.any():
                mask = (np.array(mask) & ~refuse).tolist()
                settle_j &= refuse
                settle_a &= refuse
            else:
                settle_j = settle_a = None
        if all(mask):
            self._on_target = self._all_true
            return target.copy(), StepResult(self._all_true)
        # Seeded outside its box (the arm started there): allow motion back, never further out.
        lo = np.minimum(lo, p)
        hi = np.maximum(hi, p)
        dt2 = dt * dt
        pv = p + v * dt
        a_des = (target - pv) / dt2

        # Closed-form intervals: jerk, acceleration, velocity, position, velocity viability.
        lj, uj = a - jmax * dt, a + jmax * dt
        rv_up = np.maximum(vhi - v, 0.0)
        rv_dn = np.maximum(v - vlo, 0.0)
        # Roots of v + a' dt + a'|a'| / (2J) = +-V, written without cancellation.
        uv = 2.0 * rv_up / (dt + np.sqrt(dt2 + 2.0 * rv_up / jmax))
        lv = -2.0 * rv_dn / (dt + np.sqrt(dt2 + 2.0 * rv_dn / jmax))
        lp, up = (lo - pv) / dt2, (hi - pv) / dt2
        # Narrowed in order of priority: should rounding ever leave no room (a viable state
        # always has some), the lower-priority bound gives way, never jerk or acceleration.
        lo_a, hi_a = np.maximum(lj, -amax), np.minimum(uj, amax)
        hi_a = np.maximum(lo_a, hi_a)
        for lb, ub in (((vlo - v) / dt, (vhi - v) / dt), (lp, up), (lv, uv)):
            lo_a, hi_a = _narrow(lo_a, hi_a, lb, ub)

        direct = np.array(mask)
        res = StepResult(direct)
        if vt is None:
            vt = self._target_velocity(target_velocity, vlo, vhi)
        a_new = np.where(direct, a_des, self._search(a_des, dt, lo_a, hi_a, lo, hi, target, vt))
        self._on_target = direct
        res.jerk = bool(np.any((a_des < lj) | (a_des > uj))) or (
            settle_j is not None and bool(settle_j.any())
        )
        res.acceleration = bool(np.any(np.abs(a_des) > amax)) or (
            settle_a is not None and bool(settle_a.any())
        )
        res.velocity = bool(np.any((a_des < lv) | (a_des > uv)))
        res.position = bool(np.any((a_des < lp) | (a_des > up))) or not (
            res.jerk or res.acceleration or res.velocity
        )
        return np.where(direct, target, pv + a_new * dt2), res

    def _target_velocity(
        self, target_velocity: Callable[[], np.ndarray] | None, vlo: np.ndarray, vhi: np.ndarray
    ) -> np.ndarray:
        """The caller's estimate of the target's velocity, within the velocity bounds (0: none)."""
        if target_velocity is None:
            return np.zeros_like(self.vmax)
        vt = np.asarray(target_velocity(), dtype=float)
        vt = np.where(np.isfinite(vt), vt, 0.0)
        out: np.ndarray = np.minimum(np.maximum(vt, vlo), vhi)
        return out

    def commit(self, p_new: np.ndarray, dt: float) -> None:
        """Take ``p_new`` as the commanded position; v and a as a recording would compute them."""
        v_new = (p_new - self.p) / dt
        self.a = (v_new - self.v) / dt
        self.v = v_new
        self.p = np.array(p_new, dtype=float)

    # --- internals ------------------------------------------------------------------------------

    def _direct(
        self,
        target: np.ndarray,
        dt: float,
        lo: np.ndarray,
        hi: np.ndarray,
        vlo_l: list[float],
        vhi_l: list[float],
    ) -> list[bool]:
        """Per axis, in plain floats (the common case, cheap): is the target reachable in one step?

        Every bound holds for the one-step value: jerk, acceleration, velocity, position, and
        both viability conditions. Axes that pass take their target exactly.
        """
        dt2 = dt * dt
        out = []
        for x, p, v, a, w_lo, w_hi, (_, amax, jmax), v_lo, v_hi in zip(
            target.tolist(),
            self.p.tolist(),
            self.v.tolist(),
            self.a.tolist(),
            lo.tolist(),
            hi.tolist(),
            self._limits,
            vlo_l,
            vhi_l,
            strict=True,
        ):
            a_new = (x - p - v * dt) / dt2
            v_new = v + a_new * dt
            w_lo = min(w_lo, p)
            w_hi = max(w_hi, p)
            out.append(
                abs(a_new - a) <= jmax * dt
                and abs(a_new) <= amax
                and v_lo <= v_new <= v_hi
                # Velocity viability: the velocity reached by ramping the acceleration to zero.
                and v_lo <= v_new + a_new * abs(a_new) / (2.0 * jmax) <= v_hi
                and w_lo <= x <= w_hi
                and x + _stop1(v_new, a_new, amax, jmax) <= w_hi
                and x - _stop1(-v_new, -a_new, amax, jmax) >= w_lo
            )
        return out

    def _reach(self, p: np.ndarray, v: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lowest and highest positions braking from (p, v, a) may reach; works on (n,) or (n, K)."""
        n = self.vmax.size
        if v.ndim == 1:
            d = stop_distance(np.concatenate([v, -v]), np.concatenate([a, -a]), self._a2, self._j2)
        else:
            d = stop_distance(np.concatenate([v, -v]), np.concatenate([a, -a]), self._a2g, self._j2g)
        return p - d[n:], p + d[:n]

    def _search(
        self,
        a_des: np.ndarray,
        dt: float,
        lo_a: np.ndarray,
        hi_a: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        target: np.ndarray,
        target_velocity: np.ndarray | None = None,
    ) -> np.ndarray:
        """Pick a' in [lo_a, hi_a], viable against the walls, and as close to the goal as allowed.

        Both viability conditions are monotone in a' (the upper one rises, the lower one
        falls), so the admissible set is an interval; it is found on a grid of candidates that
        always contains the braking steps lo_a and hi_a, which are admissible in a viable state.
        The same grid, with the target as a wall, says how hard to go without overshooting it;
        a wall moving at ``target_velocity`` when the target moves (braking relative to it).
        """
        step = (hi_a - lo_a) / (_GRID - 1)
        cand = lo_a[:, None] + step[:, None] * self._index
        v_new = self.v[:, None] + cand * dt
        p_new = self.p[:, None] + v_new * dt
        down, up = self._reach(p_new, v_new, cand)
        # The upper condition holds for a prefix of the sorted candidates, the lower one for a
        # suffix: counting the Trues gives the ends of the admissible run without searching.
        n_up = np.add.reduce(up <= hi[:, None], axis=1)
        n_dn = np.add.reduce(down >= lo[:, None], axis=1)
        i_lo, i_hi = _GRID - n_dn, n_up - 1
        # None admissible only through rounding at a wall: brake along the motion.
        fallback = np.where(self.v > 0, lo_a, hi_a)
        feasible = i_lo <= i_hi
        lo_v = np.where(feasible, lo_a + step * i_lo, fallback)
        hi_v = np.where(feasible, lo_a + step * i_hi, fallback)
        # Toward the target without overshooting it: below it, the largest a' that can still
        # stop at it (the target as an upper wall); above it, the smallest. If none can, brake.
        below = self.p <= target
        t = target[:, None]
        if target_velocity is not None and target_velocity.any():
            # Relative to the moving target: braking only has to bring the speed to the target's.
            down, up = self._reach(p_new, v_new - target_velocity[:, None], cand)
        n_reach_up = np.add.reduce(up <= t, axis=1)
        n_reach_dn = np.add.reduce(down >= t, axis=1)
        best_up = np.where(n_reach_up > 0, lo_a + step * (n_reach_up - 1), lo_a)
        best_dn = np.where(n_reach_dn > 0, lo_a + step * (_GRID - n_reach_dn), hi_a)
        goal = np.where(below, np.minimum(a_des, best_up), np.maximum(a_des, best_dn))
        out: np.ndarray = np.minimum(np.maximum(goal, lo_v), hi_v)
        return out

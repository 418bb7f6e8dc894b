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
smooth input passes unchanged), otherwise as fast as it can while still able to stop at it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Axes", "StepResult", "stop_distance"]

# Candidate accelerations per axis when a viability bound must be searched numerically.
_GRID = 24


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
    return v0p * tau1 + np.where(v0 > 0.0, np.maximum(d2, 0.0), 0.0)


def _narrow(lo: np.ndarray, hi: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Intersect [lo, hi] with [lb, ub]; where they miss, the point of [lo, hi] nearest to it."""
    new_lo = np.clip(lb, lo, hi)
    new_hi = np.clip(ub, lo, hi)
    new_lo = np.maximum(new_lo, lo)
    return np.minimum(new_lo, new_hi), np.maximum(new_hi, np.minimum(new_lo, new_hi))


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
        self._grid = np.linspace(0.0, 1.0, _GRID)

    def seed(self, p: np.ndarray) -> None:
        """At rest at ``p`` (after reset or a hold): nothing to brake, so any bound is reachable."""
        self.p = np.array(p, dtype=float)
        self.v = np.zeros_like(self.p)
        self.a = np.zeros_like(self.p)

    def envelope(self) -> tuple[np.ndarray, np.ndarray]:
        """Where braking from the current state may still reach, below and above."""
        return self._reach(self.p, self.v, self.a)

    def step(
        self, target: np.ndarray, dt: float, lo: np.ndarray, hi: np.ndarray
    ) -> tuple[np.ndarray, StepResult]:
        """Advance one tick toward ``target`` within ``[lo, hi]``; returns the new position.

        Axes whose one-step value is admissible get the target exactly (bit for bit). Rotation
        axes work in coordinates relative to the last command (p = 0, target = the error
        rotation vector, walls at infinity). The caller then commits with :meth:`commit`, once
        it knows the final output (rotations round-trip through quaternions).
        """
        p, v, a = self.p, self.v, self.a
        vmax, amax, jmax = self.vmax, self.amax, self.jmax
        # Seeded outside its box (the arm started there): allow motion back, never further out.
        lo = np.minimum(lo, p)
        hi = np.maximum(hi, p)
        dt2 = dt * dt
        pv = p + v * dt
        a_des = (target - pv) / dt2

        # Closed-form intervals: jerk, acceleration, velocity, position, velocity viability.
        lj, uj = a - jmax * dt, a + jmax * dt
        rv_up = np.maximum(vmax - v, 0.0)
        rv_dn = np.maximum(vmax + v, 0.0)
        # Roots of v + a' dt + a'|a'| / (2J) = +-V, written without cancellation.
        uv = 2.0 * rv_up / (dt + np.sqrt(dt2 + 2.0 * rv_up / jmax))
        lv = -2.0 * rv_dn / (dt + np.sqrt(dt2 + 2.0 * rv_dn / jmax))
        lp, up = (lo - pv) / dt2, (hi - pv) / dt2
        # Narrowed in order of priority: should rounding ever leave no room (a viable state
        # always has some), the lower-priority bound gives way, never jerk or acceleration.
        lo_a, hi_a = np.maximum(lj, -amax), np.minimum(uj, amax)
        hi_a = np.maximum(lo_a, hi_a)
        for lb, ub in (((-vmax - v) / dt, (vmax - v) / dt), (lp, up), (lv, uv)):
            lo_a, hi_a = _narrow(lo_a, hi_a, lb, ub)

        v_des = v + a_des * dt
        down, upr = self._reach(pv + v_des * dt, v_des, a_des)
        direct = (a_des >= lo_a) & (a_des <= hi_a) & (upr <= hi) & (down >= lo)
        res = StepResult(direct)
        if not res.changed:
            return target.copy(), res
        a_new = np.where(direct, a_des, self._search(a_des, dt, lo_a, hi_a, lo, hi, target))
        res.jerk = bool(np.any((a_des < lj) | (a_des > uj)))
        res.acceleration = bool(np.any(np.abs(a_des) > amax))
        res.velocity = bool(np.any((a_des < lv) | (a_des > uv)))
        res.position = bool(np.any((a_des < lp) | (a_des > up))) or not (
            res.jerk or res.acceleration or res.velocity
        )
        return np.where(direct, target, pv + a_new * dt2), res

    def commit(self, p_new: np.ndarray, dt: float) -> None:
        """Take ``p_new`` as the commanded position; v and a as a recording would compute them."""
        v_new = (p_new - self.p) / dt
        self.a = (v_new - self.v) / dt
        self.v = v_new
        self.p = np.array(p_new, dtype=float)

    # --- internals ------------------------------------------------------------------------------

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
    ) -> np.ndarray:
        """Pick a' in [lo_a, hi_a], viable against the walls, and as close to the goal as allowed.

        Both viability conditions are monotone in a' (the upper one rises, the lower one
        falls), so the admissible set is an interval; it is found on a grid of candidates that
        always contains the braking steps lo_a and hi_a, which are admissible in a viable state.
        The same grid, with the target as a wall, says how hard to go without overshooting it.
        """
        cand = lo_a[:, None] + (hi_a - lo_a)[:, None] * self._grid[None, :]
        v_new = self.v[:, None] + cand * dt
        p_new = self.p[:, None] + v_new * dt
        down, up = self._reach(p_new, v_new, cand)
        ok = (up <= hi[:, None]) & (down >= lo[:, None])
        # Sorted candidates, admissible set an interval: first/last True give its ends.
        any_ok = ok.any(axis=1)
        rows = np.arange(cand.shape[0])
        first = cand[rows, np.argmax(ok, axis=1)]
        last = cand[rows, _GRID - 1 - np.argmax(ok[:, ::-1], axis=1)]
        # None admissible only through rounding at a wall: brake along the motion.
        fallback = np.where(self.v > 0, lo_a, hi_a)
        lo_v = np.where(any_ok, first, fallback)
        hi_v = np.where(any_ok, last, fallback)
        # Toward the target without overshooting it: below it, the largest a' that can still
        # stop at it (the target as an upper wall); above it, the smallest. If none can, brake.
        below = self.p <= target
        t = target[:, None]
        reach = np.where(below[:, None], up <= t, down >= t)
        can = reach.any(axis=1)
        best_up = np.where(can, cand[rows, _GRID - 1 - np.argmax(reach[:, ::-1], axis=1)], lo_a)
        best_dn = np.where(can, cand[rows, np.argmax(reach, axis=1)], hi_a)
        goal = np.where(below, np.minimum(a_des, best_up), np.maximum(a_des, best_dn))
        return np.clip(goal, lo_v, hi_v)

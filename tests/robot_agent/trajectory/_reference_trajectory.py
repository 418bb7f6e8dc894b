"""The trajectory as it was before issue 13's intake work (robot_agent/trajectory at 22fbb8f:
interpolation.py, blending.py and trajectory.py, numpy on small arrays), kept as the oracle of
``test_trajectory_kernels.py``: the compiled evaluation must give these values bit for bit."""

from __future__ import annotations
# ruff: noqa
# mypy: ignore-errors

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from typing_extensions import override

from robot_agent.trajectory.ruckig_follower import RuckigFollower

# --- blending.py ------------------------------------------------------------


@dataclass(frozen=True)
class Blended:
    values: np.ndarray  # [n, D]
    weight_sums: np.ndarray  # [n], ensemble bookkeeping
    counts: np.ndarray  # [n], predictions merged per waypoint


def blend(
    mode: str,
    new: np.ndarray,
    old: np.ndarray | None,
    old_weight_sums: np.ndarray | None = None,
    old_counts: np.ndarray | None = None,
    *,
    crossfade_steps: int = 3,
    ensemble_decay: float = 0.1,
) -> Blended:
    """Blend ``new`` waypoints ``[n, D]`` with ``old`` sampled at the same times (``NaN`` rows
    where the old plan has nothing there)."""
    n = new.shape[0]
    ones = np.ones(n)
    if old is None or mode == "replace":
        return Blended(new.copy(), ones, ones.copy())
    overlap = ~np.isnan(old).any(axis=1)
    out = new.copy()
    if mode == "crossfade":
        for j in range(min(crossfade_steps, n)):
            if overlap[j]:
                w = (j + 1) / (crossfade_steps + 1)
                out[j] = w * new[j] + (1.0 - w) * old[j]
        return Blended(out, ones, ones.copy())
    if mode == "ensemble":
        wsum = np.where(overlap, old_weight_sums if old_weight_sums is not None else 1.0, 0.0)
        count = np.where(overlap, old_counts if old_counts is not None else 1.0, 0.0)
        w_new = np.exp(-ensemble_decay * count)
        safe_old = np.where(overlap[:, None], old, 0.0)
        out = (wsum[:, None] * safe_old + w_new[:, None] * new) / (wsum + w_new)[:, None]
        return Blended(out, wsum + w_new, count + 1.0)
    raise ValueError(f"unknown blend mode {mode!r}")


# --- interpolation.py -------------------------------------------------------


class Curve:
    """A curve through waypoints ``values [n, D]`` at ``times [n]`` (seconds); ``sample`` is
    defined on ``[times[0], times[-1]]``. ``bounded``: indices of columns interpolated linearly
    whatever the mode (see the module docs). Raises ``ValueError`` for mismatched shapes, times
    not strictly increasing or a column index outside ``[0, D)``."""

    def __init__(self, times: np.ndarray, values: np.ndarray, *, bounded: Sequence[int] = ()) -> None:
        times = np.asarray(times, dtype=float)
        values = np.asarray(values, dtype=float)
        if times.ndim != 1 or values.ndim != 2 or values.shape[0] != times.shape[0] or times.shape[0] < 1:
            raise ValueError(f"need times [n] and values [n, D], got {times.shape} and {values.shape}")
        if np.any(np.diff(times) <= 0):
            raise ValueError("waypoint times must be strictly increasing")
        self.times = times
        self.values = values
        self._times: list[float] = times.tolist()
        columns = sorted({int(c) for c in bounded})
        if columns and not (columns[0] >= 0 and columns[-1] < values.shape[1]):
            raise ValueError(
                f"bounded columns {columns} outside the {values.shape[1]} columns of the waypoints"
            )
        self.bounded: tuple[int, ...] = tuple(columns)
        self._bounded = np.array(columns, dtype=int)

    def held(self, velocity: np.ndarray) -> np.ndarray:
        """``velocity`` ``[D]`` or ``[m, D]`` with the bounded columns zeroed: the velocity at
        which the curve is continued outside ``[start, end]`` (a gripper holds its last command;
        extrapolating it would leave the waypoints' range). The same array when none is bounded."""
        if not self.bounded:
            return velocity
        out = np.array(velocity, dtype=float)
        out[..., self._bounded] = 0.0
        return out

    def _linear_bounded(
        self, k: Any, h: Any, s: Any, p: np.ndarray, v: np.ndarray | None = None, a: np.ndarray | None = None
    ) -> None:
        """Overwrite the bounded columns of ``p`` (and ``v``, ``a`` when given) in segment(s)
        ``k`` with the straight line between the waypoints: ``(1 - s) * p0 + s * p1``, within
        ``[min(p0, p1), max(p0, p1)]`` for ``s`` in ``[0, 1]``."""
        if not self.bounded:
            return
        cols = self._bounded
        p0 = self.values[k][..., cols]
        p1 = self.values[k + 1][..., cols]
        # Clipped: (1 - s) * p0 + s * p1 can round an ulp past p0 == p1, or past p1 at s = 1.
        p[..., cols] = np.clip((1.0 - s) * p0 + s * p1, np.minimum(p0, p1), np.maximum(p0, p1))
        if v is not None:
            v[..., cols] = (p1 - p0) / h
        if a is not None:
            a[..., cols] = 0.0

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def _segment(self, t: float) -> tuple[int, float, float]:
        """Index k of the segment holding ``t``, its length h and the phase s in [0, 1]."""
        n = self.times.shape[0]
        if n == 1:
            return 0, 1.0, 0.0
        # bisect on a list: a control tick's search, without numpy's per-call overhead
        times = self._times
        k = min(max(bisect.bisect_right(times, t) - 1, 0), n - 2)
        h = times[k + 1] - times[k]
        s = min(max((t - times[k]) / h, 0.0), 1.0)
        return k, h, s

    def _segments(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_segment` for each of ``ts`` ``[m]`` (at least two waypoints): indices ``[m]``,
        lengths and phases ``[m, 1]``, the same arithmetic element by element."""
        times = self.times
        k = np.clip(np.searchsorted(times, ts, side="right") - 1, 0, times.shape[0] - 2)
        h = times[k + 1] - times[k]
        s = np.clip((ts - times[k]) / h, 0.0, 1.0)
        return k, h[:, None], s[:, None]

    def sample(self, t: float) -> np.ndarray:
        """Position ``[D]`` at ``t`` (clamped to ``[start, end]``)."""
        raise NotImplementedError

    def derivatives(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position, velocity and acceleration ``[D]`` each at ``t`` in ``[start, end]`` (per
        second; at a waypoint, those of the segment that starts there; at ``end``, the last
        segment's). Used to freeze a blended plan exactly to second order (see ``trajectory``)."""
        raise NotImplementedError

    def samples_at(self, ts: np.ndarray) -> np.ndarray:
        """:meth:`sample` at each of ``ts`` ``[m]``: ``[m, D]``, the same values bit for bit."""
        return np.array([self.sample(float(t)) for t in ts])

    def derivatives_at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`derivatives` at each of ``ts`` ``[m]`` in ``[start, end]``: ``[m, D]`` each, the
        same values bit for bit, in one pass of array operations instead of ``m`` calls."""
        states = [self.derivatives(float(t)) for t in ts]
        return (
            np.array([p for p, _, _ in states]),
            np.array([v for _, v, _ in states]),
            np.array([a for _, _, a in states]),
        )


class LinearCurve(Curve):
    @override
    def sample(self, t: float) -> np.ndarray:
        if self.times.shape[0] == 1:
            first: np.ndarray = self.values[0]
            return first.copy()
        k, h, s = self._segment(t)
        p0: np.ndarray = self.values[k]
        p1: np.ndarray = self.values[k + 1]
        line: np.ndarray = (1.0 - s) * p0 + s * p1
        self._linear_bounded(k, h, s, line)
        return line

    @override
    def derivatives(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        zero = np.zeros(self.values.shape[1])
        if self.times.shape[0] == 1:
            return self.values[0].copy(), zero, zero.copy()
        k, h, s = self._segment(t)
        p0, p1 = self.values[k], self.values[k + 1]
        p = (1.0 - s) * p0 + s * p1
        self._linear_bounded(k, h, s, p)
        return p, (p1 - p0) / h, zero

    @override
    def samples_at(self, ts: np.ndarray) -> np.ndarray:
        if self.times.shape[0] == 1:
            return np.repeat(self.values[:1], ts.shape[0], axis=0)
        k, h, s = self._segments(ts)
        p0, p1 = self.values[k], self.values[k + 1]
        line: np.ndarray = (1.0 - s) * p0 + s * p1
        self._linear_bounded(k, h, s, line)
        return line

    @override
    def derivatives_at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        zero = np.zeros((ts.shape[0], self.values.shape[1]))
        if self.times.shape[0] == 1:
            return np.repeat(self.values[:1], ts.shape[0], axis=0), zero, zero.copy()
        k, h, s = self._segments(ts)
        p0, p1 = self.values[k], self.values[k + 1]
        p = (1.0 - s) * p0 + s * p1
        self._linear_bounded(k, h, s, p)
        return p, (p1 - p0) / h, zero


class HermiteCurve(Curve):
    """Cubic (``order=3``) or quintic (``order=5``) Hermite through the waypoints.

    The velocity (and, quintic, acceleration) at each waypoint are finite differences of the
    waypoints, unless given as ``velocities`` / ``accelerations`` ``[n, D]``: then the curve
    passes through the exact state at each waypoint (how a blended plan is frozen). The
    ``bounded`` columns are linear between waypoints (given velocities and accelerations are
    ignored there), so they never leave the range of the two waypoints either side.
    """

    def __init__(
        self,
        times: np.ndarray,
        values: np.ndarray,
        *,
        order: int = 3,
        start_velocity: np.ndarray | None = None,
        velocities: np.ndarray | None = None,
        accelerations: np.ndarray | None = None,
        bounded: Sequence[int] = (),
    ) -> None:
        super().__init__(times, values, bounded=bounded)
        if order not in (3, 5):
            raise ValueError(f"order must be 3 or 5, got {order}")
        self.order = order
        given = velocities is not None
        self.velocities = (
            np.array(velocities, dtype=float).reshape(self.values.shape)
            if velocities is not None
            else _tangents(self.times, self.values)
        )
        if start_velocity is not None:
            self.velocities[0] = start_velocity
        self.accelerations: np.ndarray | None = None
        if order == 5:
            if accelerations is not None:
                self.accelerations = np.array(accelerations, dtype=float).reshape(self.values.shape)
            else:
                self.accelerations = _tangents(self.times, self.velocities)
                if not given:
                    # The ends have no neighbour on one side: no acceleration there rather than a guess.
                    self.accelerations[0] = 0.0
                    self.accelerations[-1] = 0.0

    @override
    def sample(self, t: float) -> np.ndarray:
        if self.times.shape[0] == 1:
            first: np.ndarray = self.values[0]
            return first.copy()
        return self._positions(*self._segment(t))

    @override
    def samples_at(self, ts: np.ndarray) -> np.ndarray:
        if self.times.shape[0] == 1:
            return np.repeat(self.values[:1], ts.shape[0], axis=0)
        return self._positions(*self._segments(ts))

    def _positions(self, k: Any, h: Any, s: Any) -> np.ndarray:
        """The position in segment(s) ``k`` (see :meth:`_derivatives` for the shapes)."""
        p0: np.ndarray = self.values[k]
        p1: np.ndarray = self.values[k + 1]
        v0: np.ndarray = self.velocities[k] * h
        v1: np.ndarray = self.velocities[k + 1] * h
        s2, s3 = s * s, s * s * s
        if self.order == 3:
            cubic: np.ndarray = (
                (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * v0 + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * v1
            )
            self._linear_bounded(k, h, s, cubic)
            return cubic
        assert self.accelerations is not None
        a0: np.ndarray = self.accelerations[k] * h * h
        a1: np.ndarray = self.accelerations[k + 1] * h * h
        s4, s5 = s3 * s, s3 * s2
        quintic: np.ndarray = (
            (1 - 10 * s3 + 15 * s4 - 6 * s5) * p0
            + (s - 6 * s3 + 8 * s4 - 3 * s5) * v0
            + (0.5 * s2 - 1.5 * s3 + 1.5 * s4 - 0.5 * s5) * a0
            + (0.5 * s3 - s4 + 0.5 * s5) * a1
            + (-4 * s3 + 7 * s4 - 3 * s5) * v1
            + (10 * s3 - 15 * s4 + 6 * s5) * p1
        )
        self._linear_bounded(k, h, s, quintic)
        return quintic

    @override
    def derivatives(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        zero = np.zeros(self.values.shape[1])
        if self.times.shape[0] == 1:
            return self.values[0].copy(), zero, zero.copy()
        return self._derivatives(*self._segment(t))

    @override
    def derivatives_at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.times.shape[0] == 1:
            zero = np.zeros((ts.shape[0], self.values.shape[1]))
            return np.repeat(self.values[:1], ts.shape[0], axis=0), zero, zero.copy()
        return self._derivatives(*self._segments(ts))

    def _derivatives(self, k: Any, h: Any, s: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position, velocity, acceleration in segment(s) ``k`` of length(s) ``h`` at phase(s)
        ``s``: scalars (one time, ``[D]`` each) or, from :meth:`_segments`, ``[m]``, ``[m, 1]``
        and ``[m, 1]`` (``[m, D]`` each), through the same expressions."""
        p0, p1 = self.values[k], self.values[k + 1]
        v0, v1 = self.velocities[k] * h, self.velocities[k + 1] * h
        s2, s3 = s * s, s * s * s
        if self.order == 3:
            # d/ds and d2/ds2 of the cubic Hermite basis; d/dt = (d/ds) / h.
            p = (2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * v0 + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * v1
            d1 = (
                (6 * s2 - 6 * s) * p0
                + (3 * s2 - 4 * s + 1) * v0
                + (-6 * s2 + 6 * s) * p1
                + (3 * s2 - 2 * s) * v1
            )
            d2 = (12 * s - 6) * p0 + (6 * s - 4) * v0 + (-12 * s + 6) * p1 + (6 * s - 2) * v1
            return self._with_bounded(k, h, s, p, d1 / h, d2 / (h * h))
        assert self.accelerations is not None
        a0, a1 = self.accelerations[k] * h * h, self.accelerations[k + 1] * h * h
        s4, s5 = s3 * s, s3 * s2
        p = (
            (1 - 10 * s3 + 15 * s4 - 6 * s5) * p0
            + (s - 6 * s3 + 8 * s4 - 3 * s5) * v0
            + (0.5 * s2 - 1.5 * s3 + 1.5 * s4 - 0.5 * s5) * a0
            + (0.5 * s3 - s4 + 0.5 * s5) * a1
            + (-4 * s3 + 7 * s4 - 3 * s5) * v1
            + (10 * s3 - 15 * s4 + 6 * s5) * p1
        )
        d1 = (
            (-30 * s2 + 60 * s3 - 30 * s4) * (p0 - p1)
            + (1 - 18 * s2 + 32 * s3 - 15 * s4) * v0
            + (s - 4.5 * s2 + 6 * s3 - 2.5 * s4) * a0
            + (1.5 * s2 - 4 * s3 + 2.5 * s4) * a1
            + (-12 * s2 + 28 * s3 - 15 * s4) * v1
        )
        d2 = (
            (-60 * s + 180 * s2 - 120 * s3) * (p0 - p1)
            + (-36 * s + 96 * s2 - 60 * s3) * v0
            + (1 - 9 * s + 18 * s2 - 10 * s3) * a0
            + (3 * s - 12 * s2 + 10 * s3) * a1
            + (-24 * s + 84 * s2 - 60 * s3) * v1
        )
        return self._with_bounded(k, h, s, p, d1 / h, d2 / (h * h))

    def _with_bounded(
        self, k: Any, h: Any, s: Any, p: np.ndarray, v: np.ndarray, a: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``p, v, a`` with the bounded columns linear (:meth:`Curve._linear_bounded`)."""
        if self.bounded:
            p, v, a = np.array(p, dtype=float), np.array(v, dtype=float), np.array(a, dtype=float)
            self._linear_bounded(k, h, s, p, v, a)
        return p, v, a


def _tangents(times: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Finite-difference derivative at each waypoint: central inside, one-sided at the ends."""
    out = np.zeros_like(values)
    n = times.shape[0]
    if n < 2:
        return out
    out[0] = (values[1] - values[0]) / (times[1] - times[0])
    out[-1] = (values[-1] - values[-2]) / (times[-1] - times[-2])
    if n > 2:
        out[1:-1] = (values[2:] - values[:-2]) / (times[2:] - times[:-2])[:, None]
    return out


def make_curve(
    kind: str,
    times: np.ndarray,
    values: np.ndarray,
    start_velocity: np.ndarray | None = None,
    bounded: Sequence[int] = (),
) -> Curve:
    """The curve for interpolation mode ``kind`` (``ruckig`` follows a linear curve), with the
    ``bounded`` columns linear. Raises ``ValueError`` for an unknown ``kind``."""
    if kind in ("linear", "ruckig"):
        return LinearCurve(times, values, bounded=bounded)
    if kind == "cubic":
        return HermiteCurve(times, values, order=3, start_velocity=start_velocity, bounded=bounded)
    if kind == "minimum_jerk":
        return HermiteCurve(times, values, order=5, start_velocity=start_velocity, bounded=bounded)
    raise ValueError(f"unknown interpolation {kind!r}")


# --- trajectory.py ----------------------------------------------------------


_EPS = 1e-9


def _smoothstep(tau: float) -> tuple[float, float, float]:
    """s, ds/dtau and d2s/dtau2 of the quintic smoothstep: 0 -> 1 on [0, 1] with zero first and
    second derivatives at both ends (C2 joins); constant outside."""
    if tau <= 0.0:
        return 0.0, 0.0, 0.0
    if tau >= 1.0:
        return 1.0, 0.0, 0.0
    t2 = tau * tau
    return (
        t2 * tau * (10.0 + tau * (-15.0 + 6.0 * tau)),
        30.0 * t2 * (1.0 - tau) ** 2,
        60.0 * tau * (1.0 - tau) * (1.0 - 2.0 * tau),
    )


def _continued(
    curve: Curve, ts: np.ndarray, edge: np.ndarray, p: np.ndarray, v: np.ndarray, a: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The state ``p, v, a`` ``[m, D]`` at ``edge`` ``[m]`` (``ts`` clamped to ``curve``'s span),
    continued at constant velocity to ``ts`` where they differ (as the scalar paths do); the
    curve's bounded columns are held there (:meth:`Curve.held`)."""
    outside = np.flatnonzero(edge != ts)
    if outside.size:
        v[outside] = curve.held(v[outside])
        p[outside] = p[outside] + v[outside] * (ts[outside] - edge[outside])[:, None]
        a[outside] = 0.0
    return p, v, a


def _between(curve: Curve, old: np.ndarray, blended: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``blended`` (``old + w * (new - old)``, ``w`` in [0, 1]; ``[D]`` or ``[m, D]``) with its
    bounded columns kept between ``old`` and ``new``, where rounding could put them an ulp
    outside. The same array when ``curve`` bounds nothing."""
    if not curve.bounded:
        return blended
    cols = list(curve.bounded)
    lo = np.minimum(old[..., cols], new[..., cols])
    hi = np.maximum(old[..., cols], new[..., cols])
    blended[..., cols] = np.clip(blended[..., cols], lo, hi)
    return blended


class _Continued:
    """A curve continued at its end velocities outside ``[start, end]`` (what a plan would have
    done next, while it still weighs in a fade); its bounded columns (the gripper) are held."""

    __slots__ = ("curve",)

    def __init__(self, curve: Curve) -> None:
        self.curve = curve

    def derivatives(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        curve = self.curve
        edge = min(max(t, curve.start), curve.end)
        p, v, a = curve.derivatives(edge)
        if edge == t:
            return p, v, a
        v = curve.held(v)
        return p + v * (t - edge), v, np.zeros_like(a)

    def derivatives_at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`derivatives` at each of ``ts`` ``[m]``: ``[m, D]`` each, bit for bit."""
        curve = self.curve
        edge = np.minimum(np.maximum(ts, curve.start), curve.end)
        return _continued(curve, ts, edge, *curve.derivatives_at(edge))

    def samples_at(self, ts: np.ndarray) -> np.ndarray:
        """:meth:`sample` at each of ``ts`` ``[m]``: ``[m, D]``, bit for bit."""
        curve = self.curve
        edge = np.minimum(np.maximum(ts, curve.start), curve.end)
        p = curve.samples_at(edge)
        outside = np.flatnonzero(edge != ts)
        if outside.size:
            v = curve.held(curve.derivatives_at(edge[outside])[1])
            p[outside] = p[outside] + v * (ts[outside] - edge[outside])[:, None]
        return p

    def sample(self, t: float) -> np.ndarray:
        curve = self.curve
        if curve.start <= t <= curve.end:
            return curve.sample(t)
        return self.derivatives(t)[0]


class _Plan:
    """A curve, faded in from ``old`` over ``[t0, t0 + length]``.

    ``old`` is never a plan: it is the previous plan's own curve, or, when that plan was itself
    still fading, the previous plan frozen (:meth:`frozen`). So a sample evaluates at most two
    curves, whatever the number of chunks received (it used to evaluate the chain of plans still
    fading, each twice: exponential in their number).
    """

    __slots__ = ("curve", "length", "old", "t0")

    def __init__(
        self, curve: Curve, old: _Continued | None = None, t0: float = 0.0, length: float = 0.0
    ) -> None:
        self.curve = curve
        self.old = old
        self.t0 = t0
        self.length = length

    @property
    def end(self) -> float:
        return self.curve.end

    def _fading(self, t: float) -> bool:
        return self.old is not None and t < self.t0 + self.length

    def sample(self, t: float) -> np.ndarray:
        """The target at ``t``; outside the curve's span, continued at its end velocity."""
        curve = self.curve
        if not curve.start <= t <= curve.end:
            return self.derivatives(t)[0]
        x = curve.sample(t)
        if not self._fading(t):
            return x
        assert self.old is not None
        w = _smoothstep((t - self.t0) / self.length)[0]
        o = self.old.sample(t)
        blended: np.ndarray = _between(curve, o, o + w * (x - o), x)
        return blended

    def samples_at(self, ts: np.ndarray) -> np.ndarray:
        """:meth:`sample` at each of ``ts`` ``[m]``: ``[m, D]``, the same values bit for bit."""
        curve = self.curve
        inside = (ts >= curve.start) & (ts <= curve.end)
        if not inside.all():
            out = np.empty((ts.shape[0], curve.values.shape[1]))
            out[~inside] = self.derivatives_at(ts[~inside])[0]
            if inside.any():
                out[inside] = self.samples_at(ts[inside])
            return out
        x = curve.samples_at(ts)
        old = self.old
        if old is not None:
            fading = np.flatnonzero(ts < self.t0 + self.length)
            if fading.size:
                at = ts[fading]
                w = np.array([_smoothstep(float(t))[0] for t in (at - self.t0) / self.length])[:, None]
                o = old.samples_at(at)
                x[fading] = _between(curve, o, o + w * (x[fading] - o), x[fading])
        return x

    def derivatives(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position, velocity, acceleration at ``t``, the fade included (product rule), continued
        at constant velocity outside the curve's span."""
        curve = self.curve
        edge = min(max(t, curve.start), curve.end)
        if edge != t:
            p, v, a = self.derivatives(edge)
            v = curve.held(v)
            return p + v * (t - edge), v, np.zeros_like(a)
        px, vx, ax = curve.derivatives(t)
        if not self._fading(t):
            return px, vx, ax
        assert self.old is not None
        po, vo, ao = self.old.derivatives(t)
        s0, s1, s2 = _smoothstep((t - self.t0) / self.length)
        rate = 1.0 / self.length
        d, dv, da = px - po, vx - vo, ax - ao
        return (
            _between(curve, po, po + s0 * d, px),
            vo + s0 * dv + s1 * rate * d,
            ao + s0 * da + 2.0 * s1 * rate * dv + s2 * rate * rate * d,
        )

    def derivatives_at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`derivatives` at each of ``ts`` ``[m]``: ``[m, D]`` each, the same values bit for
        bit (the same expressions on arrays), in one pass instead of ``m`` calls."""
        curve = self.curve
        edge = np.minimum(np.maximum(ts, curve.start), curve.end)
        p, v, a = curve.derivatives_at(edge)
        old = self.old
        if old is not None:
            fading = np.flatnonzero(edge < self.t0 + self.length)
            if fading.size:
                at = edge[fading]
                po, vo, ao = old.derivatives_at(at)
                steps = [_smoothstep(float(t)) for t in (at - self.t0) / self.length]
                s0, s1, s2 = (np.array([step[i] for step in steps])[:, None] for i in range(3))
                rate = 1.0 / self.length
                d, dv, da = p[fading] - po, v[fading] - vo, a[fading] - ao
                p[fading] = _between(curve, po, po + s0 * d, p[fading])
                v[fading] = vo + s0 * dv + s1 * rate * d
                a[fading] = ao + s0 * da + 2.0 * s1 * rate * dv + s2 * rate * rate * d
        return _continued(curve, ts, edge, p, v, a)

    def frozen(self, now: float, until: float, dt: float) -> _Continued:
        """This plan from ``now`` on, as a curve that costs one curve to sample, valid to ``until``.

        Without a fade in progress that is the plan's own curve. During one, it is a quintic
        Hermite through the plan's exact position, velocity and acceleration at ``now`` (so a
        fade away from it starts C2, without a jump) and at knots every ``dt / 2`` to ``until``
        (plus one ``dt`` before ``now``, where the next chunk's curve may start): a C2 copy,
        within the interpolation error of a quintic on that grid, of a curve that is itself C2
        (minimum jerk) or close (cubic; for linear it smooths the corners). The bounded columns
        stay linear between the knots' exact positions, so they stay within the plan's range.
        """
        if not self._fading(now):
            return _Continued(self.curve)
        span = max(until - now, dt)
        # Knots every dt / 2 at most (the tolerance keeps their number fixed under rounding).
        count = max(2, math.ceil(2.0 * span / dt - 1e-6))
        knots = np.concatenate([[now - dt], now + span * np.arange(count + 1) / count])
        positions, velocities, accelerations = self.derivatives_at(knots)
        return _Continued(
            HermiteCurve(
                knots,
                positions,
                order=5,
                velocities=velocities,
                accelerations=accelerations,
                bounded=self.curve.bounded,
            )
        )

    def settle(self, now: float) -> None:
        """Drop the old curve once its fade is over."""
        if self.old is not None and now >= self.t0 + self.length:
            self.old = None


@dataclass(frozen=True)
class ChunkResult:
    """What became of a chunk: how many actions were already past, whether any were kept."""

    dropped: int
    kept: int


class Trajectory:
    """Blends chunks into one plan and samples it at control ticks. Not thread-safe: the agent
    touches it only from the event loop.

    ``unwrap(waypoints [n, D], near [D]) -> [n, D]`` gives the same targets in the coordinates
    nearest ``near``, row after row (``ActionSpace.unwrap_waypoints``); without it, waypoints
    are taken as they come (fine for joint spaces, whose angles do not wrap).

    ``bounded_columns``: the step-like, bounded components (the gripper, 0 closed .. 1 open;
    ``ActionSpace.bounded_columns``). Whatever ``interpolation``, they are interpolated linearly
    and held outside a curve's span, so each target lies within the range of the waypoints either
    side of it (blends are convex combinations, so within the range of the chunks' values). Under
    Ruckig the follower tracks that curve a little ahead, to a target at rest: each tick's
    time-optimal plan stops at or before the previous target, so it does not pass the range
    either (checked on random chunks in the tests); the follower clips the ulp its floating point
    can pass it by (:mod:`robot_agent.trajectory.ruckig_follower`).
    """

    def __init__(
        self,
        *,
        blend_mode: str = "crossfade",
        crossfade_steps: int = 3,
        ensemble_decay: float = 0.1,
        interpolation: str = "linear",
        control_dt: float = 0.01,
        ruckig_limits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        unwrap: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        bounded_columns: tuple[int, ...] = (),
    ) -> None:
        self._unwrap = unwrap
        self.bounded_columns = tuple(bounded_columns)
        self.blend_mode = blend_mode
        self.crossfade_steps = crossfade_steps
        self.ensemble_decay = ensemble_decay
        self.interpolation = interpolation
        self._plan: _Plan | None = None
        self._weights: np.ndarray | None = None
        self._counts: np.ndarray | None = None
        self._follower: RuckigFollower | None = None
        if interpolation == "ruckig":
            if ruckig_limits is None:
                raise ValueError("interpolation 'ruckig' needs ruckig_limits (velocity, acceleration, jerk)")
            self._follower = RuckigFollower(control_dt, *ruckig_limits, bounded=self.bounded_columns)
        self._control_dt = control_dt

    @property
    def end_time(self) -> float | None:
        """Time of the last waypoint, or None when there is no plan."""
        return None if self._plan is None else self._plan.end

    def clear(self) -> None:
        """Forget the plan (on hold); the next chunk starts from the pose given to ``add_chunk``."""
        self._plan = None
        self._weights = None
        self._counts = None

    def add_chunk(
        self, waypoints: np.ndarray, capture_time: float, dt: float, now: float, start: np.ndarray
    ) -> ChunkResult:
        """Merge a chunk whose waypoint k is for ``capture_time + k * dt``.

        ``start`` is where the arm is being commanded now; it anchors the plan when there is no
        current one (first chunk, or leaving hold), so the trajectory restarts from the held pose.
        """
        waypoints = np.asarray(waypoints, dtype=float)
        times = capture_time + dt * np.arange(waypoints.shape[0])
        # An action due within half a tick cannot be reached smoothly from where the arm is
        # commanded now (the first segment would last microseconds): it counts as past.
        future = times > now + 0.5 * self._control_dt
        dropped = int(np.count_nonzero(~future))
        if not future.any():
            return ChunkResult(dropped=dropped, kept=0)
        first = int(np.argmax(future))
        first_time = min(float(times[first]) - dt, now)
        plan = self._plan
        if plan is not None and not plan.curve.start <= now <= plan.end:
            plan = None
        old_first = plan.sample(first_time) if plan is not None else None
        if self._unwrap is not None:
            # Rotations as the representatives nearest the plan's (or the held pose's), so the
            # curve and the blends below never cross the 2*pi wrap of a rotation vector.
            lo = max(first - 1, 0)
            near = old_first if old_first is not None else np.asarray(start, dtype=float)
            waypoints = waypoints.copy()
            waypoints[lo:] = self._unwrap(waypoints[lo:], near)
        # The chunk's own point one action before its first kept one (or its backward trend):
        # where the new curve starts, so that its first segment lasts a whole action.
        if first > 0:
            before = waypoints[first - 1]
        elif waypoints.shape[0] > 1:
            before = 2.0 * waypoints[0] - waypoints[1]
            # A bounded column has no trend to extrapolate (a step would land outside its range).
            before[list(self.bounded_columns)] = waypoints[0, list(self.bounded_columns)]
        else:
            before = waypoints[0]
        times, new = times[future], waypoints[future]
        old: np.ndarray | None
        old_w: np.ndarray | None
        old_c: np.ndarray | None
        if plan is not None:
            plan.settle(now)
        # A crossfade happens in time (the fade below); on the waypoints only ensembling mixes, so
        # only ensembling reads the old plan at the new times (blend's "replace" ignores it).
        if plan is not None and self.blend_mode not in ("crossfade", "replace"):
            # The old plan's positions at the new times (sample() bit for bit), none past its end.
            old = plan.samples_at(times)
            old[times > plan.end + _EPS] = np.nan
            curve_times = plan.curve.times
            old_w = np.interp(times, curve_times, self._weights) if self._weights is not None else None
            old_c = (
                np.round(np.interp(times, curve_times, self._counts)) if self._counts is not None else None
            )
        else:
            old = old_w = old_c = None
        blended = blend(
            "replace" if self.blend_mode == "crossfade" else self.blend_mode,
            new,
            old,
            old_w,
            old_c,
            crossfade_steps=self.crossfade_steps,
            ensemble_decay=self.ensemble_decay,
        )
        if plan is None:
            # Nothing to continue: start at now, at rest, from where the arm is held.
            anchor = np.asarray(start, dtype=float)
            first_time, first_value = now, anchor
            start_velocity: np.ndarray | None = np.zeros_like(anchor)
            if self._follower is not None:
                self._follower.reset(anchor)
        else:
            # The new curve starts on its own grid, one action before its first kept one (no
            # segment shorter than an action): the chunk's own point there, or for ensembling
            # its average with the old plan's. The fade joins the curve to the old plan at now.
            if self.blend_mode == "ensemble":
                assert old_first is not None
                first_value = blend(
                    "ensemble",
                    before[None, :],
                    old_first[None, :],
                    None if old_w is None else old_w[:1],
                    None if old_c is None else old_c[:1],
                    ensemble_decay=self.ensemble_decay,
                ).values[0]
            else:
                first_value = np.asarray(before, dtype=float)
            start_velocity = None
        all_times = np.concatenate([[first_time], times])
        all_values = np.vstack([first_value[None, :], blended.values])
        curve = make_curve(
            self.interpolation,
            all_times,
            all_values,
            start_velocity=start_velocity,
            bounded=self.bounded_columns,
        )
        if plan is None:
            self._plan = _Plan(curve)
        else:
            length = (1 if self.blend_mode == "replace" else self.crossfade_steps) * dt
            # The old plan frozen, so that the new one never evaluates more than one older curve.
            self._plan = _Plan(curve, plan.frozen(now, now + length, dt), now, length)
        self._weights = np.concatenate([[1.0], blended.weight_sums])
        self._counts = np.concatenate([[1.0], blended.counts])
        if self._follower is not None and not self._follower.initialised:
            self._follower.reset(first_value)
        return ChunkResult(dropped=dropped, kept=int(times.shape[0]))

    def sample(self, now: float) -> np.ndarray | None:
        """The target for ``now``, or None when the plan is exhausted or empty. With Ruckig this
        advances the follower one control period, so call it once per tick."""
        plan = self._plan
        if plan is None or now > plan.end + _EPS:
            return None
        if self._follower is None:
            return plan.sample(now)
        # Aim a little ahead (at rest there): a point one tick ahead, moving, can be unreachable
        # within the jerk limit without first backing up; the replanning every tick keeps the
        # motion going and the lag small.
        ahead = min(now + max(5 * self._control_dt, 0.03), plan.end)
        target = plan.sample(ahead)
        velocity = np.zeros_like(target)
        return self._follower.step(target, velocity)

    def remaining(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Waypoints still ahead of ``now`` (times, values): the rest of the current chunk, as
        the plan will execute them (a fade still in progress included)."""
        plan = self._plan
        if plan is None:
            return np.empty(0), np.empty((0, 0))
        # Index 0 is the curve's starting point, not an action of any chunk.
        times = plan.curve.times[1:]
        times = times[times > now + _EPS]
        if times.size == 0:
            return times, np.empty((0, plan.curve.values.shape[1]))
        return times, plan.samples_at(times)

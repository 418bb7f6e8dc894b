"""Waypoints at the policy's rate (e.g. 10 Hz) to targets at the control rate (100-1000 Hz).

Stateless curves through time-stamped waypoints ``values[k]`` at ``times[k]``:

- ``linear``: continuous position, velocity jumps at waypoints.
- ``cubic``: cubic Hermite with finite-difference tangents, continuous velocity.
- ``minimum_jerk``: quintic Hermite (the minimum-jerk segment for given end position, velocity and
  acceleration), continuous velocity and acceleration.

Bounded, step-like columns (the gripper: 0 closed .. 1 open, a step where the policy closes it)
are given as ``bounded``: every mode interpolates them linearly, so a sample lies between the two
waypoints either side and never outside their range. A finite-difference Hermite overshoots a
step (the tangent at the step's top is the central difference, not zero: the demo's "open",
interpolated minimum-jerk, reached 1.044, clamped by the shield as an intervention); shape-preserving tangents
(Fritsch & Carlson, "Monotone Piecewise Cubic Interpolation", SIAM J. Numer. Anal. 17(2), 1980)
would fix the cubic only, and a gripper takes a width command and moves at its own speed, so a
linear command is what it can follow. Outside ``[start, end]`` a bounded column is held (zero
velocity, see :meth:`Curve.held`), where the other columns continue at their end velocity.

The jerk-limited mode is stateful and lives in :mod:`robot_agent.trajectory.ruckig_follower`.
``start_velocity`` lets a new curve leave its first waypoint at the velocity the previous one had,
so switching chunks does not kink the path.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np
from typing_extensions import override

__all__ = ["Curve", "HermiteCurve", "LinearCurve", "make_curve"]


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

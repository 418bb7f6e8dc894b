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
from itertools import pairwise

import numpy as np

from robot_agent.trajectory import _kernels

__all__ = ["Curve", "HermiteCurve", "LinearCurve", "make_curve"]


class Curve:
    """A curve through waypoints ``values [n, D]`` at ``times [n]`` (seconds); ``sample`` is
    defined on ``[times[0], times[-1]]``. ``bounded``: indices of columns interpolated linearly
    whatever the mode (see the module docs). Raises ``ValueError`` for mismatched shapes, times
    not strictly increasing or a column index outside ``[0, D)``.

    Evaluated by the compiled loops of :mod:`robot_agent.trajectory._kernels` on the curve's
    table ``[3, n, D]`` (positions, velocities, accelerations at the waypoints) and ``order``
    (1: linear, 3: cubic, 5: quintic), which subclasses set (``Curve`` itself is linear).
    Outside ``[start, end]`` a plan continues a curve at its end velocities, its bounded columns
    held (a gripper holds its last command; extrapolating it would leave the waypoints' range).
    """

    _order = 1

    def __init__(self, times: np.ndarray, values: np.ndarray, *, bounded: Sequence[int] = ()) -> None:
        times = _kernels.kernel_array(times)
        values = _kernels.kernel_array(values)
        if times.ndim != 1 or values.ndim != 2 or values.shape[0] != times.shape[0] or times.shape[0] < 1:
            raise ValueError(f"need times [n] and values [n, D], got {times.shape} and {values.shape}")
        self._times: list[float] = times.tolist()
        # np.any(np.diff(times) <= 0) in Python floats (a NaN step passes, as it did)
        if any(b - a <= 0 for a, b in pairwise(self._times)):
            raise ValueError("waypoint times must be strictly increasing")
        self.times = times
        self.values = values
        columns = sorted({int(c) for c in bounded})
        if columns and not (columns[0] >= 0 and columns[-1] < values.shape[1]):
            raise ValueError(
                f"bounded columns {columns} outside the {values.shape[1]} columns of the waypoints"
            )
        self.bounded: tuple[int, ...] = tuple(columns)
        self._mask = np.zeros(
            values.shape[1], dtype=np.bool_
        )  # the bounded columns, as the kernels read them
        self._mask[columns] = True
        self._table = values[None]  # [1, n, D]: a linear curve reads positions only
        self.start: float = self._times[0]
        self.end: float = self._times[-1]

    def _segment(self, t: float) -> tuple[int, float, float]:
        """Index k of the segment holding ``t``, its length h and the phase s in [0, 1]: what
        the compiled evaluation finds (``_kernels._point``), stated in Python."""
        n = self.times.shape[0]
        if n == 1:
            return 0, 1.0, 0.0
        times = self._times
        k = min(max(bisect.bisect_right(times, t) - 1, 0), n - 2)
        h = times[k + 1] - times[k]
        s = min(max((t - times[k]) / h, 0.0), 1.0)
        return k, h, s

    def sample(self, t: float) -> np.ndarray:
        """Position ``[D]`` at ``t`` (clamped to ``[start, end]``)."""
        out: np.ndarray = _kernels.curve_at1(self.times, self._table, self._order, self._mask, float(t))[0]
        return out

    def derivatives(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position, velocity and acceleration ``[D]`` each at ``t`` in ``[start, end]`` (per
        second; at a waypoint, those of the segment that starts there; at ``end``, the last
        segment's). Used to freeze a blended plan exactly to second order (see ``trajectory``)."""
        p, v, a = _kernels.curve_at1(self.times, self._table, self._order, self._mask, float(t))
        return p, v, a

    def samples_at(self, ts: np.ndarray) -> np.ndarray:
        """:meth:`sample` at each of ``ts`` ``[m]``: ``[m, D]``, the same values bit for bit."""
        return self.derivatives_at(ts)[0]

    def derivatives_at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`derivatives` at each of ``ts`` ``[m]`` in ``[start, end]``: ``[m, D]`` each, the
        same values bit for bit, in one compiled pass instead of ``m`` calls."""
        ts = _kernels.kernel_array(ts)
        p, v, a = _kernels.curve_at(self.times, self._table, self._order, self._mask, ts)
        return p, v, a


class LinearCurve(Curve):
    """Straight segments between the waypoints: continuous position, velocity jumps."""


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
        self.order = self._order = order
        # One table [3, n, D] for the compiled evaluation; values, velocities and accelerations
        # are views of it.
        table = np.empty((3, *self.values.shape))
        table[0] = self.values
        given = velocities is not None
        if velocities is not None:
            table[1] = np.asarray(velocities, dtype=float).reshape(self.values.shape)
        else:
            _kernels.tangents(self.times, table, 0)
        if start_velocity is not None:
            table[1, 0] = start_velocity
        if order == 5:
            if accelerations is not None:
                table[2] = np.asarray(accelerations, dtype=float).reshape(self.values.shape)
            else:
                _kernels.tangents(self.times, table, 1)
                if not given:
                    # The ends have no neighbour on one side: no acceleration there rather than a guess.
                    table[2, 0] = 0.0
                    table[2, -1] = 0.0
        else:
            table[2] = 0.0
        self._table = table
        self.values = table[0]
        self.velocities = table[1]
        self.accelerations: np.ndarray | None = table[2] if order == 5 else None

    @classmethod
    def through_states(
        cls, times: np.ndarray, states: np.ndarray, *, bounded: Sequence[int] = ()
    ) -> HermiteCurve:
        """The quintic through the exact states ``[3, n, D]`` (positions, velocities,
        accelerations) at ``times`` ``[n]``: ``HermiteCurve(times, states[0], order=5,
        velocities=states[1], accelerations=states[2], bounded=bounded)``, taking ``states``
        (C-contiguous float64, as ``_Plan`` evaluates them) as its table instead of copying it."""
        curve = cls.__new__(cls)
        Curve.__init__(curve, times, states[0], bounded=bounded)
        if states.shape != (3, *curve.values.shape):
            raise ValueError(f"need states [3, n, D] for {curve.values.shape} waypoints, got {states.shape}")
        curve.order = curve._order = 5
        curve._table = _kernels.kernel_array(states)
        curve.values = curve._table[0]
        curve.velocities = curve._table[1]
        curve.accelerations = curve._table[2]
        return curve


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

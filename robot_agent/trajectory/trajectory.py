"""The plan the control loop executes: time-stamped chunks, blended, interpolated to the tick.

Action k of a chunk applies at ``capture_time + k * dt`` in the agent's clock. On arrival the
actions already in the past (or due within half a control period) are dropped (and counted).
The first chunk (or the first after a hold) starts at *now* from where the arm is held. A later
chunk takes over from the plan being executed by a fade in *time*,
``old + s(tau) * (new - old)`` with the quintic smoothstep ``s`` (zero slope and curvature at both
ends), over ``crossfade_steps`` actions (``crossfade``; one action for ``replace``; ``ensemble``
first averages the waypoints, ACT-style, then fades the same way). ``new`` is a curve on the
chunk's own grid, starting one action before its first kept one, so it has no segment shorter
than an action. Position, velocity and acceleration are thus continuous at a switch however
close to *now* the next action falls. Why it matters: ee_delta chunks are relative to the pose
measured at capture, which lags the command, so a new chunk usually starts a millimetre or two
behind the old plan; a switch that absorbed that gap in the few milliseconds before the next
action (a waypoint crossfade from an anchor at now) made the target jerk past the shield's
limits at every chunk. The old plan, once past its last action, is continued at its final
velocity while it still weighs in a fade. When ``now`` passes the last waypoint the plan is
exhausted and the control loop holds.

Cost: chunks may arrive faster than a fade lasts (an observation every 33 ms, a 0.3 s fade), so
the plan being left is often itself still fading. It is then frozen into one C2 curve through its
exact state at the switch (:meth:`_Plan.frozen`), so a sample evaluates at most two curves and a
chunk costs a fixed number of samples, however many chunks came before.

Rotations: the trajectory blends component-wise and knows nothing of what a component means;
``unwrap`` (``ActionSpace.unwrap_waypoints``) re-expresses each chunk's rotation vectors next to
the plan's before anything is blended or interpolated, so nothing crosses the 2*pi wrap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_agent.trajectory import _kernels
from robot_agent.trajectory.blending import blend
from robot_agent.trajectory.interpolation import Curve, HermiteCurve, make_curve
from robot_agent.trajectory.ruckig_follower import RuckigFollower

__all__ = ["ChunkResult", "Trajectory"]

_EPS = 1e-9
_STILL = (0.0, 0.0, 0.0, 0.0)  # a row outside the fade: no smoothstep


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


class _Plan:
    """A curve, faded in from ``old`` over ``[t0, t0 + length]``.

    ``old`` is never a plan: it is the previous plan's own curve, or, when that plan was itself
    still fading, the previous plan frozen (:meth:`frozen`). So a sample evaluates at most two
    curves, whatever the number of chunks received (it used to evaluate the chain of plans still
    fading, each twice: exponential in their number). Outside its span ``old`` is continued at
    its end velocities (what that plan would have done next, while it still weighs in the fade),
    its bounded columns (the gripper) held.

    Evaluated by :func:`robot_agent.trajectory._kernels.plan_at` (one compiled call for any
    number of times); the fade's smoothstep is computed here, in Python floats, as before.
    """

    __slots__ = ("curve", "length", "old", "t0")

    def __init__(self, curve: Curve, old: Curve | None = None, t0: float = 0.0, length: float = 0.0) -> None:
        self.curve = curve
        self.old = old
        self.t0 = t0
        self.length = length

    @property
    def end(self) -> float:
        return self.curve.end

    def _fading(self, t: float) -> bool:
        return self.old is not None and t < self.t0 + self.length

    def _at1(self, t: float) -> np.ndarray:
        """``[3, D]``: position, velocity, acceleration at ``t`` (see :meth:`derivatives`)."""
        curve, old = self.curve, self.old
        t = float(t)
        edge = min(max(t, curve.start), curve.end)
        if old is not None and edge < self.t0 + self.length:
            s0, s1, s2 = _smoothstep((edge - self.t0) / self.length)
            return _kernels.plan_at1(
                curve.times, curve._table, curve._order, curve._mask,
                old.times, old._table, old._order, old._mask,
                t, s0, s1, s2, True, 1.0 / self.length,
            )  # fmt: skip
        return _kernels.plan_at1(
            curve.times, curve._table, curve._order, curve._mask,
            curve.times, curve._table, curve._order, curve._mask,
            t, 0.0, 0.0, 0.0, False, 1.0,
        )  # fmt: skip

    def _at(self, ts: np.ndarray) -> np.ndarray:
        """``[3, m, D]``: :meth:`_at1` at each of ``ts`` ``[m]``, in one compiled call."""
        curve, old = self.curve, self.old
        ts = _kernels.kernel_array(ts)
        if old is None:
            steps = np.zeros((ts.shape[0], 4))
            old, rate = curve, 1.0
        else:
            start, end, t0, length = curve.start, curve.end, self.t0, self.length
            fade_end = t0 + length
            flat: list[float] = []
            for t in ts.tolist():
                edge = min(max(t, start), end)
                flat.extend((*_smoothstep((edge - t0) / length), 1.0) if edge < fade_end else _STILL)
            steps = np.array(flat, dtype=float).reshape(ts.shape[0], 4)
            rate = 1.0 / length
        return _kernels.plan_at(
            curve.times, curve._table, curve._order, curve._mask,
            old.times, old._table, old._order, old._mask,
            ts, steps, rate,
        )  # fmt: skip

    def sample(self, t: float) -> np.ndarray:
        """The target ``[D]`` at ``t``; outside the curve's span, continued at its end velocity."""
        out: np.ndarray = self._at1(t)[0]
        return out

    def samples_at(self, ts: np.ndarray) -> np.ndarray:
        """:meth:`sample` at each of ``ts`` ``[m]``: ``[m, D]``, the same values bit for bit."""
        out: np.ndarray = self._at(ts)[0]
        return out

    def derivatives(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position, velocity, acceleration ``[D]`` at ``t``: the curve's, faded from ``old``'s
        (``old + s * (new - old)`` with the smoothstep ``s`` of ``(t - t0) / length``, its
        derivatives by the product rule, bounded columns clipped between the two) while
        ``t < t0 + length``; outside the curve's span, the state at the nearer end continued at
        constant velocity (bounded columns held)."""
        p, v, a = self._at1(t)
        return p, v, a

    def derivatives_at(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`derivatives` at each of ``ts`` ``[m]``: ``[m, D]`` each, the same values bit for
        bit, in one compiled call instead of ``m``."""
        p, v, a = self._at(ts)
        return p, v, a

    def frozen(self, now: float, until: float, dt: float) -> Curve:
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
            return self.curve
        span = max(until - now, dt)
        # Knots every dt / 2 at most (the tolerance keeps their number fixed under rounding).
        count = max(2, math.ceil(2.0 * span / dt - 1e-6))
        # now + span * arange(count + 1) / count, in Python floats (the same operations)
        knots = np.array([now - dt, *(now + span * k / count for k in range(count + 1))])
        return HermiteCurve.through_states(knots, self._at(knots), bounded=self.curve.bounded)

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
        _kernels.load()  # the compiled evaluation, before the first chunk needs it

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
        ahead = np.flatnonzero(future)
        dropped = int(waypoints.shape[0] - ahead.shape[0])
        if not ahead.shape[0]:
            return ChunkResult(dropped=dropped, kept=0)
        first = int(ahead[0])
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
        if self.blend_mode in ("crossfade", "replace"):
            # The new chunk as it is (blend's "replace"); no ensemble bookkeeping: an ensemble
            # reads none as weight 1 and one prediction, what "replace" would have recorded.
            values, weights, counts = new, None, None
        else:
            blended = blend(
                self.blend_mode,
                new,
                old,
                old_w,
                old_c,
                crossfade_steps=self.crossfade_steps,
                ensemble_decay=self.ensemble_decay,
            )
            values = blended.values
            weights = np.concatenate([[1.0], blended.weight_sums])
            counts = np.concatenate([[1.0], blended.counts])
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
        all_values = np.vstack([first_value[None, :], values])
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
        self._weights = weights
        self._counts = counts
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

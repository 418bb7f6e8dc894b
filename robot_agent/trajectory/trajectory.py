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
velocity while it still weighs in a fade. When ``now`` passes the last waypoint the plan is exhausted and the control loop
holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_agent.trajectory.blending import blend
from robot_agent.trajectory.interpolation import Curve, make_curve
from robot_agent.trajectory.ruckig_follower import RuckigFollower

__all__ = ["ChunkResult", "Trajectory"]

_EPS = 1e-9


def _smoothstep(tau: float) -> float:
    """0 -> 1 on [0, 1] with zero first and second derivatives at both ends (C2 joins)."""
    if tau <= 0.0:
        return 0.0
    if tau >= 1.0:
        return 1.0
    return tau * tau * tau * (10.0 + tau * (-15.0 + 6.0 * tau))


class _Plan:
    """A curve, faded in from the previous plan over ``[t0, t0 + length]``."""

    __slots__ = ("curve", "length", "old", "t0")

    def __init__(self, curve: Curve, old: _Plan | None = None, t0: float = 0.0, length: float = 0.0) -> None:
        self.curve = curve
        self.old = old
        self.t0 = t0
        self.length = length

    @property
    def end(self) -> float:
        return self.curve.end

    def sample(self, t: float) -> np.ndarray:
        x = self.curve.sample(t)
        if self.old is None or t >= self.t0 + self.length:
            return x
        w = _smoothstep((t - self.t0) / self.length)
        return self.old.extended(t) + w * (x - self.old.extended(t))

    def extended(self, t: float) -> np.ndarray:
        """``sample``, continued past the end at the end's velocity (what the old plan would
        have done next, while it still weighs in a fade)."""
        end = self.curve.end
        if t <= end:
            return self.sample(t)
        h = min(1e-3, end - self.curve.start) if end > self.curve.start else 0.0
        last = self.sample(end)
        if h <= 0.0:
            return last
        return last + (last - self.sample(end - h)) * ((t - end) / h)

    def settle(self, now: float) -> None:
        """Drop the old plan once its fade is over (keeps the chain of plans short)."""
        if self.old is not None and now >= self.t0 + self.length:
            self.old = None


@dataclass(frozen=True)
class ChunkResult:
    """What became of a chunk: how many actions were already past, whether any were kept."""

    dropped: int
    kept: int


class Trajectory:
    """Blends chunks into one plan and samples it at control ticks. Not thread-safe: the agent
    touches it only from the event loop."""

    def __init__(
        self,
        *,
        blend_mode: str = "crossfade",
        crossfade_steps: int = 3,
        ensemble_decay: float = 0.1,
        interpolation: str = "linear",
        control_dt: float = 0.01,
        ruckig_limits: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
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
            self._follower = RuckigFollower(control_dt, *ruckig_limits)
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
        # The chunk's own point one action before its first kept one (or its backward trend):
        # where the new curve starts, so that its first segment lasts a whole action.
        if first > 0:
            before = waypoints[first - 1]
        elif waypoints.shape[0] > 1:
            before = 2.0 * waypoints[0] - waypoints[1]
        else:
            before = waypoints[0]
        times, new = times[future], waypoints[future]
        first_time = min(float(times[0]) - dt, now)
        plan = self._plan
        old: np.ndarray | None
        old_w: np.ndarray | None
        old_c: np.ndarray | None
        if plan is not None and plan.curve.start <= now <= plan.end:
            plan.settle(now)
            old = np.array(
                [plan.sample(t) if t <= plan.end + _EPS else np.full(new.shape[1], np.nan) for t in times]
            )
            old_first = plan.extended(first_time)
            curve_times = plan.curve.times
            old_w = np.interp(times, curve_times, self._weights) if self._weights is not None else None
            old_c = (
                np.round(np.interp(times, curve_times, self._counts)) if self._counts is not None else None
            )
        else:
            plan = None
            old = old_w = old_c = None
        # A crossfade happens in time (the fade below); on the waypoints only ensembling mixes.
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
        curve = make_curve(self.interpolation, all_times, all_values, start_velocity=start_velocity)
        if plan is None:
            self._plan = _Plan(curve)
        else:
            steps = 1 if self.blend_mode == "replace" else self.crossfade_steps
            self._plan = _Plan(curve, plan, now, steps * dt)
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
        return times, np.array([plan.sample(float(t)) for t in times])

"""The plan the control loop executes: time-stamped chunks, blended, interpolated to the tick.

Action k of a chunk applies at ``capture_time + k * dt`` in the agent's clock. On arrival the
actions already in the past (or due within half a control period) are dropped (and counted); the plan then starts at *now* from where
the arm is being commanded (the current plan's point, or the held pose when holding), so a new
chunk never makes the target jump, and continues through the blended future waypoints. When
``now`` passes the last waypoint the plan is exhausted and the control loop holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_agent.trajectory.blending import blend
from robot_agent.trajectory.interpolation import Curve, make_curve
from robot_agent.trajectory.ruckig_follower import RuckigFollower

__all__ = ["ChunkResult", "Trajectory"]

_EPS = 1e-9


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
        self._curve: Curve | None = None
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
        return None if self._curve is None else self._curve.end

    def clear(self) -> None:
        """Forget the plan (on hold); the next chunk starts from the pose given to ``add_chunk``."""
        self._curve = None
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
        times, new = times[future], waypoints[future]
        old_curve = self._curve
        old: np.ndarray | None
        old_w: np.ndarray | None
        old_c: np.ndarray | None
        if old_curve is not None and old_curve.start <= now <= old_curve.end:
            anchor = old_curve.sample(now)
            start_velocity = (old_curve.sample(min(now + 1e-3, old_curve.end)) - anchor) / 1e-3
            old = np.array(
                [
                    old_curve.sample(t) if t <= old_curve.end + _EPS else np.full(new.shape[1], np.nan)
                    for t in times
                ]
            )
            old_w = np.interp(times, old_curve.times, self._weights) if self._weights is not None else None
            old_c = (
                np.round(np.interp(times, old_curve.times, self._counts))
                if self._counts is not None
                else None
            )
        else:
            anchor = np.asarray(start, dtype=float)
            start_velocity = np.zeros_like(anchor)
            old = old_w = old_c = None
            if self._follower is not None:
                self._follower.reset(anchor)
        blended = blend(
            self.blend_mode,
            new,
            old,
            old_w,
            old_c,
            crossfade_steps=self.crossfade_steps,
            ensemble_decay=self.ensemble_decay,
        )
        all_times = np.concatenate([[now], times])
        all_values = np.vstack([anchor[None, :], blended.values])
        self._curve = make_curve(self.interpolation, all_times, all_values, start_velocity=start_velocity)
        self._weights = np.concatenate([[1.0], blended.weight_sums])
        self._counts = np.concatenate([[1.0], blended.counts])
        if self._follower is not None and not self._follower.initialised:
            self._follower.reset(anchor)
        return ChunkResult(dropped=dropped, kept=int(times.shape[0]))

    def sample(self, now: float) -> np.ndarray | None:
        """The target for ``now``, or None when the plan is exhausted or empty. With Ruckig this
        advances the follower one control period, so call it once per tick."""
        curve = self._curve
        if curve is None or now > curve.end + _EPS:
            return None
        if self._follower is None:
            return curve.sample(now)
        # Aim a little ahead (at rest there): a point one tick ahead, moving, can be unreachable
        # within the jerk limit without first backing up; the replanning every tick keeps the
        # motion going and the lag small.
        ahead = min(now + max(5 * self._control_dt, 0.03), curve.end)
        target = curve.sample(ahead)
        velocity = np.zeros_like(target)
        return self._follower.step(target, velocity)

    def remaining(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Waypoints still ahead of ``now`` (times, values): the rest of the current chunk."""
        curve = self._curve
        if curve is None:
            return np.empty(0), np.empty((0, 0))
        # Index 0 is the anchor, not an action of any chunk.
        keep = curve.times[1:] > now + _EPS
        return curve.times[1:][keep], curve.values[1:][keep]

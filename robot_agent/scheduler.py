"""When to send the next observation, so that a new chunk arrives well before the current one runs out.

Two triggers, whichever comes first (one request in flight at a time: the server keeps only the
latest request of a session, so a second one would only make the first LATE):

- the execution horizon: once ``execution_horizon`` of the current chunk (default half, counted
  from its capture) has been executed, ask again. This is how the field re-plans: openpi executes
  ``replan_steps`` (``action_horizon``) actions of each chunk, LeRobot's async inference sends a
  new observation when the action queue falls below ``chunk_size_threshold`` of a chunk, and
  real-time chunking (Black et al., 2025) fixes an execution horizon ``s`` per chunk. It keeps
  the loop closed (no chunk runs open-loop to its end) and leaves half a chunk of slack for a
  round-trip spike;
- the deadline, as a floor: when the plan has less than ``estimate + margin`` left.

The round trip (capture to chunk received) is estimated as a high quantile over a window of recent
requests, ignoring the first one(s): the first call to a fresh server pays for lazy initialisation
and autotuning and says nothing about the steady state. A mean would be dragged by one spike and
then be too optimistic for the tail; a high quantile covers the tail without being fooled by one
outlier for long. With few samples a quantile is just the largest of them, which says nothing of
the spread, so the estimate is also at least ``mean + k * std``, where the std is pooled with a
prior worth one sample (``rtt_prior_std_s``): after the first chunk the arm is not planned on one
lucky round trip.
"""

from __future__ import annotations

import math
from collections import deque

from robot_agent.config import SchedulerConfig

__all__ = ["RoundTripEstimator", "Scheduler"]


class RoundTripEstimator:
    """A high quantile of the last ``window`` round trips (seconds), after skipping the first
    ``ignore_first``, and at least ``mean + std_factor * std`` (std pooled with ``prior_std_s``
    worth one sample)."""

    def __init__(
        self,
        *,
        window: int = 50,
        quantile: float = 0.9,
        ignore_first: int = 1,
        initial_s: float = 0.1,
        std_factor: float = 2.0,
        prior_std_s: float = 0.05,
    ):
        self._samples: deque[float] = deque(maxlen=window)
        self._quantile = quantile
        self._to_ignore = ignore_first
        self._initial = initial_s
        self._k = std_factor
        self._prior_var = prior_std_s * prior_std_s
        self._first: float | None = None
        # Both figures change only when a sample arrives, but are asked for at every control
        # tick, so they are computed once per sample.
        self._cached: tuple[float, float] | None = None  # (typical, estimate)

    def add(self, rtt_s: float) -> None:
        if not math.isfinite(rtt_s):
            return
        self._cached = None
        if self._to_ignore > 0:
            self._to_ignore -= 1
            # Remember it only as a fallback while there is nothing else: better than a guess.
            self._first = rtt_s if self._first is None else max(self._first, rtt_s)
            return
        self._samples.append(rtt_s)

    @property
    def count(self) -> int:
        return len(self._samples)

    def typical(self) -> float:
        """The quantile alone (the first sample, capped at 1 s, before any steady one): the
        delay to expect, for the inference delay sent to the server."""
        return self._figures()[0]

    def estimate(self) -> float:
        """The round trip to plan for, in seconds: the quantile, at least mean + k * pooled std."""
        return self._figures()[1]

    def _figures(self) -> tuple[float, float]:
        if self._cached is None:
            typical = self._typical()
            self._cached = (typical, self._estimate(typical))
        return self._cached

    def _typical(self) -> float:
        if self._samples:
            return _quantile(sorted(self._samples), self._quantile)
        if self._first is not None:
            return min(self._first, max(self._initial, 1.0))
        return self._initial

    def _estimate(self, typical: float) -> float:
        if not self._samples:
            if self._first is None:
                return self._initial
            # Only the cold first call: it, capped, with the prior's spread; never below the guess.
            return max(self._initial, typical + self._k * math.sqrt(self._prior_var))
        # Plain floats over at most ``window`` samples: numpy's per-call overhead (~0.1 ms for
        # the quantile, mean and variance) is most of the cost at this size.
        values = self._samples
        n = len(values)
        mean = math.fsum(values) / n
        pooled_var = (math.fsum((v - mean) ** 2 for v in values) + self._prior_var) / n
        return max(typical, mean + self._k * math.sqrt(pooled_var))


def _quantile(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of ``ordered`` (ascending, not empty), linearly interpolated between
    order statistics, bit for bit numpy's default ``np.quantile(..., method="linear")`` (Hyndman and Fan's
    definition 7), with numpy's own lerp (from the upper neighbour when past half-way)."""
    n = len(ordered)
    index = (n - 1) * q  # numpy's virtual index for "linear"
    lo = math.floor(index)
    hi = min(lo + 1, n - 1)
    t = index - lo
    a, b = ordered[lo], ordered[hi]
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t


class Scheduler:
    """Decides, at each control tick, whether to send an observation now. Pure: time comes in
    as arguments, so tests drive it with numbers."""

    def __init__(self, config: SchedulerConfig, *, request_timeout_s: float):
        self.rtt = RoundTripEstimator(
            window=config.rtt_window,
            quantile=config.rtt_quantile,
            ignore_first=config.rtt_ignore_first,
            initial_s=config.rtt_initial_s,
            std_factor=config.rtt_std_factor,
            prior_std_s=config.rtt_prior_std_s,
        )
        self._margin = config.margin_s
        self._request_timeout = request_timeout_s
        self._replan_interval = config.replan_interval_s
        self._horizon = config.execution_horizon
        self._last_sent: float | None = None
        self._plan_end: float | None = None  # the plan end seen last: a new value is a new chunk
        self._chunk_start: float | None = None  # capture time of the chunk being executed

    def should_send(self, now: float, plan_end: float | None, in_flight_since: float | None) -> bool:
        """Whether to send an observation at ``now`` (seconds, ``time.monotonic()``), given when
        the plan ends (None: no plan) and since when a request is outstanding (None: none)."""
        if plan_end != self._plan_end:
            # A chunk arrived (the plan end moved): it answers the last request sent, one being
            # in flight at a time, so it was captured then.
            self._plan_end = plan_end
            self._chunk_start = self._last_sent
        if in_flight_since is not None:
            # A request that never came back (its answer lost with a broken stream): give up on it
            # once it is older than its own budget plus a round trip.
            return now - in_flight_since > self._request_timeout + self.rtt.estimate()
        if plan_end is None or plan_end <= now:
            return True
        start = self._chunk_start
        if start is not None and start < plan_end and now - start >= self._horizon * (plan_end - start):
            return True  # the execution horizon of this chunk is reached
        if (
            self._replan_interval > 0
            and self._last_sent is not None
            and now - self._last_sent >= self._replan_interval
        ):
            return True
        return plan_end - now <= self.rtt.estimate() + self._margin  # the deadline floor

    def sent(self, now: float) -> None:
        """An observation captured at about ``now`` went out."""
        self._last_sent = now

    def delay_steps(self, dt_s: float) -> int:
        """Expected inference delay in policy steps: the actions that will be past on arrival."""
        return max(0, math.ceil(self.rtt.typical() / dt_s))

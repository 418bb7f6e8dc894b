"""When to send the next observation, so that a new chunk arrives before the current one runs out.

The round trip (capture to chunk received) is estimated as a high quantile over a window of recent
requests, ignoring the first one(s): the first call to a fresh server pays for lazy initialisation
and autotuning and says nothing about the steady state. A mean would be dragged by one spike and
then be too optimistic for the tail; a high quantile covers the tail without being fooled by one
outlier for long.

The next observation goes out when the current plan has less than ``estimate + margin`` left (or
``replan_interval_s`` after the previous one, when set), with one request in flight at a time: the
server keeps only the latest request of a session, so a second one would only make the first LATE.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from robot_agent.config import SchedulerConfig

__all__ = ["RoundTripEstimator", "Scheduler"]


class RoundTripEstimator:
    """A high quantile of the last ``window`` round trips, after skipping the first ``ignore_first``."""

    def __init__(
        self, *, window: int = 50, quantile: float = 0.9, ignore_first: int = 1, initial_s: float = 0.1
    ):
        self._samples: deque[float] = deque(maxlen=window)
        self._quantile = quantile
        self._to_ignore = ignore_first
        self._initial = initial_s
        self._first: float | None = None

    def add(self, rtt_s: float) -> None:
        if self._to_ignore > 0:
            self._to_ignore -= 1
            # Remember it only as a fallback while there is nothing else: better than a guess.
            self._first = rtt_s if self._first is None else max(self._first, rtt_s)
            return
        self._samples.append(rtt_s)

    @property
    def count(self) -> int:
        return len(self._samples)

    def estimate(self) -> float:
        """The round trip to plan for, in seconds."""
        if self._samples:
            return float(np.quantile(np.fromiter(self._samples, float), self._quantile))
        if self._first is not None:
            return min(self._first, max(self._initial, 1.0))
        return self._initial


class Scheduler:
    """Decides, at each control tick, whether to send an observation now."""

    def __init__(self, config: SchedulerConfig, *, request_timeout_s: float):
        self.rtt = RoundTripEstimator(
            window=config.rtt_window,
            quantile=config.rtt_quantile,
            ignore_first=config.rtt_ignore_first,
            initial_s=config.rtt_initial_s,
        )
        self._margin = config.margin_s
        self._request_timeout = request_timeout_s
        self._replan_interval = config.replan_interval_s
        self._last_sent: float | None = None

    def should_send(self, now: float, plan_end: float | None, in_flight_since: float | None) -> bool:
        if in_flight_since is not None:
            # A request that never came back (its answer lost with a broken stream): give up on it
            # once it is older than its own budget plus a round trip.
            return now - in_flight_since > self._request_timeout + self.rtt.estimate()
        if plan_end is None or plan_end <= now:
            return True
        if (
            self._replan_interval > 0
            and self._last_sent is not None
            and now - self._last_sent >= self._replan_interval
        ):
            return True
        return plan_end - now <= self.rtt.estimate() + self._margin

    def sent(self, now: float) -> None:
        self._last_sent = now

    def delay_steps(self, dt_s: float) -> int:
        """Expected inference delay in policy steps: the actions that will be past on arrival."""
        return max(0, math.ceil(self.rtt.estimate() / dt_s))

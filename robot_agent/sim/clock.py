"""Clocks for the simulation: the wall clock for the served loop, a manual one for fast runs.

The simulated arm advances its model to ``clock.now()`` whenever it is touched. On the wall clock
(``time.monotonic``) it therefore runs in real time, as a real arm does; on a ``ManualClock`` it
moves only when the caller advances time, which lets data generation and offline evaluation run
many times faster than real time with the very same model.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from typing_extensions import override

__all__ = ["Clock", "ManualClock", "WallClock"]


class Clock(Protocol):
    """Something that tells the time in seconds."""

    def now(self) -> float: ...


class WallClock(Clock):
    """``time.monotonic()``: the agent's own clock, so sim state and frames share its timestamps."""

    @override
    def now(self) -> float:
        return time.monotonic()


class ManualClock(Clock):
    """A clock that only moves when ``advance`` is called (non-real-time simulation)."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._t = float(start_s)
        self._lock = threading.Lock()

    @override
    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, dt_s: float) -> float:
        """Move time forward by ``dt_s`` seconds (must be >= 0) and return the new time."""
        if not dt_s >= 0.0:
            raise ValueError(f"ManualClock.advance: dt_s must be >= 0, got {dt_s!r}")
        with self._lock:
            self._t += float(dt_s)
            return self._t

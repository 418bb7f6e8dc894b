"""What a run did, in numbers: collected in process while it runs, printed by the CLI at the end
and stored as ``summary.json`` by the recorder."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RunStats", "Samples", "format_summary"]


class Samples:
    """The last ``capacity`` samples of a series (a ring): a day at 1 kHz stays a few megabytes,
    and quantiles describe the recent run rather than growing memory without bound."""

    def __init__(self, capacity: int = 1 << 19) -> None:
        self._buf = np.empty(capacity, dtype=np.float64)
        self._n = 0

    def append(self, value: float) -> None:
        self._buf[self._n % self._buf.shape[0]] = value
        self._n += 1

    def __len__(self) -> int:
        return min(self._n, self._buf.shape[0])

    def values(self) -> np.ndarray:
        """The kept samples, oldest first (a copy)."""
        cap = self._buf.shape[0]
        if self._n <= cap:
            return self._buf[: self._n].copy()
        start = self._n % cap
        return np.concatenate([self._buf[start:], self._buf[:start]])


def _quantiles(samples: Samples, qs: tuple[float, ...]) -> dict[str, float | None]:
    if not len(samples):
        return {f"p{round(q * 100)}": None for q in qs}
    arr = samples.values()
    return {f"p{round(q * 100)}": float(np.quantile(arr, q)) for q in qs}


@dataclass
class RunStats:
    """Counters of one agent run (event-loop only, so no locking)."""

    rate_hz: float = 0.0
    started_s: float | None = None
    ended_s: float | None = None
    ticks: int = 0
    overruns: int = 0
    periods: Samples = field(default_factory=Samples)
    roundtrips: Samples = field(default_factory=Samples)
    tick_work: Samples = field(default_factory=Samples)  # time spent inside each tick
    chunks: int = 0
    deadline_misses: int = 0
    stale_actions_dropped: int = 0
    stale_observations: int = 0  # times a sensor went stale (no request sent until fresh again)
    holds: Counter[str] = field(default_factory=Counter)
    rejected_chunks: Counter[str] = field(default_factory=Counter)
    server_status: Counter[str] = field(default_factory=Counter)
    safety_interventions: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0
    estops: int = 0
    estop_reason: str | None = None
    first_chunk_s: float | None = None
    holds_after_first_chunk: int = 0
    hold_relabels: int = 0  # holds whose cause changed while holding (each new cause is in holds)
    ticks_after_first_chunk: int = 0
    hold_ticks_after_first_chunk: Counter[str] = field(default_factory=Counter)  # by reason
    tick_faults: Counter[str] = field(default_factory=Counter)  # exceptions caught in a tick, by stage

    @property
    def hold_fraction(self) -> float | None:
        """Share of the ticks since the first chunk spent holding (None before the first chunk)."""
        n = self.ticks_after_first_chunk
        return sum(self.hold_ticks_after_first_chunk.values()) / n if n else None

    def to_dict(self) -> dict[str, Any]:
        duration = (self.ended_s or 0.0) - (self.started_s or 0.0) if self.started_s is not None else 0.0
        return {
            "ticks": self.ticks,
            "duration_s": duration,
            "rate_hz": self.rate_hz,
            "achieved_rate_hz": self.ticks / duration if duration > 0 else 0.0,
            "control_period_s": _quantiles(self.periods, (0.5, 0.99)),
            "control_overruns": self.overruns,
            "control_tick_work_s": _quantiles(self.tick_work, (0.5, 0.99)),
            "roundtrip_s": _quantiles(self.roundtrips, (0.5, 0.95, 0.99)),
            "chunks": self.chunks,
            "deadline_misses": self.deadline_misses,
            "stale_actions_dropped": self.stale_actions_dropped,
            "stale_observations": self.stale_observations,
            "holds": dict(self.holds),
            "holds_after_first_chunk": self.holds_after_first_chunk,
            "hold_relabels": self.hold_relabels,
            "hold_fraction_after_first_chunk": self.hold_fraction,
            "hold_ticks_after_first_chunk": dict(self.hold_ticks_after_first_chunk),
            "tick_faults": dict(self.tick_faults),
            "rejected_chunks": dict(self.rejected_chunks),
            "server_status": dict(self.server_status),
            "safety_interventions": dict(self.safety_interventions),
            "reconnects": self.reconnects,
            "estops": self.estops,
            "estop_reason": self.estop_reason,
        }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f} ms"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) if counts else "none"


def format_summary(summary: dict[str, Any]) -> str:
    """The end-of-run block the CLI prints."""
    period, rtt = summary["control_period_s"], summary["roundtrip_s"]
    lines = [
        "Run summary",
        f"  ticks                  {summary['ticks']} in {summary['duration_s']:.1f} s",
        f"  achieved rate          {summary['achieved_rate_hz']:.1f} Hz (target {summary['rate_hz']:g} Hz)",
        f"  control period         p50 {_ms(period['p50'])}, p99 {_ms(period['p99'])}, overruns {summary['control_overruns']}",
        f"  round trip             p50 {_ms(rtt['p50'])}, p95 {_ms(rtt['p95'])}, p99 {_ms(rtt['p99'])} ({summary['chunks']} chunks)",
        f"  deadline misses        {summary['deadline_misses']}",
        f"  stale actions dropped  {summary['stale_actions_dropped']}",
        f"  holds                  {_counts(summary['holds'])}",
        f"  held after 1st chunk   {_percent(summary.get('hold_fraction_after_first_chunk'))} of ticks"
        f" ({_counts(summary.get('hold_ticks_after_first_chunk', {}))})",
        f"  tick faults            {_counts(summary.get('tick_faults', {}))}",
        f"  rejected chunks        {_counts(summary['rejected_chunks'])}",
        f"  safety interventions   {_counts(summary['safety_interventions'])}",
        f"  reconnects             {summary['reconnects']}",
        f"  e-stops                {summary['estops']}"
        + (f" ({summary['estop_reason']})" if summary["estop_reason"] else ""),
    ]
    return "\n".join(lines)

"""What a run did, in numbers: collected in process while it runs, printed by the CLI at the end
and stored as ``summary.json`` by the recorder.

One clock: every time in a run (``steps.jsonl``'s ``time``, ``events.jsonl``'s ``time``,
``started_s`` / ``ended_s``) is the agent's ``time.monotonic()`` in seconds. The summary's
``clock`` holds one reading of that clock and of the wall clock (``time.time()``, Unix seconds)
taken together when the run began, so any of those times maps to wall-clock time:
``unix = clock.unix_s + (time - clock.monotonic_s)``.

Identity and outcome: ``instruction``, ``server_address``, ``policy`` (``name``, ``version``,
``backend``, ``device``, ``action_space``, ``action_dim`` of the spec in use; ``None`` if none
was ever read), ``started_at`` / ``ended_at`` (ISO 8601, UTC) and ``exit_reason``: ``duration``
(``duration_s`` ran out), ``signal`` (SIGINT / SIGTERM), ``stop`` (asked by the caller, as
``eval`` does at the end of an episode), ``estop`` (the latched e-stop ended it), ``error`` (an
exception ended it; ``exit_detail`` names it).

:class:`RunStats` counts the run's events (:mod:`robot_agent.events`) as a subscriber, from the
same events as the metrics (``metrics.py``), so the summary and ``/metrics`` cannot drift apart.
"""

from __future__ import annotations

import datetime
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from robot_agent.events import (
    Answer,
    ChunkAccepted,
    ChunkRejected,
    Connected,
    DeadlineMiss,
    EStopLatched,
    Event,
    Hold,
    Interventions,
    ObservationStale,
    PolicyChanged,
    Reconnected,
    Tick,
    TickFault,
)

__all__ = [
    "EXIT_REASONS",
    "ClockAnchor",
    "RunStats",
    "Samples",
    "describe_policy",
    "format_summary",
    "policy_identity",
]

ExitReason = Literal["duration", "signal", "stop", "estop", "error"]
#: Why a run ended (``summary.json``'s ``exit_reason``).
EXIT_REASONS: tuple[str, ...] = ("duration", "signal", "stop", "estop", "error")


@dataclass(frozen=True)
class ClockAnchor:
    """One reading of the monotonic clock and of the wall clock, taken together (seconds)."""

    monotonic_s: float
    unix_s: float

    @classmethod
    def now(cls) -> ClockAnchor:
        return cls(monotonic_s=time.monotonic(), unix_s=time.time())

    def unix(self, monotonic_s: float) -> float:
        """Wall-clock (Unix) seconds of a ``time.monotonic()`` reading of this process."""
        return self.unix_s + (monotonic_s - self.monotonic_s)

    def iso(self, monotonic_s: float) -> str:
        """ISO 8601 in UTC, to the millisecond, of a ``time.monotonic()`` reading."""
        when = datetime.datetime.fromtimestamp(self.unix(monotonic_s), tz=datetime.UTC)
        return when.isoformat(timespec="milliseconds")


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
    """Counters of one agent run (event-loop only, so no locking), kept by the run's events
    (:meth:`on_event`; ``name`` ``stats``)."""

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
    # Identity and outcome (see the module docstring).
    clock: ClockAnchor = field(default_factory=ClockAnchor.now)
    instruction: str = ""
    server_address: str = ""
    policy: dict[str, Any] | None = None
    exit_reason: ExitReason | None = None
    exit_detail: str | None = None
    name: str = field(default="stats", init=False, repr=False, compare=False)

    def on_event(self, event: Event) -> None:
        """Count ``event`` (see :mod:`robot_agent.events` for what each one is)."""
        match event:
            case Tick():
                self._tick(event)
            case Hold(reason=reason, previous=previous, after_first_chunk=after_first_chunk):
                self.holds[reason] += 1
                if previous is not None:
                    self.hold_relabels += 1
                elif after_first_chunk:
                    self.holds_after_first_chunk += 1
            case EStopLatched(reason=reason):
                self.estops += 1
                self.estop_reason = reason
            case Interventions(kinds=kinds):
                self.safety_interventions.update(kinds)
            case TickFault(stage=stage):
                self.tick_faults[stage] += 1
            case DeadlineMiss():
                self.deadline_misses += 1
            case Answer(status=status):
                self.server_status[status] += 1
            case ChunkAccepted():
                self._chunk(event)
            case ChunkRejected(kind=kind):
                self.rejected_chunks[kind] += 1
            case ObservationStale():
                self.stale_observations += 1
            case Reconnected():
                self.reconnects += 1
            case Connected(policy=policy) if policy:
                self.policy = dict(policy)
            case PolicyChanged(allowed=True, policy=policy):
                self.policy = dict(policy)

    def _tick(self, tick: Tick) -> None:
        self.ticks += 1
        if tick.period_s is not None:
            self.periods.append(tick.period_s)
        self.tick_work.append(tick.work_s)
        if tick.overran:
            self.overruns += 1
        if tick.after_first_chunk:
            self.ticks_after_first_chunk += 1
            if tick.step.holding:
                self.hold_ticks_after_first_chunk[tick.step.hold_reason or "estop"] += 1

    def _chunk(self, chunk: ChunkAccepted) -> None:
        """A chunk that entered the plan: its round trip and the actions already past on arrival;
        one with none left (a deadline miss) is no chunk of the run."""
        self.roundtrips.append(chunk.roundtrip_s)
        self.stale_actions_dropped += chunk.dropped
        if chunk.kept > 0:
            self.chunks += 1
            if self.first_chunk_s is None:
                self.first_chunk_s = chunk.time_s

    def end(self, reason: ExitReason, detail: str | None = None) -> None:
        """Record why the run ended; the first reason given is kept (an e-stop that ends the run
        stays ``estop`` when the shutdown it causes raises later)."""
        if self.exit_reason is None:
            self.exit_reason = reason
            self.exit_detail = detail

    @property
    def hold_fraction(self) -> float | None:
        """Share of the ticks since the first chunk spent holding (None before the first chunk)."""
        n = self.ticks_after_first_chunk
        return sum(self.hold_ticks_after_first_chunk.values()) / n if n else None

    def to_dict(self) -> dict[str, Any]:
        duration = (self.ended_s or 0.0) - (self.started_s or 0.0) if self.started_s is not None else 0.0
        started = self.started_s if self.started_s is not None else self.clock.monotonic_s
        return {
            "instruction": self.instruction,
            "server_address": self.server_address,
            "policy": self.policy,
            "clock": {"monotonic_s": self.clock.monotonic_s, "unix_s": self.clock.unix_s},
            "started_s": started,
            "ended_s": self.ended_s,
            "started_at": self.clock.iso(started),
            "ended_at": None if self.ended_s is None else self.clock.iso(self.ended_s),
            "exit_reason": self.exit_reason,
            "exit_detail": self.exit_detail,
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
    policy = summary.get("policy")
    who = (
        f"{policy['name']} {policy['version']} ({policy['backend']}) at {summary.get('server_address', '')}"
        if policy
        else "-"
    )
    exit_text = summary.get("exit_reason") or "-"
    if summary.get("exit_detail"):
        exit_text += f" ({summary['exit_detail']})"
    lines = [
        "Run summary",
        f"  policy                 {who}",
        f"  started                {summary.get('started_at', '-')}, ended by {exit_text}",
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


def policy_identity(spec: Any) -> dict[str, Any]:
    """What names a policy in a summary or an event: a ``PolicySpec``'s ``name``, ``version``,
    ``backend``, ``device``, ``action_space`` and ``action_dim``."""
    return {
        "name": spec.name,
        "version": spec.version,
        "backend": spec.backend,
        "device": spec.device,
        "action_space": spec.action_space,
        "action_dim": int(spec.action_dim),
    }


def describe_policy(identity: dict[str, Any]) -> str:
    """``name version (action_space, action_dim actions, backend)``, for a message."""
    return (
        f"{identity['name']} {identity['version']} ({identity['action_space']}, "
        f"{identity['action_dim']} actions, {identity['backend']})"
    )

"""The agent's Prometheus families, on a registry handed in (never module globals), so that two
agents can run in one process (tests, ``eval``) without clashing.

Names follow ``vla_agent_<what>_<unit>``; labels come from closed sets (``reason``, ``kind``),
and every value of them is exported at 0 from the start, as the server does for ``status``: a
series born at 1 has no earlier sample, so ``increase()``/``rate()`` would miss its first event.

:class:`AgentMetrics` is a subscriber of the run's events (:mod:`robot_agent.events`): a new
metric is a family here and a line in :meth:`AgentMetrics.on_event`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from robot_agent.events import (
    ChunkAccepted,
    DeadlineMiss,
    EStopLatched,
    Event,
    Hold,
    Interventions,
    Reconnected,
    RequestSent,
    Resume,
    Tick,
)
from robot_agent.reasons import HOLD_REASONS
from safety import SAFETY_RULE_KINDS

__all__ = ["AgentMetrics"]

# Round trips span a loopback CPU policy (~ms) to a remote GPU box with injected delay (~0.5 s).
_ROUNDTRIP_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)
# Control periods sit around 4-10 ms; the buckets resolve jitter of a fraction of a millisecond.
_PERIOD_BUCKETS = (
    0.002,
    0.003,
    0.004,
    0.0045,
    0.005,
    0.0055,
    0.006,
    0.008,
    0.009,
    0.0095,
    0.01,
    0.0105,
    0.011,
    0.012,
    0.015,
    0.02,
    0.05,
    0.1,
)


class AgentMetrics:
    """Every metric the agent exports, kept by the run's events (``name`` ``metrics``, the tick
    stage a failure here is charged to). ``AgentMetrics(CollectorRegistry())`` in tests."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.name = "metrics"
        self.registry = registry
        self.roundtrip_seconds = Histogram(
            "vla_agent_roundtrip_seconds",
            "Observation capture to action chunk received, per request.",
            buckets=_ROUNDTRIP_BUCKETS,
            registry=registry,
        )
        self.control_period_seconds = Histogram(
            "vla_agent_control_period_seconds",
            "Time between consecutive control ticks.",
            buckets=_PERIOD_BUCKETS,
            registry=registry,
        )
        self.control_overrun = Counter(
            "vla_agent_control_overrun", "Control ticks that started after their deadline.", registry=registry
        )
        self.deadline_miss = Counter(
            "vla_agent_deadline_miss",
            "Chunks that arrived after the previous one ran out (the arm had to hold).",
            registry=registry,
        )
        self.hold = Counter("vla_agent_hold", "Entries into hold, by reason.", ["reason"], registry=registry)
        self.holding = Gauge("vla_agent_holding", "1 while the arm holds position.", registry=registry)
        self.safety_interventions = Counter(
            "vla_agent_safety_interventions",
            "Safety rules that changed or refused a target, by kind.",
            ["kind"],
            registry=registry,
        )
        for reason in HOLD_REASONS:
            self.hold.labels(reason)
        for kind in SAFETY_RULE_KINDS:
            self.safety_interventions.labels(kind)
        self.estop = Counter("vla_agent_estop", "E-stop latches.", registry=registry)
        self.reconnects = Counter("vla_agent_reconnects", "Stream reconnections.", registry=registry)
        self.stale_actions_dropped = Counter(
            "vla_agent_stale_actions_dropped",
            "Actions whose time had passed when their chunk arrived.",
            registry=registry,
        )
        self.inference_delay_steps = Gauge(
            "vla_agent_inference_delay_steps",
            "Inference delay in policy steps sent with the latest request.",
            registry=registry,
        )

    def on_event(self, event: Event) -> None:
        """Count ``event``: a tick's period (s) and overrun; a hold by reason, the holding gauge
        (1 on a hold or the e-stop, 0 on resume); safety interventions by kind; deadline misses,
        e-stops, reconnects; a good chunk's round trip (s) and the actions already past on its
        arrival; the inference delay (policy steps) sent with a request."""
        match event:
            case Tick(period_s=period_s, overran=overran):
                if period_s is not None:
                    self.control_period_seconds.observe(period_s)
                if overran:
                    self.control_overrun.inc()
            case Hold(reason=reason):
                self.hold.labels(reason).inc()
                self.holding.set(1)
            case Resume():
                self.holding.set(0)
            case EStopLatched():
                self.estop.inc()
                self.holding.set(1)
            case Interventions(kinds=kinds):
                for kind in kinds:
                    self.safety_interventions.labels(kind).inc()
            case DeadlineMiss():
                self.deadline_miss.inc()
            case Reconnected():
                self.reconnects.inc()
            case ChunkAccepted(roundtrip_s=roundtrip_s, dropped=dropped):
                self.roundtrip_seconds.observe(roundtrip_s)
                self.stale_actions_dropped.inc(dropped)
            case RequestSent(inference_delay_steps=steps):
                self.inference_delay_steps.set(steps)

"""What a running agent says about itself: one frozen snapshot (``Agent.status()``).

Tests, ``eval`` and anything embedding the agent read this instead of reaching into the control
loop, the plan or the run statistics, which are the agent's own business and change shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["AgentStatus", "counts"]


def counts(counter: Mapping[str, int]) -> Mapping[str, int]:
    """A read-only copy of ``counter`` in which a reason never seen reads 0."""
    return MappingProxyType(Counter(counter))


@dataclass(frozen=True)
class AgentStatus:
    """The agent at one moment (times are ``time.monotonic()`` seconds of its process).

    ``started``: robot and cameras ready, control running; ``connected``: a spec was read and
    the stream open at least once; ``stream_up``: it is open now; ``holding`` / ``hold_reason``
    (:data:`robot_agent.reasons.HOLD_REASONS`); ``estopped`` / ``estop_reason``: the latch;
    ``chunks``: good chunks received; ``plan_end``: when the plan in hand runs out (None: no
    plan); ``state_time_s``: the newest robot state's time; ``ticks``: control ticks run;
    ``holds``, ``rejected_chunks``, ``safety_interventions`` and ``tick_faults``: counts by
    reason, kind or stage, as in the summary (read-only; one never seen reads 0); ``reconnects``; ``frame_age_bounds``: each camera's oldest usable frame (s).

    Example::

        status = agent.status()
        if status.holding:
            print("holding for", status.hold_reason)
    """

    started: bool = False
    connected: bool = False
    stream_up: bool = False
    holding: bool = False
    hold_reason: str | None = None
    estopped: bool = False
    estop_reason: str | None = None
    chunks: int = 0
    plan_end: float | None = None
    state_time_s: float | None = None
    ticks: int = 0
    holds: Mapping[str, int] = field(default_factory=dict)
    rejected_chunks: Mapping[str, int] = field(default_factory=dict)
    safety_interventions: Mapping[str, int] = field(default_factory=dict)
    tick_faults: Mapping[str, int] = field(default_factory=dict)
    reconnects: int = 0
    frame_age_bounds: Mapping[str, float] = field(default_factory=dict)

"""One control tick as a record: the one step-record type of vla-deploy.

The agent's control loop builds one per tick and publishes it (``robot_agent.events.Tick``); the
recorder writes it as a line of ``steps.jsonl`` (:meth:`StepRecord.to_json`); :func:`safety.verify_trace`
reads those lines back (:meth:`StepRecord.from_json`) and checks every safe command against the
limits. Pure numpy, like the rest of ``safety``.
"""

from __future__ import annotations

from dataclasses import dataclass

from safety.types import Measured, Target

__all__ = ["StepRecord"]


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One tick at ``time_s`` (agent ``time.monotonic()`` seconds).

    ``measured``: the state read this tick (None when the read failed); ``raw``: the target the
    plan asked for (None: nothing valid for now); ``safe``: what the shield let through and the
    driver was sent (None: held, or e-stopped); ``fired``: the shield rules that changed or refused
    the target; ``holding`` and ``hold_reason`` (:data:`robot_agent.reasons.HOLD_REASONS`);
    ``plan_end``: when the plan in hand runs out (None: no plan).
    """

    time_s: float
    measured: Measured | None
    raw: Target | None
    safe: Target | None
    fired: tuple[str, ...]
    holding: bool
    hold_reason: str | None = None
    plan_end: float | None = None

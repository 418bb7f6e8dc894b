"""Closed sets of reasons the agent reports: why the arm holds, which tick stage faulted, why a
chunk was refused. A leaf module (imports nothing of the agent), so the control loop, the
metrics, the run statistics and the recorder all name the same values without an import cycle.
Every value of a set is exported at 0 from the start (``metrics.py``)."""

from __future__ import annotations

__all__ = [
    "BAD_PLAN_REASONS",
    "FAULT_REASONS",
    "HOLD_REASONS",
    "PLAN_KEEPING_REASONS",
]

#: Why the arm holds (the ``reason`` label of ``vla_agent_hold_total``): a closed set.
HOLD_REASONS: tuple[str, ...] = (
    "waiting_for_server",  # no spec or no chunk yet
    "chunk_exhausted",  # the plan ran out and nothing was asked for in time
    "late",  # the plan ran out while a request was outstanding: a deadline miss
    "stream_down",  # the stream broke; reconnecting
    "invalid_chunk",  # the last chunk had the wrong shape or could not be decoded
    "non_finite",  # the last chunk (or the target sampled from the plan) had NaN or inf
    "server_error",  # the server answered ERROR
    "invalid_request",  # the server answered INVALID: it refused this agent's request
    "stale_observation",  # a sensor reading (robot state, camera frame) older than its bound
    "stall",  # the tick came more than safety.max_dt_s after the previous one
    "safety",  # the shield refused the target
    "trajectory_error",  # sampling the plan raised (e.g. Ruckig refusing a target)
    "action_space_error",  # converting the plan's waypoint into a robot target raised
    "shield_error",  # the shield itself raised
    "recorder_error",  # the recorder raised (recording stops, the run carries on)
    "metrics_error",  # updating a metric raised
    "estop",
)

#: Holds caused by the tick itself: the plan is still valid and the next normal tick resumes on
#: it. Every other reason drops the plan (nothing of it is left, or it cannot be trusted).
PLAN_KEEPING_REASONS: frozenset[str] = frozenset(
    {"stall", "safety", "stale_observation", "recorder_error", "metrics_error"}
)

#: Holds for a plan found bad in the tick: the label stays until the next chunk arrives (the
#: watchdog would otherwise call it ``chunk_exhausted`` once the plan is gone).
BAD_PLAN_REASONS: frozenset[str] = frozenset(
    {"non_finite", "invalid_chunk", "safety", "trajectory_error", "action_space_error", "shield_error"}
)

#: The stages of a tick whose exceptions become a hold, and the hold reason each maps to.
FAULT_REASONS: dict[str, str] = {
    "trajectory": "trajectory_error",
    "action_space": "action_space_error",
    "shield": "shield_error",
    "recorder": "recorder_error",
    "metrics": "metrics_error",
}

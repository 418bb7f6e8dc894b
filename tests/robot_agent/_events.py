"""Events of a run for the bookkeeping tests: builders and a hypothesis strategy."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

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
    ObservationFresh,
    ObservationStale,
    PolicyChanged,
    Reconnected,
    RequestFailed,
    RequestSent,
    Resume,
    StreamDown,
    Tick,
    TickFault,
    Waiting,
)
from robot_agent.reasons import FAULT_REASONS, HOLD_REASONS
from safety import SAFETY_RULE_KINDS, Measured, Pose, StepRecord, Target

POLICY = {
    "name": "still",
    "version": "1",
    "backend": "python",
    "device": "cpu",
    "action_space": "ee_delta",
    "action_dim": 7,
}


class Events:
    """A subscriber that keeps every event it is handed, in order (named as the run statistics
    are, so a failure is charged to the same tick stage)."""

    name = "stats"

    def __init__(self) -> None:
        self.seen: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.seen.append(event)

    def of(self, kind: type) -> list[Event]:
        """The events of one kind, in order."""
        return [e for e in self.seen if isinstance(e, kind)]


def measured(t: float) -> Measured:
    pose = Pose(position=np.array([0.4, 0.0, 0.3]), quaternion=np.array([1.0, 0.0, 0.0, 0.0]))
    return Measured(time_s=t, joints=np.zeros(7), ee=pose, gripper=1.0)


def tick(
    t: float,
    *,
    holding: bool = False,
    reason: str | None = None,
    period_s: float | None = 0.01,
    work_s: float = 0.001,
    overran: bool = False,
    after_first_chunk: bool = True,
) -> Tick:
    """A tick at ``t``: moving (a safe command at the measured pose) or holding for ``reason``."""
    m = measured(t)
    safe = None if holding else Target(time_s=t, ee=m.ee, gripper=1.0)
    step = StepRecord(
        time_s=t,
        measured=m,
        raw=safe,
        safe=safe,
        fired=(),
        holding=holding,
        hold_reason=reason if holding else None,
        plan_end=None if holding else t + 0.4,
    )
    return Tick(
        step=step, period_s=period_s, work_s=work_s, overran=overran, after_first_chunk=after_first_chunk
    )


def run_events() -> list[Event]:
    """A short run: connect, wait, two chunks (one with stale actions), a late hold relabelled,
    a resume, an overrun, a rejected chunk, a tick fault, a deadline miss, a reconnect, an e-stop."""
    return [
        Connected(time_s=0.0, address="127.0.0.1:1", policy=POLICY),
        Hold(time_s=0.0, reason="waiting_for_server"),
        tick(0.01, holding=True, reason="waiting_for_server", period_s=None, after_first_chunk=False),
        Answer(time_s=0.015, request_id=1, status="OK"),
        ChunkAccepted(time_s=0.02, request_id=1, roundtrip_s=0.03, kept=8, dropped=2, first=True),
        Resume(time_s=0.02, reason="waiting_for_server"),
        tick(0.02, work_s=0.002),
        Interventions(time_s=0.02, kinds=("velocity", "jerk")),
        tick(0.03, overran=True, work_s=0.02),
        Hold(time_s=0.04, reason="late", after_first_chunk=True),
        Hold(time_s=0.05, reason="stall", previous="late", after_first_chunk=True),
        DeadlineMiss(time_s=0.05, request_id=2),
        tick(0.05, holding=True, reason="stall"),
        ChunkAccepted(time_s=0.06, request_id=2, roundtrip_s=0.05, kept=0, dropped=10, first=False),
        Answer(time_s=0.07, request_id=3, status="OK"),
        ChunkRejected(time_s=0.07, request_id=3, kind="non_finite", detail="NaN"),
        TickFault(time_s=0.08, stage="trajectory", error="RuntimeError()"),
        ObservationStale(time_s=0.08, detail="camera 'front' frame is 400 ms old"),
        Reconnected(time_s=0.09, attempt=2),
        EStopLatched(time_s=0.1, reason="shield e-stop"),
        tick(0.1, holding=True, reason="estop"),
    ]


_time = st.floats(0.0, 1e4, allow_nan=False)
_text = st.text(max_size=12)
_id = st.integers(0, 1 << 20)


@st.composite
def _ticks(draw: st.DrawFn) -> Tick:
    holding = draw(st.booleans())
    return tick(
        draw(_time),
        holding=holding,
        reason=draw(st.sampled_from(HOLD_REASONS)) if holding else None,
        period_s=draw(st.none() | st.floats(1e-4, 0.1)),
        work_s=draw(st.floats(0.0, 0.01)),
        overran=draw(st.booleans()),
        after_first_chunk=draw(st.booleans()),
    )


#: Any one event of a run, with values from the closed sets.
events: st.SearchStrategy[Event] = st.one_of(
    _ticks(),
    st.builds(
        Hold,
        time_s=_time,
        reason=st.sampled_from(HOLD_REASONS),
        previous=st.none() | st.sampled_from(HOLD_REASONS),
        detail=st.none() | _text,
        after_first_chunk=st.booleans(),
    ),
    st.builds(Resume, time_s=_time, reason=st.sampled_from(HOLD_REASONS)),
    st.builds(EStopLatched, time_s=_time, reason=_text),
    st.builds(TickFault, time_s=_time, stage=st.sampled_from(["state", *FAULT_REASONS]), error=_text),
    st.builds(
        Interventions,
        time_s=_time,
        kinds=st.lists(st.sampled_from(SAFETY_RULE_KINDS), min_size=1, max_size=3, unique=True).map(tuple),
    ),
    st.builds(RequestSent, time_s=_time, request_id=_id, inference_delay_steps=st.integers(0, 50)),
    st.builds(RequestFailed, time_s=_time, error=_text),
    st.builds(
        Answer, time_s=_time, request_id=_id, status=st.sampled_from(["OK", "LATE", "INVALID", "ERROR"])
    ),
    st.builds(
        ChunkAccepted,
        time_s=_time,
        request_id=_id,
        roundtrip_s=st.floats(0.0, 2.0),
        kept=st.integers(0, 50),
        dropped=st.integers(0, 50),
        first=st.booleans(),
    ),
    st.builds(
        ChunkRejected,
        time_s=_time,
        request_id=_id,
        kind=st.sampled_from(["invalid_chunk", "non_finite", "invalid_request", "server_error"]),
        detail=_text,
    ),
    st.builds(DeadlineMiss, time_s=_time, request_id=st.none() | _id),
    st.builds(ObservationStale, time_s=_time, detail=_text),
    st.builds(ObservationFresh, time_s=_time, detail=_text),
    st.builds(Waiting, time_s=_time, attempt=st.integers(1, 100), detail=_text),
    st.builds(Connected, time_s=_time, address=_text, policy=st.just(POLICY)),
    st.builds(Reconnected, time_s=_time, attempt=st.integers(1, 100)),
    st.builds(StreamDown, time_s=_time, detail=_text),
    st.builds(
        PolicyChanged,
        time_s=_time,
        allowed=st.booleans(),
        previous=st.just(POLICY),
        policy=st.just({**POLICY, "version": "2"}),
    ),
)

"""What happens in a run, as events, and the bus that hands them to subscribers.

The control loop and the stream publish; metrics (``metrics.py``), the run statistics
(``summary.py``) and the recorder (``recorder.py``) subscribe, as openpi's
``Runtime(subscribers=...)``. A new counter is a change in the subscriber that counts it; a new
event kind is a new dataclass here. Times are ``time.monotonic()`` seconds of this process (the
one clock of a run, see ``summary.py``).

Events are frozen dataclasses with slots; a subscriber must not keep mutable references.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from safety.record import StepRecord

__all__ = [
    "Answer",
    "ChunkAccepted",
    "ChunkRejected",
    "Connected",
    "DeadlineMiss",
    "EStopLatched",
    "Event",
    "EventBus",
    "Hold",
    "Interventions",
    "ObservationFresh",
    "ObservationStale",
    "PolicyChanged",
    "Reconnected",
    "RequestFailed",
    "RequestSent",
    "Resume",
    "StreamDown",
    "Subscriber",
    "SubscriberError",
    "Tick",
    "TickFault",
    "Waiting",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Tick:
    """One control tick, done: its step record (what was read, planned, filtered and sent),
    ``period_s`` since the previous tick (None for the first), ``work_s`` spent in it, whether it
    ran past the next deadline, and whether a good chunk had been received before it."""

    step: StepRecord
    period_s: float | None
    work_s: float
    overran: bool
    after_first_chunk: bool


@dataclass(frozen=True, slots=True)
class Hold:
    """The arm holds for ``reason`` (:data:`robot_agent.reasons.HOLD_REASONS`); ``previous`` is
    the reason it already held for (a relabel), None for a new hold."""

    time_s: float
    reason: str
    previous: str | None = None
    detail: str | None = None
    after_first_chunk: bool = False


@dataclass(frozen=True, slots=True)
class Resume:
    """The arm moves again after holding for ``reason``."""

    time_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class EStopLatched:
    """The e-stop latched (once per run)."""

    time_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class TickFault:
    """A stage of a tick raised (``stage`` in ``state``, ``trajectory``, ``action_space``,
    ``shield``, ``recorder``, ``metrics``); ``error`` is its one-line repr."""

    time_s: float
    stage: str
    error: str


@dataclass(frozen=True, slots=True)
class Interventions:
    """Safety rules (``safety.SAFETY_RULE_KINDS``) that changed or refused this tick's target."""

    time_s: float
    kinds: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RequestSent:
    """An observation went out as request ``request_id``, with this inference delay."""

    time_s: float
    request_id: int
    inference_delay_steps: int


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """Building a request failed on this agent's own data (the agent holds and backs off)."""

    time_s: float
    error: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The server answered request ``request_id`` with wire status ``status`` (OK, LATE, ...)."""

    time_s: float
    request_id: int
    status: str


@dataclass(frozen=True, slots=True)
class ChunkAccepted:
    """A chunk entered the plan: ``kept`` actions, ``dropped`` already past on arrival, measured
    ``roundtrip_s`` from this agent's own capture time; ``first`` for the run's first."""

    time_s: float
    request_id: int
    roundtrip_s: float
    kept: int
    dropped: int
    first: bool


@dataclass(frozen=True, slots=True)
class ChunkRejected:
    """A chunk was refused: ``kind`` is a hold reason (``invalid_chunk``, ``non_finite``,
    ``invalid_request``, ``server_error``), ``detail`` one line."""

    time_s: float
    request_id: int
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class DeadlineMiss:
    """A chunk arrived after the plan ran out, or with all its actions already past."""

    time_s: float
    request_id: int | None = None


@dataclass(frozen=True, slots=True)
class ObservationStale:
    """A sensor stopped delivering fresh data (nothing is sent until it does)."""

    time_s: float
    detail: str


@dataclass(frozen=True, slots=True)
class ObservationFresh:
    """Every sensor fresh again after ``detail``."""

    time_s: float
    detail: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """Connecting to the server failed; attempt ``attempt`` of the retry loop."""

    time_s: float
    attempt: int
    detail: str


@dataclass(frozen=True, slots=True)
class Connected:
    """The stream is up for the first time; ``policy`` is :func:`summary.policy_identity`."""

    time_s: float
    address: str
    policy: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The stream is up again after ``attempt`` attempts."""

    time_s: float
    attempt: int


@dataclass(frozen=True, slots=True)
class StreamDown:
    """The stream broke; the agent reconnects."""

    time_s: float
    detail: str


@dataclass(frozen=True, slots=True)
class PolicyChanged:
    """Another policy answered after a reconnect; ``allowed`` by ``server.allow_policy_change``."""

    time_s: float
    allowed: bool
    previous: Mapping[str, Any]
    policy: Mapping[str, Any]


Event = (
    Tick
    | Hold
    | Resume
    | EStopLatched
    | TickFault
    | Interventions
    | RequestSent
    | RequestFailed
    | Answer
    | ChunkAccepted
    | ChunkRejected
    | DeadlineMiss
    | ObservationStale
    | ObservationFresh
    | Waiting
    | Connected
    | Reconnected
    | StreamDown
    | PolicyChanged
)


@runtime_checkable
class Subscriber(Protocol):
    """Anything that wants the run's events. ``name`` is the tick stage its failure is charged to
    (``metrics``, ``recorder``, ``stats``)."""

    name: str

    def on_event(self, event: Event) -> None: ...


class SubscriberError(Exception):
    """A subscriber raised while handling an event; ``subscriber`` names it, ``__cause__`` is the
    original exception. The control loop maps it to the tick stage of the same name."""

    def __init__(self, subscriber: str, error: BaseException) -> None:
        super().__init__(f"{subscriber} subscriber failed: {error!r}")
        self.subscriber = subscriber


class EventBus:
    """Hands each event to every subscriber, in order (event-loop only, no locking).

    ``publish`` calls every subscriber even when one raises, then raises :class:`SubscriberError`
    for the first failure (so a failing metric never keeps the recorder from its record);
    ``publish_quietly`` logs a failure once per subscriber instead (bookkeeping on the way to a
    hold or an e-stop must never keep the arm from stopping). ``remove`` drops a subscriber (a
    recorder that failed).
    """

    def __init__(self, subscribers: Iterable[Subscriber] = ()) -> None:
        self._subscribers: list[Subscriber] = list(subscribers)
        self._reported: set[str] = set()

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        return tuple(self._subscribers)

    def add(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def publish(self, event: Event) -> None:
        first: SubscriberError | None = None
        for subscriber in tuple(self._subscribers):
            try:
                subscriber.on_event(event)
            except Exception as exc:
                if first is None:
                    first = SubscriberError(subscriber.name, exc)
                    first.__cause__ = exc
        if first is not None:
            raise first

    def publish_quietly(self, event: Event) -> None:
        for subscriber in tuple(self._subscribers):
            try:
                subscriber.on_event(event)
            except Exception as exc:
                if subscriber.name not in self._reported:
                    self._reported.add(subscriber.name)
                    logger.error(
                        "Updating the %s on %s failed (%r); carrying on",
                        subscriber.name,
                        type(event).__name__,
                        exc,
                    )

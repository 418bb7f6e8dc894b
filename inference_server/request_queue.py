"""The model queue's rules as a pure object: latest wins per session, deadlines, fair turns.

No thread, no event loop, no wall clock: :class:`~inference_server.worker.ModelWorker` calls it
under its lock, and the tests drive it with a fake clock and hypothesis.

- Latest wins per session: at most one request of a session waits; a newer one takes the older
  one's place, and :meth:`RequestQueue.put` hands the older one back to be answered LATE.
- Deadlines: :meth:`RequestQueue.take` hands back, to be answered LATE, every waiting request
  whose deadline has come (``now >= deadline``); none of them is computed.
- Fair turns across sessions: of the sessions with a request waiting, the one served longest ago
  goes first (ties, and sessions never served: the one waiting longest). A session that sends
  100 times more gets no more turns than one that sends at its own pace: while a request waits,
  every other session is served at most once, so a request waits at most ``sessions - 1`` turns,
  and a session sending below its fair share is served in the next batch. In arrival order
  (before issue 15) a robot's request waited behind every request of 50 streams flooding the
  server; this rule is start-time fair queuing with equal costs (Goyal et al., "Start-time Fair
  Queueing", SIGCOMM 1996), where one waiting request per session makes "served longest ago" the
  whole of the virtual-time bookkeeping.

Every request put in leaves exactly once: replaced by a newer one (``put``), late or batched
(``take``), removed (``remove``) or cleared (``clear``).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["Queued", "RequestQueue", "Taken"]


class Queued(Protocol):
    """What the queue reads of a request: its session, its deadline and when it was queued.

    ``deadline`` and ``enqueued`` are on the queue's clock (seconds); ``deadline`` None: no limit.
    """

    @property
    def session(self) -> str: ...

    @property
    def deadline(self) -> float | None: ...

    @property
    def enqueued(self) -> float: ...


T = TypeVar("T", bound=Queued)


@dataclass
class _Place(Generic[T]):
    """A session's place in the queue: kept when a newer request of the session replaces ``item``."""

    item: T
    rank: tuple[int, int]  # (the session's last turn, -1 if never served; arrival number)


@dataclass(frozen=True)
class Taken(Generic[T]):
    """What :meth:`RequestQueue.take` hands out: ``batch`` to compute now, in turn order, and
    ``late``, whose deadline came before compute started (answer them LATE)."""

    batch: list[T]
    late: list[T]


class RequestQueue(Generic[T]):
    """Requests waiting for the model, at most one per session, handed out in fair turns.

    ``clock`` gives the time deadlines are compared with (seconds, the clock ``deadline`` and
    ``enqueued`` were read from). ``remember``: how many sessions' last turns are kept; past it
    the one served longest ago is forgotten (it ranks as never served, which changes its place
    only against other never-served sessions), so memory stays bounded however many session ids
    clients make up.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, remember: int = 1024) -> None:
        if remember < 1:
            raise ValueError(f"remember is {remember}, expected >= 1")
        self._clock = clock
        self._remember = remember
        self._waiting: dict[str, _Place[T]] = {}
        # Session -> its last turn, in turn order (re-inserted when served): the first is the oldest.
        self._last_turn: dict[str, int] = {}
        self._turns = 0
        self._arrivals = itertools.count()

    def __len__(self) -> int:
        """Requests waiting: at most one per session."""
        return len(self._waiting)

    @property
    def remembered(self) -> int:
        """Sessions whose last turn is kept (at most ``remember``)."""
        return len(self._last_turn)

    def put(self, item: T) -> T | None:
        """Queue ``item``; returns the request of the same session it replaced (latest wins), if any.

        The session keeps its place: replacing a waiting request neither loses nor gains a turn.
        """
        place = self._waiting.get(item.session)
        if place is not None:
            old, place.item = place.item, item
            return old
        rank = (self._last_turn.get(item.session, -1), next(self._arrivals))
        self._waiting[item.session] = _Place(item, rank)
        return None

    def take(self, max_items: int) -> Taken[T]:
        """Hand out up to ``max_items`` requests to compute, and every request now out of time."""
        now = self._clock()
        late = [
            place.item
            for place in self._waiting.values()
            if place.item.deadline is not None and now >= place.item.deadline
        ]
        for item in late:
            del self._waiting[item.session]
        chosen = heapq.nsmallest(max_items, self._waiting.values(), key=lambda place: place.rank)
        batch = []
        for place in chosen:
            session = place.item.session
            del self._waiting[session]
            self._last_turn.pop(session, None)
            self._last_turn[session] = self._turns
            self._turns += 1
            batch.append(place.item)
        while len(self._last_turn) > self._remember:
            del self._last_turn[next(iter(self._last_turn))]
        return Taken(batch, late)

    def remove(self, item: T) -> bool:
        """Take ``item`` out if it still waits (its client has gone); True if it did."""
        place = self._waiting.get(item.session)
        if place is None or place.item is not item:
            return False
        del self._waiting[item.session]
        return True

    def clear(self) -> list[T]:
        """Take out every waiting request (shutting down, or the model failed to load)."""
        items = [place.item for place in self._waiting.values()]
        self._waiting.clear()
        return items

    def oldest_enqueued(self) -> float | None:
        """When the request waiting longest was queued (None: nothing waits)."""
        return min((place.item.enqueued for place in self._waiting.values()), default=None)

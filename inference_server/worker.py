"""The model worker: one thread owns the model and serves the request queue, batch by batch.

Why one thread: a model (and its CUDA stream) is not safe to call from many threads, and the
event loop must never run model code, or every stream would stall behind one inference. The
event loop only *submits*; the worker thread takes what the queue hands out (fair turns across
sessions, latest wins, deadlines: :mod:`inference_server.request_queue`), runs one batch
(:func:`~inference_server.batcher.run_batch`) and hands each request its result back on its loop.

Batching: up to ``max_batch`` requests across sessions per model call; with ``max_queue_delay_s``
0 the worker takes whatever is waiting at once, so a single robot gets batch-1 latency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from inference_server.backends import Backend, create_backend
from inference_server.batcher import run_batch
from inference_server.error_log import ErrorLog
from inference_server.request_queue import RequestQueue
from inference_server.result import Result, Status
from inference_server.validation import Observation, shown

if TYPE_CHECKING:
    from inference_server.bundle import Bundle
    from inference_server.metrics import ServerMetrics

__all__ = ["ModelWorker", "Pending"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
_Call = tuple[Callable[[Backend], Any], concurrent.futures.Future[Any]]


@dataclasses.dataclass(eq=False)
class Pending:
    """A checked request waiting for the worker; ``future`` lives on ``loop``.

    ``enqueued`` and ``deadline`` (None: no limit) are on the worker's clock, in seconds.
    ``stream`` numbers the Predict stream it came on (0: not from a stream), so that a request
    superseded by another stream's can say so.
    """

    session: str
    request_id: int
    observation: Observation
    enqueued: float
    deadline: float | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Result] = dataclasses.field(repr=False)
    stream: int = 0


class ModelWorker:
    """Owns the backend on its own thread. ``start()``, then ``submit()`` from the event loop.

    ``clock`` (seconds) is the one ``Pending.enqueued`` and ``deadline`` are read from.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        max_batch: int,
        max_queue_delay_s: float,
        metrics: ServerMetrics | None = None,
        backend_factory: Callable[[Bundle], Backend] = create_backend,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bundle = bundle
        self._max_batch = max_batch
        self._max_delay = max_queue_delay_s
        self._metrics = metrics
        self._factory = backend_factory
        self._clock = clock
        self._errors = ErrorLog(logger, clock=clock)  # a model failing on every request logs once
        self._cond = threading.Condition()
        self._queue: RequestQueue[Pending] = RequestQueue(clock=clock)
        self._calls: list[_Call] = []
        self._stopping = False
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name="vla-model-worker", daemon=True)

    # -- event-loop side -----------------------------------------------------------------------

    def start(self) -> concurrent.futures.Future[None]:
        """Start the thread; the returned future resolves once the model is loaded (or failed)."""
        self._thread.start()
        return self._ready

    def call(self, fn: Callable[[Backend], T]) -> concurrent.futures.Future[T]:
        """Run ``fn(backend)`` on the worker thread, before any waiting batch (warm-up, bench)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                fut.set_exception(RuntimeError("the model worker is stopped"))
                return fut
            self._calls.append((fn, fut))
            self._cond.notify()
        return fut

    def submit(self, pending: Pending) -> None:
        """Queue ``pending``; an older request of the same session still waiting is answered LATE."""
        with self._cond:
            if self._stopping:
                _resolve(pending, Result(Status.LATE, "server is shutting down"))
                return
            old = self._queue.put(pending)
            self._cond.notify()
        if old is not None:
            _resolve(old, Result(Status.LATE, _superseded(old, pending)))

    @property
    def waiting(self) -> int:
        """Requests queued, not yet computing: at most one per session (latest wins)."""
        with self._cond:
            return len(self._queue)

    def discard(self, pending: Pending) -> None:
        """Forget ``pending`` if it still waits (its stream has gone away)."""
        with self._cond:
            self._queue.remove(pending)

    def stop(self, *, drain: bool = True) -> None:
        """Stop taking work. ``drain``: compute what is waiting first; else answer it LATE."""
        with self._cond:
            self._stopping = True
            dropped = [] if drain else self._queue.clear()
            self._cond.notify_all()
        for p in dropped:
            _resolve(p, Result(Status.LATE, "server is shutting down"))

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to close the model; True if it did within ``timeout``."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- worker thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            backend = self._factory(self._bundle)
        except BaseException as exc:
            self._ready.set_exception(exc)
            with self._cond:
                self._stopping = True
                dropped = self._queue.clear()
            for p in dropped:
                _resolve(p, Result(Status.ERROR, "model failed to load"))
            return
        self._ready.set_result(None)
        try:
            while (job := self._next_job()) is not None:
                if isinstance(job, tuple):
                    fn, fut = job
                    if fut.set_running_or_notify_cancel():
                        try:
                            fut.set_result(fn(backend))
                        except BaseException as exc:
                            fut.set_exception(exc)
                else:
                    self._run_batch(backend, job)
        finally:
            with self._cond:
                calls, self._calls = self._calls, []
            for _, fut in calls:
                fut.cancel()
            self._errors.flush()
            try:
                backend.close()
            except Exception:
                logger.exception("Closing the %s backend failed", self._bundle.backend)

    def _next_job(self) -> _Call | list[Pending] | None:
        """The next thing to do: a call, a batch (possibly empty: all were late), or None: stop."""
        with self._cond:
            while True:
                if self._calls:
                    return self._calls.pop(0)
                if self._queue:
                    if self._max_delay > 0 and not self._stopping:
                        self._wait_for_fuller_batch()
                        if not self._queue:
                            continue
                    return self._take()
                if self._stopping:
                    return None
                self._cond.wait()

    def _wait_for_fuller_batch(self) -> None:
        oldest = self._queue.oldest_enqueued()
        until = (oldest if oldest is not None else self._clock()) + self._max_delay
        while self._queue and len(self._queue) < self._max_batch and not self._stopping and not self._calls:
            remaining = until - self._clock()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _take(self) -> list[Pending]:
        taken = self._queue.take(self._max_batch)
        now = self._clock()
        for p in taken.late:
            waited = now - p.enqueued
            message = f"timeout ran out before compute started (queued {waited * 1e3:.1f} ms)"
            _resolve(p, Result(Status.LATE, message, queue_s=waited))
        if self._metrics is not None:
            for p in taken.batch:
                self._metrics.queue_seconds.observe(now - p.enqueued)
        return taken.batch

    def _run_batch(self, backend: Backend, batch: list[Pending]) -> None:
        if not batch:
            return
        t0 = self._clock()
        results = run_batch(
            backend, self._bundle, [p.observation for p in batch], clock=self._clock, errors=self._errors
        )
        if self._metrics is not None:
            self._metrics.inference_seconds.observe(results[0].inference_s)
            self._metrics.batch_size.observe(len(batch))
        for p, result in zip(batch, results, strict=True):
            _resolve(p, dataclasses.replace(result, queue_s=t0 - p.enqueued))


def _superseded(old: Pending, new: Pending) -> str:
    """Why ``old`` is answered LATE: ``new`` of the same session took its place in the queue."""
    if old.stream == new.stream:
        return f"superseded by request {new.request_id} of the same session (latest wins)"
    return (
        f"superseded by request {new.request_id} of another stream with session_id {shown(new.session)} "
        "(latest wins per session_id: give each client its own)"
    )


def _resolve(pending: Pending, result: Result) -> None:
    """Hand ``result`` to the request's loop; a stream that has gone away is simply skipped."""
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        pending.loop.call_soon_threadsafe(_set_result, pending.future, result)


def _set_result(future: asyncio.Future[Result], result: Result) -> None:
    if not future.done():
        future.set_result(result)

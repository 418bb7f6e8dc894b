"""The model worker: one thread owns the model, fed by a latest-wins, deadline-aware batch queue.

Why one thread: a model (and its CUDA stream) is not safe to call from many threads, and the
event loop must never run model code, or every stream would stall behind one inference. The
event loop only *submits*; the worker thread takes what is waiting, drops what is stale, runs one
batch and hands each request its result back on the loop.

Queue rules, all decided under one lock:
- latest wins per session: a newer request of a session replaces its older one still waiting,
  which is answered LATE (superseded, naming the newer request and, when it came on another
  stream, that stream's ``session_id``: two clients sharing a session id is a client bug) and
  never computed;
- deadlines: a request whose budget ran out before compute starts is answered LATE, not computed;
- batching: up to ``max_batch`` requests across sessions per model call; with
  ``max_queue_delay_s`` 0 the worker takes whatever is waiting at once, so a single robot gets
  batch-1 latency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from inference_server.backends import Backend, Batch, create_backend
from inference_server.error_log import ErrorLog
from inference_server.validation import Observation, check_actions, shown
from vla.v1 import policy_pb2 as pb

if TYPE_CHECKING:
    from inference_server.bundle import Bundle
    from inference_server.metrics import ServerMetrics

__all__ = ["ModelWorker", "Pending", "Result"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Result:
    """The outcome of one request; ``actions`` only when ``status`` is OK."""

    status: int
    message: str = ""
    actions: np.ndarray | None = None
    queue_s: float = 0.0
    stack_s: float = 0.0
    inference_s: float = 0.0
    postprocess_s: float = 0.0
    batch_size: int = 0


@dataclass(eq=False)
class Pending:
    """A checked request waiting for the worker; ``future`` lives on ``loop``.

    ``stream`` numbers the Predict stream it came on (0: not from a stream), so that a request
    superseded by another stream's can say so.
    """

    session: str
    request_id: int
    observation: Observation
    enqueued: float
    deadline: float | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Result] = field(repr=False)
    stream: int = 0


class ModelWorker:
    """Owns the backend on its own thread. ``start()``, then ``submit()`` from the event loop."""

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
        self._pending: dict[str, Pending] = {}  # insertion order = arrival order
        self._calls: list[tuple[Callable[[Backend], Any], concurrent.futures.Future[Any]]] = []
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
                _resolve(pending, Result(pb.PredictResponse.LATE, "server is shutting down"))
                return
            old = self._pending.pop(pending.session, None)
            self._pending[pending.session] = pending
            self._cond.notify()
        if old is not None:
            _resolve(old, Result(pb.PredictResponse.LATE, _superseded(old, pending)))

    @property
    def waiting(self) -> int:
        """Requests queued, not yet computing: at most one per session (latest wins)."""
        with self._cond:
            return len(self._pending)

    def discard(self, pending: Pending) -> None:
        """Forget ``pending`` if it still waits (its stream has gone away)."""
        with self._cond:
            if self._pending.get(pending.session) is pending:
                del self._pending[pending.session]

    def stop(self, *, drain: bool = True) -> None:
        """Stop taking work. ``drain``: compute what is waiting first; else answer it LATE."""
        with self._cond:
            self._stopping = True
            dropped = [] if drain else list(self._pending.values())
            if not drain:
                self._pending.clear()
            self._cond.notify_all()
        for p in dropped:
            _resolve(p, Result(pb.PredictResponse.LATE, "server is shutting down"))

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
                dropped = list(self._pending.values())
                self._pending.clear()
            for p in dropped:
                _resolve(p, Result(pb.PredictResponse.ERROR, "model failed to load"))
            return
        self._ready.set_result(None)
        try:
            while True:
                job = self._next_job()
                if job is None:
                    break
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

    def _next_job(
        self,
    ) -> tuple[Callable[[Backend], Any], concurrent.futures.Future[Any]] | list[Pending] | None:
        with self._cond:
            while True:
                if self._calls:
                    return self._calls.pop(0)
                if self._pending:
                    if self._max_delay > 0 and not self._stopping:
                        self._wait_for_fuller_batch()
                        if not self._pending:
                            continue
                    return self._take()
                if self._stopping:
                    return None
                self._cond.wait()

    def _wait_for_fuller_batch(self) -> None:
        oldest = next(iter(self._pending.values()))
        until = oldest.enqueued + self._max_delay
        while (
            self._pending and len(self._pending) < self._max_batch and not self._stopping and not self._calls
        ):
            remaining = until - self._clock()
            if remaining <= 0:
                break
            self._cond.wait(remaining)

    def _take(self) -> list[Pending]:
        now = self._clock()
        batch: list[Pending] = []
        late: list[Pending] = []
        for session in list(self._pending):
            p = self._pending[session]
            if p.deadline is not None and now >= p.deadline:
                late.append(self._pending.pop(session))
            elif len(batch) < self._max_batch:
                batch.append(self._pending.pop(session))
        for p in late:
            waited = (now - p.enqueued) * 1e3
            _resolve(
                p,
                Result(
                    pb.PredictResponse.LATE,
                    f"timeout ran out before compute started (queued {waited:.1f} ms)",
                    queue_s=now - p.enqueued,
                ),
            )
        if self._metrics is not None:
            for p in batch:
                self._metrics.queue_seconds.observe(now - p.enqueued)
        return batch

    def _run_batch(self, backend: Backend, batch: list[Pending]) -> None:
        if not batch:
            return
        bundle = self._bundle
        t0 = self._clock()
        queue = [t0 - p.enqueued for p in batch]
        obs = [p.observation for p in batch]
        inputs = Batch(
            images={c.name: np.stack([o.images[c.name] for o in obs]) for c in bundle.cameras},
            state=bundle.normalizer.normalize_state(
                np.stack([o.state for o in obs]).reshape(len(obs), bundle.state_dim)
            ),
            instruction=[o.instruction for o in obs],
            # In the space the model answers in, so a policy can continue its own last chunk.
            prev_actions=[
                None if o.prev_actions is None else bundle.normalizer.normalize_actions(o.prev_actions)
                for o in obs
            ],
            inference_delay_steps=[o.inference_delay_steps for o in obs],
        )
        t1 = self._clock()
        try:
            raw = np.asarray(backend.predict(inputs))
            error = None
        except Exception as exc:
            self._errors.exception(exc, "The model failed on a batch of %d", len(batch))
            raw, error = None, f"model failed: {type(exc).__name__}: {exc}"
        t2 = self._clock()
        n = len(batch)
        if self._metrics is not None:
            self._metrics.inference_seconds.observe(t2 - t1)
            self._metrics.batch_size.observe(n)
        expected = (n, bundle.chunk_length, bundle.action_dim)
        if raw is not None and error is None:
            if raw.dtype.kind != "f":
                error = f"model returned actions of dtype {raw.dtype}, expected float"
            elif raw.shape != expected:
                error = f"model returned actions of shape {list(raw.shape)} for a batch of {n}, expected {list(expected)}"
        actions = None
        if raw is not None and error is None:
            actions = bundle.normalizer.unnormalize_actions(raw.astype(np.float32, copy=False))
        for i, p in enumerate(batch):
            row = None if actions is None else np.ascontiguousarray(actions[i])
            problem = error or (check_actions(row, bundle) if row is not None else "model returned nothing")
            t3 = self._clock()
            status = pb.PredictResponse.ERROR if problem else pb.PredictResponse.OK
            result = Result(
                status,
                problem or "",
                actions=None if problem else row,
                queue_s=queue[i],
                stack_s=t1 - t0,
                inference_s=t2 - t1,
                postprocess_s=t3 - t2,
                batch_size=n,
            )
            _resolve(p, result)


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

"""The model worker without gRPC: a fake backend, the real worker thread.

The queue's own rules (latest wins, deadlines, fair turns) are in ``test_request_queue.py``.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from inference_server import load_bundle
from inference_server.backends import Batch
from inference_server.result import Result, Status
from inference_server.validation import Observation
from inference_server.worker import ModelWorker, Pending
from tests.utils import poll_until, write_python_bundle


class RecordingBackend:
    """Echoes ``state[:, 0]``; records batch sizes and the thread it ran on; can be held."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()
        self.hold = threading.Event()
        self.hold.set()
        self.closed = False

    def predict(self, batch: Batch) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.hold.wait(10)
        self.sizes.append(batch.size)
        return np.broadcast_to(batch.state[:, :1, None], (batch.size, 16, 7)).astype(np.float32)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def bundle(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_bundle(
        write_python_bundle(tmp_path, "tests.inference_server.policies:EchoPolicy", cameras={})
    )


def pending(
    loop: asyncio.AbstractEventLoop, session: str, value: float, *, deadline: float | None = None
) -> Pending:
    obs = Observation(
        images={},
        state=np.full(8, value, np.float32),
        instruction="",
        prev_actions=None,
        inference_delay_steps=None,
    )
    return Pending(
        session=session,
        request_id=int(value),
        observation=obs,
        enqueued=0.0,
        deadline=deadline,
        loop=loop,
        future=loop.create_future(),
    )


async def start(bundle, backend: RecordingBackend, **kw) -> ModelWorker:  # type: ignore[no-untyped-def]
    kw.setdefault("max_batch", 4)
    kw.setdefault("max_queue_delay_s", 0.0)
    worker = ModelWorker(bundle, backend_factory=lambda _: backend, **kw)
    await asyncio.wrap_future(worker.start())
    return worker


async def results(*items: Pending) -> list[Result]:
    async with asyncio.timeout(10):
        return list(await asyncio.gather(*(p.future for p in items)))


async def test_model_runs_only_on_the_worker_thread_and_closes_there(bundle) -> None:  # type: ignore[no-untyped-def]
    backend = RecordingBackend()
    worker = await start(bundle, backend)
    loop = asyncio.get_running_loop()
    items = [pending(loop, f"s{i}", i) for i in range(3)]
    for p in items:
        worker.submit(p)
    out = await results(*items)
    worker.stop()
    assert await asyncio.to_thread(worker.join, 5)
    assert [r.status for r in out] == [Status.OK] * 3
    assert [float(r.actions[0, 0]) for r in out] == [0.0, 1.0, 2.0]
    assert backend.threads == {"vla-model-worker"} and backend.closed


async def test_max_queue_delay_waits_to_fill_a_batch(bundle) -> None:  # type: ignore[no-untyped-def]
    backend = RecordingBackend()
    worker = await start(bundle, backend, max_batch=3, max_queue_delay_s=30.0)  # long: only a full batch goes
    loop = asyncio.get_running_loop()
    items = [pending(loop, f"s{i}", i) for i in range(3)]
    for p in items:
        worker.submit(p)
    await results(*items)
    worker.stop()
    await asyncio.to_thread(worker.join, 5)
    assert backend.sizes == [3]


async def test_deadline_passed_before_compute_is_late(bundle) -> None:  # type: ignore[no-untyped-def]
    backend = RecordingBackend()
    backend.hold.clear()
    clock = [0.0]
    worker = await start(bundle, backend, clock=lambda: clock[0])
    loop = asyncio.get_running_loop()
    first = pending(loop, "a", 1)
    worker.submit(first)
    await poll_until(lambda: backend.threads, timeout=5)  # the worker has taken `first`, is in predict
    late = pending(loop, "b", 2, deadline=0.5)
    worker.submit(late)
    clock[0] = 1.0  # the budget of `late` has run out
    backend.hold.set()
    out = await results(first, late)
    worker.stop()
    await asyncio.to_thread(worker.join, 5)
    assert [r.status for r in out] == [Status.OK, Status.LATE]
    assert backend.sizes == [1]  # `late` was never computed


async def test_stop_without_drain_answers_waiting_requests_late(bundle) -> None:  # type: ignore[no-untyped-def]
    backend = RecordingBackend()
    backend.hold.clear()
    worker = await start(bundle, backend)
    loop = asyncio.get_running_loop()
    first, waiting = pending(loop, "a", 1), pending(loop, "b", 2)
    worker.submit(first)
    await poll_until(lambda: backend.threads, timeout=5)
    worker.submit(waiting)
    worker.stop(drain=False)
    backend.hold.set()
    out = await results(first, waiting)
    await asyncio.to_thread(worker.join, 5)
    assert [r.status for r in out] == [Status.OK, Status.LATE]
    assert out[1].message == "server is shutting down"


async def test_a_model_that_fails_to_load_reports_it(bundle) -> None:  # type: ignore[no-untyped-def]
    def broken(_):  # type: ignore[no-untyped-def]
        raise RuntimeError("no weights")

    worker = ModelWorker(bundle, max_batch=1, max_queue_delay_s=0, backend_factory=broken)
    with pytest.raises(RuntimeError, match="no weights"):
        await asyncio.wrap_future(worker.start())

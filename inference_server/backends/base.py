"""What every backend implements: build from a bundle, ``predict`` a batch, ``close``.

A backend is created, used and closed on the model worker thread only, so it may keep
thread-affine state (a CUDA stream, an execution context) without locks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["Backend", "Batch", "cpu_threads"]


@dataclass(frozen=True, eq=False)
class Batch:
    """B requests stacked: what a backend gets.

    ``images`` maps camera name to uint8 ``[B, H, W, 3]`` RGB; ``state`` is float32 ``[B, S]``,
    already normalised; ``prev_actions`` are float32 ``[n, A]`` per request (or None), the actions
    the agent sent, normalised like the model's outputs (both identity without a manifest
    ``[normalization.actions]``).
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    instruction: list[str]
    prev_actions: list[np.ndarray | None]
    inference_delay_steps: list[int | None]

    @property
    def size(self) -> int:
        return int(self.state.shape[0])


def cpu_threads(bundle: Bundle) -> int:
    """Threads for the model's CPU kernels: ``bundle.cpu_threads``, or when it is 0 every CPU this
    process may run on (its affinity) but one, and at least one.

    The one left is the event loop's: it reads, checks and answers every stream while the model
    runs. A kernel team as large as the machine waits at each barrier for a thread the event
    loop (or anything else) has preempted; on the 2-core machine of ``bench/batching.py``, next
    to one busy process, batch 1 of the example CNN took 5.8 ms at p50 on 2 threads and 2.4 ms
    on 1, and the server spent 4x the CPU time per answer spinning.
    """
    if bundle.cpu_threads:
        return bundle.cpu_threads
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    return max(1, available - 1)


class Backend(Protocol):
    """A loaded model. Built as ``Backend(bundle)`` on the worker thread.

    The backends in :data:`~inference_server.backends.BACKENDS` subclass it and mark ``predict``
    and ``close`` ``@override``, so mypy checks their signatures against these.
    """

    def __init__(self, bundle: Bundle) -> None:
        """Load ``bundle``'s model; raises :class:`~inference_server.errors.BundleError` or
        :class:`~inference_server.errors.BackendError` naming what is wrong."""
        ...

    def predict(self, batch: Batch) -> np.ndarray:
        """Return normalised actions ``[B, chunk_length, action_dim]``; any float dtype."""
        ...

    def close(self) -> None:
        """Free the model (GPU memory, sessions). Called once, on the worker thread."""
        ...


def dummy_batch(bundle: Bundle, size: int = 1) -> Batch:
    """A batch of zeros shaped like real input: warm-up and ``bench`` use it."""
    rng = np.random.default_rng(0)
    return Batch(
        images={
            c.name: rng.integers(0, 256, (size, c.height, c.width, 3), dtype=np.uint8) for c in bundle.cameras
        },
        state=np.zeros((size, bundle.state_dim), np.float32),
        instruction=["warm up"] * size,
        prev_actions=[None] * size,
        inference_delay_steps=[None] * size,
    )

"""What every backend implements: build from a bundle, ``predict`` a batch, ``close``.

A backend is created, used and closed on the model worker thread only, so it may keep
thread-affine state (a CUDA stream, an execution context) without locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["Backend", "Batch"]


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

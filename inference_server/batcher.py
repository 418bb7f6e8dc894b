"""The batch function: stack checked requests, run the model once, check and un-normalise its output.

One call of :func:`run_batch` is one model call, on the worker thread; it knows nothing of queues,
threads or the wire. Normalisation happens here on both sides of the model (``state`` and
``prev_actions`` in, actions out), so a backend only ever sees the model's own space, and the
output passes the one output check (:func:`~inference_server.validation.check_output`) before
anything reaches a robot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from inference_server.backends import Backend, Batch
from inference_server.result import Result, Status
from inference_server.validation import Observation, check_actions, check_output

if TYPE_CHECKING:
    from inference_server.bundle import Bundle
    from inference_server.error_log import ErrorLog

__all__ = ["run_batch", "stack"]


def stack(bundle: Bundle, observations: Sequence[Observation]) -> Batch:
    """The backend's input for ``observations``: images ``[B, H, W, 3]`` per camera, ``state``
    ``[B, state_dim]`` normalised, ``prev_actions`` normalised like the model's outputs.

    Every image array is writable (``torch.from_numpy`` refuses read-only ones): a batch of one
    views a decoded JPEG/PNG image (``[None]``) instead of copying it, and copies only a RAW_RGB8
    image, which is a read-only view of the request's bytes (``np.stack`` cost about 30 us per
    480x640 image at batch 1).
    """
    return Batch(
        images={c.name: _stack([o.images[c.name] for o in observations]) for c in bundle.cameras},
        state=bundle.normalizer.normalize_state(
            np.stack([o.state for o in observations]).reshape(len(observations), bundle.state_dim)
        ),
        instruction=[o.instruction for o in observations],
        # In the space the model answers in, so a policy can continue its own last chunk.
        prev_actions=[
            None if o.prev_actions is None else bundle.normalizer.normalize_actions(o.prev_actions)
            for o in observations
        ],
        inference_delay_steps=[o.inference_delay_steps for o in observations],
    )


def _stack(images: list[np.ndarray]) -> np.ndarray:
    """``[B, H, W, 3]`` from ``B`` images of ``[H, W, 3]``, writable: a view of a lone writable
    image, else a copy."""
    if len(images) == 1 and images[0].flags.writeable:
        return images[0][None]
    return np.stack(images)


def run_batch(
    backend: Backend,
    bundle: Bundle,
    observations: Sequence[Observation],
    *,
    clock: Callable[[], float],
    errors: ErrorLog,
) -> list[Result]:
    """Run ``observations`` through ``backend`` as one batch; one :class:`Result` per observation.

    OK with float32 ``[chunk_length, action_dim]`` actions in physical units, or ERROR naming why:
    the model raised (logged through ``errors``, rate-limited), its output failed
    :func:`check_output` (every request of the batch), or a request's row holds a non-finite
    number (that request only). Never raises for the model's faults. ``queue_s`` is left 0: the
    caller knows how long each request waited. Times are read from ``clock`` (seconds).
    """
    n = len(observations)
    t0 = clock()
    inputs = stack(bundle, observations)
    t1 = clock()
    error: str | None = None
    raw: np.ndarray | None = None
    try:
        raw = np.asarray(backend.predict(inputs))
    except Exception as exc:
        errors.exception(exc, "The model failed on a batch of %d", n)
        error = f"model failed: {type(exc).__name__}: {exc}"
    t2 = clock()
    actions: np.ndarray | None = None
    if raw is not None:
        problem = check_output(raw, bundle, n)
        if problem is None:
            actions = bundle.normalizer.unnormalize_actions(raw.astype(np.float32, copy=False))
        else:
            error = problem.message
    results = []
    for i in range(n):
        row = None if actions is None else np.ascontiguousarray(actions[i])
        row_error = error if row is None else check_actions(row)
        results.append(
            Result(
                Status.ERROR if row_error else Status.OK,
                row_error or "",
                actions=None if row_error else row,
                stack_s=t1 - t0,
                inference_s=t2 - t1,
                postprocess_s=clock() - t2,
                batch_size=n,
            )
        )
    return results

"""What becomes of one request inside the server: a :class:`Status` and a :class:`Result`.

The queue, the worker and the batch function speak these, never the wire's enum: the service maps
a :class:`Status` to ``vla.v1.PredictResponse.Status`` in one table, when it writes the answer.
The status values double as the ``status`` label of ``vla_server_requests_total``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

__all__ = ["Result", "Status"]


class Status(enum.Enum):
    """How a request ended; the value is its metric label."""

    OK = "ok"  #: computed; actions attached
    LATE = "late"  #: not computed: superseded, out of time, or the server is stopping
    INVALID = "invalid"  #: not computed: the request does not fit the spec or a limit
    ERROR = "error"  #: the model failed or returned something unusable


@dataclass(frozen=True)
class Result:
    """The outcome of one request; ``actions`` (float32 ``[chunk_length, action_dim]``, physical
    units) only when ``status`` is OK. Times are seconds: ``queue_s`` waiting for the worker,
    ``stack_s`` building the batch, ``inference_s`` in the model, ``postprocess_s`` un-normalising
    and checking; ``batch_size`` is how many requests shared the model call (0: not computed).
    """

    status: Status
    message: str = ""
    actions: np.ndarray | None = None
    queue_s: float = 0.0
    stack_s: float = 0.0
    inference_s: float = 0.0
    postprocess_s: float = 0.0
    batch_size: int = 0

"""Rogue inference servers for the agent's end-to-end tests: a real ``grpc.aio`` server on
loopback whose every answer the test chooses (still chunks, NaN, wrong shapes, refusals, raw
bytes), so the agent's distrust of the server is tested over the wire."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import numpy as np

from tests.e2e._agent_helpers import STATE_NAMES
from vla.codec import to_tensor
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc as pb_grpc

#: The rogue policy's chunk: ``H`` actions ``DT`` seconds apart.
H, DT = 8, 0.05


def rogue_spec(**overrides: Any) -> pb.PolicySpec:
    """The spec a rogue server announces: ``ee_delta``, 7 actions (gripper last), chunks of
    :data:`H` at :data:`DT`, one 64x48 camera ``front``, the agents' :data:`STATE_NAMES`; any
    field replaced by ``overrides``."""
    fields: dict[str, Any] = {
        "name": "rogue",
        "version": "0",
        "backend": "python",
        "cameras": [pb.CameraSpec(name="front", height=48, width=64, encodings=[pb.Image.RAW_RGB8])],
        "state_dim": len(STATE_NAMES),
        "state_names": STATE_NAMES,
        "action_dim": 7,
        "action_space": "ee_delta",
        "chunk_length": H,
        "dt_s": DT,
    }
    return pb.PolicySpec(**{**fields, **overrides})


def still_actions(h: int = H, action_dim: int = 7) -> np.ndarray:
    """A chunk that stays where the arm is (zero deltas), gripper open: ``[h, action_dim]`` float32."""
    actions = np.zeros((h, action_dim), dtype=np.float32)
    actions[:, -1] = 1.0
    return actions


def nan_chunk() -> np.ndarray:
    """A still chunk but for one NaN (step 3, y)."""
    bad = np.zeros((H, 7), dtype=np.float32)
    bad[3, 1] = np.nan
    return bad


def ok_answer(
    request: pb.PredictRequest, actions: np.ndarray, capture_offset_s: float = 0.0
) -> pb.PredictResponse:
    """An OK answer to ``request`` with ``actions`` at :data:`DT`, echoing its capture time
    shifted by ``capture_offset_s`` (a lie, when not 0)."""
    return pb.PredictResponse(
        request_id=request.request_id,
        status=pb.PredictResponse.OK,
        actions=to_tensor(actions),
        dt_s=DT,
        capture_time_s=request.capture_time_s + capture_offset_s,
    )


class RogueServicer(pb_grpc.PolicyServiceServicer):
    """Serves :func:`rogue_spec` (with ``spec_overrides``); answers the first ``good`` requests of
    each stream with a still chunk, then OK with ``bad``. ``arrivals``: each request's
    ``time.monotonic()``; ``answered``: how many were answered. Subclasses choose the answer in
    :meth:`answer`."""

    def __init__(self, bad: np.ndarray | None = None, good: int = 3, capture_offset_s: float = 0.0) -> None:
        self.bad = still_actions() if bad is None else bad
        self.good = good
        self.capture_offset_s = capture_offset_s  # lie about the capture time echoed back
        self.answered = 0
        self.arrivals: list[float] = []
        self.spec_overrides: dict[str, object] = {}

    async def GetPolicySpec(
        self, request: pb.GetPolicySpecRequest, context: grpc.aio.ServicerContext
    ) -> pb.PolicySpec:
        return rogue_spec(**self.spec_overrides)

    def answer(self, request: pb.PredictRequest) -> pb.PredictResponse:
        """The answer to the request after ``self.answered`` others."""
        actions = still_actions() if self.answered < self.good else self.bad
        return ok_answer(request, actions, self.capture_offset_s)

    async def Predict(self, request_iterator, context):  # type: ignore[no-untyped-def]
        async for request in request_iterator:
            self.arrivals.append(time.monotonic())
            response = self.answer(request)
            self.answered += 1
            yield response


@contextlib.asynccontextmanager
async def loopback_server(register: Callable[[grpc.aio.Server], None], port: int = 0) -> AsyncIterator[int]:
    """A ``grpc.aio`` server on 127.0.0.1:``port`` (0: any free port) with the services
    ``register`` adds; yields the bound port, stopped on exit."""
    server = grpc.aio.server()
    register(server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


def rogue_server(
    servicer: pb_grpc.PolicyServiceServicer, port: int = 0
) -> contextlib.AbstractAsyncContextManager[int]:
    """``servicer`` served on loopback (see :func:`loopback_server`)."""
    return loopback_server(lambda server: pb_grpc.add_PolicyServiceServicer_to_server(servicer, server), port)

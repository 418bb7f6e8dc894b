"""Bytes from the server are never trusted (issue 10, kind 2), end to end: a server answering with
a tensor whose shape overflows int64 (``[2**32, 2**32]``, empty data), or with bytes that do not
parse, used to crash the agent's stream task (the robot stopped). Now each is a rejected chunk:
the agent holds with ``invalid_chunk`` and keeps running."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest

from robot_agent.agent import Agent
from tests.e2e._agent_helpers import agent_config, read_jsonl, running
from tests.e2e._rogue_server import DT, H, loopback_server, rogue_spec, still_actions
from tests.utils import poll_until
from vla.codec import peek_varint, to_tensor
from vla.v1 import policy_pb2 as pb

SPEC = rogue_spec()


def _still() -> pb.Tensor:
    return to_tensor(still_actions())


def _ok(request_id: int, actions: pb.Tensor, dt_s: float = DT) -> bytes:
    return pb.PredictResponse(
        request_id=request_id, status=pb.PredictResponse.OK, actions=actions, dt_s=dt_s
    ).SerializeToString()


def _overflowing_shape(request_id: int) -> bytes:
    return _ok(request_id, pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[2**32, 2**32]))


def _bad_utf8(request_id: int) -> bytes:
    return _ok(request_id, _still()) + b"\x1a\x02\xff\xfe"  # message field: invalid UTF-8


def _integer_actions(request_id: int) -> bytes:
    return _ok(request_id, to_tensor(np.zeros((H, 7), np.int64)))


def _nan_dt(request_id: int) -> bytes:
    return _ok(request_id, _still(), dt_s=math.nan)


@contextlib.asynccontextmanager
async def rogue_server(bad: Callable[[int], bytes], good: int = 3) -> AsyncIterator[int]:
    """Serves :data:`SPEC`; answers each stream's first ``good`` requests with a still chunk, then
    with ``bad(request_id)`` as raw bytes."""

    async def get_spec(request: bytes, context: object) -> pb.PolicySpec:
        return SPEC

    async def predict(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        answered = 0
        async for data in requests:
            request_id = peek_varint(data, 2) or 0
            yield _ok(request_id, _still()) if answered < good else bad(request_id)
            answered += 1

    handlers = {
        "GetPolicySpec": grpc.unary_unary_rpc_method_handler(
            get_spec, request_deserializer=None, response_serializer=pb.PolicySpec.SerializeToString
        ),
        "Predict": grpc.stream_stream_rpc_method_handler(
            predict, request_deserializer=None, response_serializer=None
        ),
    }
    generic = grpc.method_handlers_generic_handler("vla.v1.PolicyService", handlers)
    async with loopback_server(lambda server: server.add_generic_rpc_handlers((generic,))) as port:
        yield port


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        (
            _overflowing_shape,
            "actions shape [4294967296, 4294967296], spec says [8, 7]",
        ),  # the example
        (_bad_utf8, "response does not parse"),  # not a PredictResponse at all
        (_integer_actions, "actions dtype INT64, expected FLOAT32"),
        (_nan_dt, "dt_s is nan"),
    ],
)
async def test_a_malformed_response_is_held_and_the_agent_keeps_running(
    tmp_path: Path, bad: Callable[[int], bytes], detail: str
) -> None:
    record = tmp_path / "episode"
    async with rogue_server(bad) as port:
        agent = Agent(agent_config(port, **{"record.dir": str(record)}))
        async with running(agent) as task:
            await poll_until(lambda: agent.status().chunks >= 1, timeout=10)
            # The good chunks run out; nothing replaces them: the arm holds, naming why.
            await poll_until(
                lambda: agent.status().holding and agent.status().hold_reason == "invalid_chunk", timeout=10
            )
            rejected = agent.status().rejected_chunks["invalid_chunk"]
            await poll_until(lambda: agent.status().rejected_chunks["invalid_chunk"] > rejected, timeout=10)
            assert not task.done() and not agent.status().estopped  # still running, still asking
    assert agent.summary["estops"] == 0
    rejected = [e for e in read_jsonl(record / "events.jsonl") if e["event"] == "chunk_rejected"]
    assert rejected and rejected[0]["reason"] == "invalid_chunk"
    assert rejected[0]["detail"].startswith(detail), rejected[0]["detail"]

"""Bytes from the server are never trusted (issue 10, kind 2): a malformed spec is refused at
connect, and any malformed response becomes a chunk with a problem (the agent holds), never an
exception out of ``receive()``."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings

from robot_agent.errors import SpecMismatch
from robot_agent.policy_client import CHUNK_PROBLEM_KINDS, Chunk, ChunkProblem, PolicyClient, check_spec
from tests.wire_strategies import predict_responses, raw_messages
from vla.codec import to_tensor
from vla.v1 import policy_pb2 as pb

H, A = 4, 7
GOOD_SPEC = pb.PolicySpec(
    name="p",
    cameras=[pb.CameraSpec(name="front", height=8, width=8, encodings=[pb.Image.RAW_RGB8])],
    state_dim=8,
    action_dim=A,
    chunk_length=H,
    dt_s=0.1,
)


def client_with_spec() -> PolicyClient:
    client = PolicyClient("127.0.0.1:1")
    client.spec = GOOD_SPEC
    return client


class _Call:
    """Stands in for the Predict call: ``read()`` gives the bytes the test chose."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self) -> bytes:
        return self.data


def _check_chunk(chunk: Chunk) -> None:
    """What the agent may rely on, whatever the server sent."""
    assert isinstance(chunk, Chunk)
    assert len(chunk.message) <= 512 and (chunk.problem is None or len(str(chunk.problem)) <= 512)
    if chunk.actions is not None:
        assert chunk.status == "OK" and chunk.problem is None
        assert chunk.actions.dtype == np.float64 and chunk.actions.ndim == 2
        assert 1 <= chunk.actions.shape[0] <= H and chunk.actions.shape[1] == A
        assert np.isfinite(chunk.actions).all()
        assert chunk.dt_s == pytest.approx(0.1, rel=1e-3)
        event("accepted")
    elif chunk.status == "OK":
        assert isinstance(chunk.problem, ChunkProblem)
        assert chunk.problem.kind in CHUNK_PROBLEM_KINDS, chunk.problem
        event(chunk.problem.kind)
    else:
        event("not OK")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(predict_responses(chunk_length=H, action_dim=A))
async def test_any_response_becomes_a_checked_chunk(response: pb.PredictResponse) -> None:
    client = client_with_spec()
    client._call = _Call(response.SerializeToString())  # type: ignore[assignment]
    _check_chunk(await client.receive())


@settings(max_examples=300, deadline=None)
@given(raw_messages(predict_responses(chunk_length=H, action_dim=A)))
async def test_any_bytes_become_a_chunk(data: bytes) -> None:
    client = client_with_spec()
    client._call = _Call(data)  # type: ignore[assignment]
    _check_chunk(await client.receive())


def _ok(actions: pb.Tensor, dt_s: float = 0.1, **kw: object) -> bytes:
    return pb.PredictResponse(
        request_id=3, status=pb.PredictResponse.OK, actions=actions, dt_s=dt_s, **kw
    ).SerializeToString()  # type: ignore[arg-type]


GOOD_ACTIONS = to_tensor(np.zeros((H, A), np.float32))


@pytest.mark.parametrize(
    ("data", "status", "problem"),
    [
        # the example on this side: 2**64 elements wrap to 0 in int64
        (_ok(pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[2**32, 2**32])), "OK",
         "invalid_chunk: actions shape [4294967296, 4294967296], spec says [4, 7]"),
        (_ok(pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[0] * 1000)), "OK", "invalid_chunk: actions shape [0, 0, 0, 0, 0, 0, 0, 0, '...']"),
        (_ok(to_tensor(np.zeros((H, A), np.int64))), "OK", "invalid_chunk: actions dtype INT64, expected FLOAT32"),
        (_ok(pb.Tensor(dtype=77, shape=[H, A])), "OK", "invalid_chunk: actions dtype 77"),  # unknown enum value
        (_ok(pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[H, A], data=b"\0" * 3)), "OK", "invalid_chunk: actions: 3 bytes"),
        (_ok(GOOD_ACTIONS, dt_s=math.nan), "OK", "invalid_chunk: dt_s is nan"),
        (_ok(GOOD_ACTIONS, dt_s=-0.1), "OK", "invalid_chunk: dt_s is -0.1"),
        (_ok(GOOD_ACTIONS, dt_s=0.0), "OK", "invalid_chunk: dt_s is 0.0"),
        (_ok(GOOD_ACTIONS, dt_s=math.inf), "OK", "invalid_chunk: dt_s is inf"),
        (_ok(to_tensor(np.full((H, A), np.inf, np.float32))), "OK", "non_finite: actions[0, 0] is inf"),
        # bytes that do not parse (bad UTF-8 in the message): still matched to request 3 and held
        (_ok(GOOD_ACTIONS) + b"\x1a\x02\xff\xfe", "OK", "invalid_chunk: response does not parse"),
        # an unknown status is not OK: no actions, whatever the tensor
        (pb.PredictResponse(request_id=3, status=9, actions=GOOD_ACTIONS, dt_s=0.1).SerializeToString(), "9", None),  # type: ignore[arg-type]
    ],
)  # fmt: skip
async def test_malformed_response_is_a_chunk_with_a_problem(
    data: bytes, status: str, problem: str | None
) -> None:
    client = client_with_spec()
    client._call = _Call(data)  # type: ignore[assignment]
    chunk = await client.receive()
    assert (chunk.request_id, chunk.status, chunk.actions) == (3, status, None)
    if problem is not None:
        assert chunk.problem is not None and str(chunk.problem).startswith(problem), chunk.problem


async def test_a_huge_message_is_cut_before_it_reaches_the_logs() -> None:
    client = client_with_spec()
    client._call = _Call(
        pb.PredictResponse(
            request_id=3, status=pb.PredictResponse.ERROR, message="m" * 10**6
        ).SerializeToString()
    )  # type: ignore[assignment]
    chunk = await client.receive()
    assert (chunk.status, len(chunk.message)) == ("ERROR", 512)


# --- the spec is bytes from the peer too ---------------------------------------------------------


def _spec(**changes: object) -> pb.PolicySpec:
    spec = pb.PolicySpec()
    spec.CopyFrom(GOOD_SPEC)
    for key, value in changes.items():
        if isinstance(value, list):  # a repeated field
            del getattr(spec, key)[:]
            getattr(spec, key).extend(value)
        else:
            setattr(spec, key, value)
    return spec


def _cam(name: str = "front", h: int = 8, w: int = 8) -> pb.CameraSpec:
    return pb.CameraSpec(name=name, height=h, width=w)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # a camera the agent would resize every frame to (10.8 GB per frame)
        (_spec(cameras=[_cam(h=60000, w=60000)]), r"camera 'front' is 60000x60000 .* expected 1 to 67108864 pixels"),
        (_spec(cameras=[_cam(h=0)]), r"camera 'front' is 8x0"),
        (_spec(cameras=[_cam(), _cam()]), r"camera 'front' is listed twice"),
        (_spec(cameras=[_cam(f"c{i}") for i in range(17)]), r"17 cameras, at most 16"),
        (_spec(cameras=[_cam("x" * 300)]), r"camera name 'xxxx.* is empty, too long or not printable"),
        (_spec(cameras=[_cam("")]), r"camera name '' is empty"),
        (_spec(dt_s=math.nan), r"dt_s is nan"),  # NaN passes a `dt_s <= 0` check
        (_spec(dt_s=-1.0), r"dt_s is -1.0"),
        (_spec(dt_s=1e9), r"dt_s is 1000000000.0"),
        (_spec(chunk_length=0), r"chunk_length is 0"),
        (_spec(chunk_length=2**32 - 1), r"chunk_length is 4294967295"),
        (_spec(action_dim=0), r"action_dim is 0"),
        (_spec(action_dim=10**6), r"action_dim is 1000000"),
        (_spec(name="n" * 10**5), r"name is 100000 characters long, at most 256"),
        (_spec(state_dim=2**32 - 1), r"state_dim is 4294967295 with 0 state_names, expected at most 64"),
        (_spec(action_names=["a"] * 1000), r"1000 action_names, at most 64"),
    ],
)  # fmt: skip
def test_a_malformed_spec_is_refused(spec: pb.PolicySpec, expected: str) -> None:
    with pytest.raises(SpecMismatch, match=rf"^policy at here: {expected}"):
        check_spec(spec, address="here")


def test_the_good_spec_passes() -> None:
    check_spec(GOOD_SPEC, address="here")


# --- end to end against a rogue server ----------------------------------------------------------


@contextlib.asynccontextmanager
async def rogue_server(spec: pb.PolicySpec, answers: list[bytes]) -> AsyncIterator[str]:
    """A gRPC server that serves ``spec`` and answers each Predict request with the next raw bytes."""

    async def get_spec(request: bytes, context: object) -> pb.PolicySpec:
        return spec

    async def predict(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        pending = iter(answers)
        async for _ in requests:
            yield next(pending)

    handlers = {
        "GetPolicySpec": grpc.unary_unary_rpc_method_handler(
            get_spec, request_deserializer=None, response_serializer=pb.PolicySpec.SerializeToString
        ),
        "Predict": grpc.stream_stream_rpc_method_handler(
            predict, request_deserializer=None, response_serializer=None
        ),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("vla.v1.PolicyService", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_a_rogue_server_gets_held_chunks_not_a_crash() -> None:
    answers = [
        _ok(pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[2**32, 2**32])),
        b"\xff\xfe\xfd",
        _ok(GOOD_ACTIONS),
    ]
    frame = __import__("robot_agent.cameras.base", fromlist=["Frame"]).Frame(
        rgb=np.zeros((8, 8, 3), np.uint8), time_s=0.0
    )
    async with rogue_server(GOOD_SPEC, answers) as address:
        client = PolicyClient(address)
        await client.connect()
        chunks = []
        for _ in answers:
            request = client.build_request({"front": frame}, np.zeros(8, np.float32), "go", 1.0)
            client.stamp(request)
            await client.send(request)
            chunks.append(await asyncio.wait_for(client.receive(), 10))
        await client.close()
    assert [c.problem.kind if c.problem else None for c in chunks] == [
        "invalid_chunk",
        "invalid_chunk",
        None,
    ]
    assert chunks[2].actions is not None and chunks[2].actions.shape == (H, A)


async def test_connect_refuses_a_malformed_spec() -> None:
    async with rogue_server(_spec(dt_s=math.nan), []) as address:
        client = PolicyClient(address)
        with pytest.raises(SpecMismatch, match=rf"^policy at {address}: dt_s is nan"):
            await client.connect()
    assert client._channel is None and client._call is None  # nothing left open

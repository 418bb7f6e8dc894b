from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from robot_agent.cameras.base import Frame
from robot_agent.errors import NotAPolicyServer, ServerUnavailable
from robot_agent.policy_client import (
    CHUNK_PROBLEM_KINDS,
    Backoff,
    Chunk,
    ChunkProblem,
    DelayedClient,
    PolicyClient,
    encode_frame,
)
from robot_agent.reasons import HOLD_REASONS
from tests.plain_http import plain_http_server
from vla.codec import decode_image, from_tensor, to_tensor
from vla.v1 import policy_pb2 as pb


def frame(h: int = 480, w: int = 640) -> Frame:
    rgb = np.zeros((h, w, 3), dtype=np.uint8)
    rgb[: h // 2, :, 0] = 255  # top half red
    return Frame(rgb=rgb, time_s=0.0)


@pytest.mark.parametrize(
    ("encodings", "expected"),
    [
        ([pb.Image.RAW_RGB8], pb.Image.RAW_RGB8),
        ([pb.Image.JPEG, pb.Image.RAW_RGB8], pb.Image.JPEG),  # the server's first choice
        ([], pb.Image.RAW_RGB8),  # nothing said: raw
    ],
)
def test_frames_are_resized_and_encoded_as_the_spec_asks(encodings: list[int], expected: int) -> None:
    spec = pb.CameraSpec(name="front", height=96, width=128, encodings=encodings)
    image = encode_frame(frame(), spec)
    assert (image.height, image.width, image.encoding) == (96, 128, expected)
    rgb = decode_image(image)
    assert rgb[10, 64, 0] > 200 and rgb[80, 64, 0] < 50  # still red on top, black below


def test_backoff_grows_caps_and_jitters() -> None:
    backoff = Backoff(0.2, 2.0, 1.0, 0.1, rng=random.Random(1))
    delays = [backoff.next() for _ in range(6)]
    for got, base in zip(delays, [0.2, 0.4, 0.8, 1.0, 1.0, 1.0], strict=True):
        assert base * 0.9 <= got <= base * 1.1
    assert len(set(delays)) == len(delays)  # jittered: reconnecting agents do not stampede
    backoff.reset()
    assert backoff.next() <= 0.22


def _client_with_spec() -> PolicyClient:
    client = PolicyClient("127.0.0.1:1")
    client.spec = pb.PolicySpec(action_dim=7, chunk_length=4, dt_s=0.1)
    return client


def _response(actions: np.ndarray, dt: float = 0.1) -> pb.PredictResponse:
    return pb.PredictResponse(request_id=3, status=pb.PredictResponse.OK, actions=to_tensor(actions), dt_s=dt)


@pytest.mark.parametrize(
    ("actions", "dt", "problem"),
    [
        (np.zeros((4, 7), np.float32), 0.1, None),  # fine
        (np.zeros((2, 7), np.float32), 0.1, None),  # shorter than chunk_length: fine
        (np.zeros((4, 6), np.float32), 0.1, ("invalid_chunk", "actions shape [4, 6], spec says [4, 7]")),
        (np.zeros((5, 7), np.float32), 0.1, ("invalid_chunk", "actions shape [5, 7]")),
        (np.zeros((0, 7), np.float32), 0.1, ("invalid_chunk", "actions shape [0, 7]")),
        (np.zeros((4, 7), np.float32), 0.0, ("invalid_chunk", "dt_s is 0.0")),
        (np.zeros((4, 7), np.float32), 10.0, ("invalid_chunk", "dt_s is 10.0, spec says 0.1")),  # stretched
        (np.full((4, 7), np.nan, np.float32), 0.1, ("non_finite", "actions[0, 0] is nan")),
    ],
)
def test_responses_are_checked_against_the_spec(
    actions: np.ndarray, dt: float, problem: tuple[str, str] | None
) -> None:
    chunk = _client_with_spec()._decode(_response(actions, dt), received=1.0)
    if problem is None:
        assert chunk.problem is None and chunk.actions is not None
    else:
        kind, detail = problem
        assert chunk.actions is None and chunk.problem is not None
        assert chunk.problem.kind == kind and chunk.problem.detail.startswith(detail), chunk.problem


def test_undecodable_tensor_is_an_invalid_chunk() -> None:
    response = _response(np.zeros((4, 7), np.float32))
    response.actions.data = b"\x00" * 5
    chunk = _client_with_spec()._decode(response, received=1.0)
    assert chunk.problem is not None and chunk.problem.kind == "invalid_chunk"
    assert chunk.problem.detail.startswith("actions: 5 bytes")


def test_chunk_problem_kinds_are_hold_reasons() -> None:
    """A refused chunk holds the arm under its kind: each kind must be a label the hold count,
    the run statistics and the recorder know (``reasons.HOLD_REASONS``)."""
    assert CHUNK_PROBLEM_KINDS == ("invalid_chunk", "non_finite")
    assert set(CHUNK_PROBLEM_KINDS) <= set(HOLD_REASONS)


def test_a_chunk_problem_reads_kind_then_detail_and_is_bounded() -> None:
    assert str(ChunkProblem("non_finite", "actions[3, 0] is nan")) == "non_finite: actions[3, 0] is nan"
    long = ChunkProblem("invalid_chunk", "x" * 10_000)
    assert len(str(long)) == 512 and str(long).startswith("invalid_chunk: xxx")


def test_a_chunk_problem_of_another_kind_is_refused() -> None:
    with pytest.raises(
        ValueError, match="chunk problem kind 'late', expected one of invalid_chunk, non_finite"
    ):
        ChunkProblem("late", "not a chunk problem")  # type: ignore[arg-type]


def test_requests_carry_timeout_and_monotonic_ids() -> None:
    client = PolicyClient("127.0.0.1:1", request_timeout_ms=250, session_id="s1")
    client.spec = pb.PolicySpec(cameras=[pb.CameraSpec(name="front", height=24, width=32)], action_dim=7)
    request = client.build_request(
        {"front": frame()},
        np.ones(3, np.float32),
        "touch",
        12.5,
        prev_actions=np.zeros((2, 7)),
        inference_delay_steps=2,
    )
    assert request.timeout_ms == 250 and request.session_id == "s1" and request.capture_time_s == 12.5
    assert request.inference_delay_steps == 2
    assert from_tensor(request.prev_actions).shape == (2, 7)
    ids = [client.stamp(request) for _ in range(3)]
    assert ids == [1, 2, 3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_port_says_nothing_is_listening_and_is_retried() -> None:
    port = _free_port()
    client = PolicyClient(f"127.0.0.1:{port}", connect_timeout_s=5.0)
    start = time.monotonic()
    with pytest.raises(
        ServerUnavailable, match=rf"^nothing listening at 127\.0\.0\.1:{port} \(connection refused\)$"
    ):
        await client.connect()
    assert time.monotonic() - start < 4.0  # the refusal is the answer: no wait for connect_timeout_s


async def test_a_port_that_accepts_but_never_answers_times_out_naming_the_wait() -> None:
    with socket.socket() as listener:  # listening, never accepting: the handshake gets no answer
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = PolicyClient(f"127.0.0.1:{port}", connect_timeout_s=0.3)
        with pytest.raises(
            ServerUnavailable, match=f"no inference server answering at 127.0.0.1:{port} within 0.3 s"
        ):
            await client.connect()


@pytest.fixture
def http_port() -> Iterator[int]:
    with plain_http_server() as port:
        yield port


async def test_an_http_server_is_not_a_policy_server(http_port: int) -> None:
    client = PolicyClient(f"127.0.0.1:{http_port}", connect_timeout_s=5.0)
    with pytest.raises(NotAPolicyServer) as info:
        await client.connect()
    message = str(info.value)
    assert message.startswith(f"127.0.0.1:{http_port} answered, but not as a gRPC server")
    assert "Failed parsing HTTP/2" in message and "not retrying" in message
    assert info.value.address == f"127.0.0.1:{http_port}"
    assert not isinstance(info.value, ServerUnavailable)  # the agent's retry loop does not catch it


async def test_a_grpc_server_without_the_policy_service_is_not_a_policy_server() -> None:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        client = PolicyClient(f"127.0.0.1:{port}", connect_timeout_s=5.0)
        with pytest.raises(
            NotAPolicyServer,
            match=rf"^127\.0\.0\.1:{port} is a gRPC server without vla\.v1\.PolicyService \(GetPolicySpec: UNIMPLEMENTED",
        ):
            await client.connect()
    finally:
        await server.stop(None)


class _FakeInner:
    """Answers ``receive`` from a queue the test fills."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Chunk] = asyncio.Queue()

    async def connect(self) -> pb.PolicySpec:
        return pb.PolicySpec()

    async def receive(self) -> Chunk:
        return await self.queue.get()

    async def close(self) -> None:
        pass


def _chunk(i: int) -> Chunk:
    return Chunk(i, "OK", "", None, 0.1, 0.0, time.monotonic(), 0.0)


async def test_injected_latency_delays_every_answer_and_keeps_their_order() -> None:
    inner = _FakeInner()
    client = DelayedClient(inner, latency_ms=80, jitter_ms=40, rng=random.Random(0))  # type: ignore[arg-type]
    await client.connect()
    sent = time.monotonic()
    for i in range(5):
        inner.queue.put_nowait(_chunk(i))
    got = []
    async with asyncio.timeout(5):
        for _ in range(5):
            chunk = await client.receive()
            got.append((chunk.request_id, chunk.received_s - sent))
    await client.close()
    assert [i for i, _ in got] == [0, 1, 2, 3, 4]
    assert all(delay >= 0.04 for _, delay in got)

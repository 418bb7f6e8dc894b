"""Bytes from the agent are never trusted (issue 10, kind 2): a malformed request gets INVALID
naming the field, never ERROR, and the stream lives on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from inference_server import ServerConfig
from inference_server.bundle import load_bundle
from inference_server.errors import InvalidRequest
from inference_server.validation import decode_request
from tests.utils import PredictStream, connect, make_request, run_server, write_python_bundle
from tests.wire_strategies import predict_requests, raw_messages
from vla.codec import encode_image, to_tensor
from vla.v1 import policy_pb2 as pb

OK, LATE, INVALID, ERROR = (
    pb.PredictResponse.OK,
    pb.PredictResponse.LATE,
    pb.PredictResponse.INVALID,
    pb.PredictResponse.ERROR,
)
CAMERAS = {"front": (16, 16), "wrist": (8, 12)}
ALL_ENCODINGS = ["RAW_RGB8", "JPEG", "PNG"]
MAX_REQUEST_BYTES = 1 << 16


def write_bundle(directory: Path) -> Path:
    """An echo policy with two small cameras that accept every encoding (chunk 16 x 7, state 8)."""
    return write_python_bundle(
        directory,
        "tests.inference_server.policies:EchoPolicy",
        cameras=CAMERAS,
        extra_manifest={
            "cameras": {
                name: {"height": h, "width": w, "encodings": ALL_ENCODINGS}
                for name, (h, w) in CAMERAS.items()
            }
        },
    )


def config(bundle: Path) -> ServerConfig:
    return ServerConfig(policy=bundle, metrics_port=None, warmup_iters=0, max_request_bytes=MAX_REQUEST_BYTES)


def spec_for_requests() -> pb.PolicySpec:
    return pb.PolicySpec(
        cameras=[pb.CameraSpec(name=n, height=h, width=w) for n, (h, w) in CAMERAS.items()], state_dim=8
    )


# --- the example of the issue, and one case per field --------------------------------------------


def _prev_actions_huge_shape(r: pb.PredictRequest) -> None:
    r.prev_actions.CopyFrom(pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[2**32, 2**32], data=b""))


def _prev_actions_too_many_rows(r: pb.PredictRequest) -> None:
    r.prev_actions.CopyFrom(to_tensor(np.zeros((17, 7), np.float32)))


def _prev_actions_nan(r: pb.PredictRequest) -> None:
    rows = np.zeros((3, 7), np.float32)
    rows[1, 2] = np.nan
    r.prev_actions.CopyFrom(to_tensor(rows))


def _prev_actions_float64(r: pb.PredictRequest) -> None:
    r.prev_actions.CopyFrom(to_tensor(np.zeros((3, 7), np.float64)))


def _prev_actions_bytes_short(r: pb.PredictRequest) -> None:
    r.prev_actions.CopyFrom(to_tensor(np.zeros((3, 7), np.float32)))
    r.prev_actions.data = r.prev_actions.data[:-1]


def _delay_huge(r: pb.PredictRequest) -> None:
    r.inference_delay_steps = 2**32 - 1


def _session_id_huge(r: pb.PredictRequest) -> None:
    r.session_id = "s" * 10_000


def _instruction_huge(r: pb.PredictRequest) -> None:
    r.instruction = "pick " * 1000


def _capture_time_nan(r: pb.PredictRequest) -> None:
    r.capture_time_s = math.nan


def _capture_time_inf(r: pb.PredictRequest) -> None:
    r.capture_time_s = -math.inf


def _unknown_encoding(r: pb.PredictRequest) -> None:
    r.images["front"].encoding = 9  # type: ignore[assignment]


def _unknown_state_dtype(r: pb.PredictRequest) -> None:
    r.state.dtype = 99  # type: ignore[assignment]


def _state_huge_shape(r: pb.PredictRequest) -> None:
    r.state.CopyFrom(pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[2**32, 2**32], data=b""))


def _state_many_dims(r: pb.PredictRequest) -> None:
    r.state.CopyFrom(pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[0] * 1000))


def _png_bomb(r: pb.PredictRequest) -> None:
    png = bytearray(encode_image(np.zeros((16, 16, 3), np.uint8), pb.Image.PNG).data)
    png[16:24] = (60000).to_bytes(4, "big") * 2  # IHDR: 60000 x 60000, 10.8 GB once decoded
    r.images["front"].CopyFrom(
        pb.Image(height=16, width=16, channels=3, encoding=pb.Image.PNG, data=bytes(png))
    )


def _jpeg_truncated(r: pb.PredictRequest) -> None:
    jpeg = encode_image(np.full((16, 16, 3), 90, np.uint8), pb.Image.JPEG)
    jpeg.data = jpeg.data[: len(jpeg.data) // 2]
    r.images["front"].CopyFrom(jpeg)


def _channels_huge(r: pb.PredictRequest) -> None:
    r.images["front"].channels = 2**32 - 1


def _camera_name_huge(r: pb.PredictRequest) -> None:
    r.images["w" * 300].CopyFrom(r.images["wrist"])


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        # the example: 2**64 elements wrap to 0 in int64 and matched the empty data
        (_prev_actions_huge_shape, r"^prev_actions: FLOAT32 \[4294967296, 4294967296\], expected FLOAT32 \[n, 7\]"),
        (_prev_actions_too_many_rows, r"^prev_actions: FLOAT32 \[17, 7\], .* n <= chunk_length 16"),
        (_prev_actions_nan, r"^prev_actions\[1, 2\]: is nan"),
        (_prev_actions_float64, r"^prev_actions: FLOAT64 \[3, 7\], expected FLOAT32"),
        (_prev_actions_bytes_short, r"^prev_actions: 83 bytes of data, shape \[3, 7\] of float32 needs 84"),
        (_delay_huge, r"^inference_delay_steps: is 4294967295, more than chunk_length 16"),
        (_session_id_huge, r"^session_id: 10000 characters, at most 128"),
        (_instruction_huge, r"^instruction: 5000 characters, at most 4096"),
        (_capture_time_nan, r"^capture_time_s: is nan"),
        (_capture_time_inf, r"^capture_time_s: is -inf"),
        (_unknown_encoding, r"^images\.front: encoding 9 not accepted"),
        (_unknown_state_dtype, r"^state: dtype 99, expected FLOAT32"),
        (_state_huge_shape, r"^state: shape \[4294967296, 4294967296\], the policy expects \[8\]"),
        (_state_many_dims, r"^state: shape \[0, 0, 0, 0, 0, 0, 0, 0, \.\.\.\] \(1000 dimensions\)"),
        (_png_bomb, r"^images\.front: PNG header says 60000x60000, the message says 16x16"),
        (_jpeg_truncated, r"^images\.front: data is not a valid JPEG image \(truncated"),
        (_channels_huge, r"^images\.front: 4294967295 channels"),
        (_camera_name_huge, r"^images\.'wwww.*'\.\.\. \(300 characters\): unknown camera"),
    ],
)  # fmt: skip
async def test_malformed_request_is_invalid_naming_the_field_and_the_stream_lives_on(
    tmp_path: Path,
    corrupt: Callable[[pb.PredictRequest], None],
    expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with run_server(config(write_bundle(tmp_path / "b"))) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        bad = make_request(spec, 1)
        corrupt(bad)
        stream.send(bad)
        answer = await stream.recv()
        stream.send(make_request(spec, 2))
        after = await stream.recv()
        await stream.close()
    assert (answer.request_id, answer.status) == (1, INVALID), answer.message
    assert re.search(expected, answer.message), answer.message
    assert len(answer.message) < 300  # peer text is not echoed whole
    assert (after.request_id, after.status) == (2, OK)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # no traceback


# --- bytes that are not a PredictRequest at all --------------------------------------------------


@contextlib.asynccontextmanager
async def raw_predict(port: int) -> Iterator[grpc.aio.StreamStreamCall]:  # type: ignore[misc]
    """A Predict stream that sends raw bytes and parses the answers."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.stream_stream(
            "/vla.v1.PolicyService/Predict",
            request_serializer=None,
            response_deserializer=pb.PredictResponse.FromString,
        )
        yield method()


@pytest.mark.parametrize(
    ("data", "request_id", "expected"),
    [
        # invalid UTF-8 in the instruction (a proto3 string): the id is still read from the bytes
        (pb.PredictRequest(request_id=41).SerializeToString() + b"\x2a\x02\xff\xfe", 41, r"bad UTF-8"),
        # a length-delimited field that runs past the end
        (pb.PredictRequest(request_id=42).SerializeToString() + b"\x1a\x7f\x00", 42, r"not a valid"),
        (b"\xff\xff\xff", 0, r"not a valid"),  # nothing readable: answered as request 0
    ],
)
async def test_bytes_that_do_not_parse_are_invalid_and_the_stream_lives_on(
    tmp_path: Path, data: bytes, request_id: int, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with run_server(config(write_bundle(tmp_path / "b"))) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        async with raw_predict(server.port) as call:  # type: ignore[arg-type]
            await call.write(data)
            answer = await asyncio.wait_for(call.read(), 10)
            await call.write(make_request(spec, 7).SerializeToString())
            after = await asyncio.wait_for(call.read(), 10)
            await call.done_writing()
    assert (answer.request_id, answer.status) == (request_id, INVALID)
    assert answer.message.startswith("request: not a valid vla.v1.PredictRequest"), answer.message
    assert re.search(expected, answer.message), answer.message
    assert (after.request_id, after.status) == (7, OK)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- any request at all: properties --------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("untrusted") / "b")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decoding_any_request_gives_an_observation_or_invalid_request(
    bundle_dir: Path, data: st.DataObject
) -> None:
    bundle = load_bundle(bundle_dir)
    request = data.draw(predict_requests(cameras=CAMERAS, state_dim=8, action_dim=7))
    try:
        obs = decode_request(request, bundle, MAX_REQUEST_BYTES)
    except InvalidRequest as exc:
        assert str(exc).startswith(f"{exc.field}: ")
        event(f"INVALID {exc.field.split('.')[0].split('[')[0]}")
        return
    event("decoded")
    assert {n: i.shape for n, i in obs.images.items()} == {n: (h, w, 3) for n, (h, w) in CAMERAS.items()}
    assert obs.state.shape == (8,) and np.isfinite(obs.state).all()
    if obs.prev_actions is not None:
        assert obs.prev_actions.shape[1] == 7 and obs.prev_actions.shape[0] <= 16
        assert np.isfinite(obs.prev_actions).all()
    assert obs.inference_delay_steps is None or 0 <= obs.inference_delay_steps <= 16


@pytest.fixture(scope="module")
def served_port(bundle_dir: Path) -> Iterator[int]:
    """One real server for the whole module, on its own event loop in a thread, so that each
    hypothesis example costs a stream, not a server start."""
    ready = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        state["loop"], state["stop"] = asyncio.get_running_loop(), stop
        async with run_server(config(bundle_dir)) as server:
            state["port"] = server.port
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="untrusted-server")
    thread.start()
    try:
        assert ready.wait(30), "the server did not start"
        yield int(state["port"])  # type: ignore[call-overload]
    finally:
        loop, stop = state.get("loop"), state.get("stop")
        if loop is not None:
            loop.call_soon_threadsafe(stop.set)  # type: ignore[attr-defined, union-attr]
        thread.join(30)


@pytest.fixture(scope="module")
def raw_stream(served_port: int) -> Iterator[Callable[[list[bytes]], list[pb.PredictResponse]]]:
    """``send(messages)``: one Predict stream carrying ``messages`` as they are; all the answers."""
    with grpc.insecure_channel(f"127.0.0.1:{served_port}") as channel:
        method = channel.stream_stream(
            "/vla.v1.PolicyService/Predict",
            request_serializer=None,
            response_deserializer=pb.PredictResponse.FromString,
        )
        yield lambda messages: list(method(iter(messages), timeout=30))


PROBE_ID = 987_654_321_987


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_server_answers_any_request_ok_or_invalid_and_the_stream_lives_on(
    raw_stream: Callable[[list[bytes]], list[pb.PredictResponse]], data: st.DataObject
) -> None:
    requests = predict_requests(cameras=CAMERAS, state_dim=8, action_dim=7).map(
        lambda r: r.SerializeToString()
    )
    messages = data.draw(st.lists(st.one_of(requests, raw_messages()), min_size=1, max_size=4))
    probe = make_request(spec_for_requests(), PROBE_ID, session_id="probe")
    answers = raw_stream([*messages, probe.SerializeToString()])
    assert len(answers) == len(messages) + 1
    statuses = [pb.PredictResponse.Status.Name(a.status) for a in answers]
    assert set(statuses) <= {"OK", "INVALID", "LATE"}, [a.message for a in answers if a.status == ERROR]
    assert any(a.request_id == PROBE_ID and a.status == OK for a in answers), statuses
    for status in statuses[:-1]:
        event(status)


async def test_a_stream_cannot_queue_requests_without_bound(tmp_path: Path, gate, entered) -> None:  # type: ignore[no-untyped-def]
    """Latest-wins is per session: a stream naming a new session in each request is capped."""
    from inference_server.service import MAX_OUTSTANDING_PER_STREAM

    bundle = write_python_bundle(
        tmp_path / "gated",
        "tests.inference_server.policies:GatedPolicy",
        extra_manifest={"extra": {"gate": gate[0], "entered": entered[0]}},
    )
    n = MAX_OUTSTANDING_PER_STREAM + 4
    async with run_server(config(bundle)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        stream.send(make_request(spec, 0, session_id="s0"))
        await asyncio.to_thread(entered[1].wait, 5)  # request 0 is computing, held by the gate
        for i in range(1, n):
            stream.send(make_request(spec, i, session_id=f"s{i}"))
        refused = [await stream.recv() for _ in range(n - MAX_OUTSTANDING_PER_STREAM)]
        gate[1].set()
        answered = [await stream.recv() for _ in range(MAX_OUTSTANDING_PER_STREAM)]
        stream.send(make_request(spec, 99, session_id="s0"))
        after = await stream.recv()
        await stream.close()
    cap = MAX_OUTSTANDING_PER_STREAM
    assert [(a.request_id, a.status) for a in refused] == [(i, INVALID) for i in range(cap, n)]
    assert refused[0].message.startswith(
        f"request: {cap} requests of this stream are still waiting or computing"
    )
    assert sorted(a.request_id for a in answered) == list(range(cap))
    assert {a.status for a in answered} == {OK}
    assert (after.request_id, after.status) == (99, OK)

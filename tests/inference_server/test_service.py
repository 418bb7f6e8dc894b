"""The gRPC service end to end on loopback: spec, streaming, latest-wins, deadlines, validation."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from inference_server import ServerConfig
from inference_server.server import SERVICE_NAME
from tests.utils import PredictStream, connect, make_request, poll_until, run_server, write_python_bundle
from vla.codec import encode_image, from_tensor, to_tensor
from vla.v1 import policy_pb2 as pb

OK, LATE, INVALID, ERROR = (
    pb.PredictResponse.OK,
    pb.PredictResponse.LATE,
    pb.PredictResponse.INVALID,
    pb.PredictResponse.ERROR,
)


def config(bundle: Path, **kw: object) -> ServerConfig:
    kw.setdefault("metrics_port", None)
    kw.setdefault("warmup_iters", 1)
    return ServerConfig(policy=bundle, **kw)  # type: ignore[arg-type]


def gated_bundle(tmp_path: Path, gate: str, entered: str, **extra: object) -> Path:
    return write_python_bundle(
        tmp_path / "gated",
        "tests.inference_server.policies:GatedPolicy",
        extra_manifest={"extra": {"gate": gate, "entered": entered, **extra}},
    )


async def test_spec_round_trip(tmp_path: Path) -> None:
    bundle = write_python_bundle(
        tmp_path / "b",
        "tests.inference_server.policies:EchoPolicy",
        cameras={"front": (48, 64), "wrist": (32, 32)},
        chunk_length=10,
        dt_s=0.05,
        action_space="joint_absolute",
        name="spec-check",
        extra_manifest={
            "cameras": {
                "front": {"height": 48, "width": 64, "encodings": ["JPEG", "RAW_RGB8"]},
                "wrist": {"height": 32, "width": 32},
            }
        },
    )
    async with (
        run_server(config(bundle, max_batch=4, max_request_bytes=123456)) as server,
        connect(server) as stub,
    ):
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
    assert (spec.name, spec.version, spec.backend, spec.precision, spec.device) == (
        "spec-check",
        "0.0.1",
        "python",
        "fp32",
        "cpu",
    )
    assert [(c.name, c.height, c.width) for c in spec.cameras] == [("front", 48, 64), ("wrist", 32, 32)]
    assert list(spec.cameras[0].encodings) == [pb.Image.JPEG, pb.Image.RAW_RGB8]
    assert (spec.state_dim, spec.action_dim, spec.chunk_length, spec.dt_s) == (8, 7, 10, 0.05)
    assert spec.action_space == "joint_absolute"
    assert list(spec.action_names) == ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
    assert list(spec.state_names) == [*(f"joint_{i}" for i in range(7)), "gripper"]
    assert (spec.max_batch, spec.max_request_bytes) == (4, 123456)


async def test_two_sessions_stream_100_requests_each(echo_bundle: Path) -> None:
    # As fast as lockstep allows, which is above the default per-session rate limit (100 Hz,
    # bursts of 50: tested in test_limits.py); raised here, where the streaming is under test.
    fast = config(echo_bundle, max_request_rate_hz=100_000.0)
    async with run_server(fast) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())

        async def session(name: str, offset: int) -> list[pb.PredictResponse]:
            stream, answers = PredictStream(stub), []
            for i in range(100):  # lockstep, as an agent does: the next request after the answer
                stream.send(make_request(spec, offset + i, session_id=name))
                answers.append(await stream.recv())
            await stream.close()
            return answers

        results = await asyncio.gather(session("a", 0), session("b", 1000))
    for offset, answers in zip((0, 1000), results, strict=True):
        assert [a.request_id for a in answers] == [offset + i for i in range(100)]
        for a in answers:
            assert a.status == OK, a.message
            actions = from_tensor(a.actions)
            assert actions.shape == (16, 7) and actions.dtype == np.float32
            assert actions[0, 0] == pytest.approx(a.request_id)  # the echo policy's answer for this request
            assert a.dt_s == pytest.approx(0.1)
            assert a.capture_time_s == pytest.approx(a.request_id)
            assert a.timing.total_ms > 0 and a.timing.batch_size >= 1


async def test_newer_request_supersedes_the_waiting_one(tmp_path: Path, gate, entered) -> None:  # type: ignore[no-untyped-def]
    bundle = gated_bundle(tmp_path, gate[0], entered[0])
    async with run_server(config(bundle, warmup_iters=0)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        stream.send(make_request(spec, 1))
        await asyncio.to_thread(entered[1].wait, 5)  # request 1 is being computed
        stream.send(make_request(spec, 2))  # waits behind it...
        stream.send(make_request(spec, 3))  # ...and is superseded by this one
        superseded = await stream.recv()
        assert (superseded.request_id, superseded.status) == (2, LATE)
        assert superseded.message == "superseded by request 3 of the same session (latest wins)"
        gate[1].set()
        answers = {a.request_id: a for a in [await stream.recv(), await stream.recv()]}
        await stream.close()
    assert {i: a.status for i, a in answers.items()} == {1: OK, 3: OK}
    assert from_tensor(answers[3].actions)[0, 0] == pytest.approx(3.0)


async def test_a_request_superseded_from_another_stream_says_so(tmp_path: Path, gate, entered) -> None:  # type: ignore[no-untyped-def]
    """Two clients sharing a session_id: the LATE answer names the other stream's request and id."""
    bundle = gated_bundle(tmp_path, gate[0], entered[0])
    async with run_server(config(bundle, warmup_iters=0)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        busy, first, second = PredictStream(stub), PredictStream(stub), PredictStream(stub)
        busy.send(make_request(spec, 1, session_id="busy"))
        await asyncio.to_thread(entered[1].wait, 5)  # the worker is held: the next requests wait
        first.send(make_request(spec, 2, session_id="arm-1"))
        invalid = make_request(spec, 3, session_id="arm-1")
        invalid.images.pop("front")
        first.send(invalid)  # answered at once: proves request 2 is queued (one reader per stream, in order)
        assert (await first.recv()).request_id == 3
        second.send(make_request(spec, 4, session_id="arm-1"))
        superseded = await first.recv()
        gate[1].set()
        computed = await second.recv()
        assert (await busy.recv()).status == OK
        for stream in (busy, first, second):
            await stream.close()
    assert (superseded.request_id, superseded.status) == (2, LATE)
    assert superseded.message == (
        "superseded by request 4 of another stream with session_id 'arm-1' "
        "(latest wins per session_id: give each client its own)"
    )
    assert (computed.request_id, computed.status) == (4, OK)


async def test_request_past_its_timeout_is_late_and_not_computed(tmp_path: Path, gate, entered) -> None:  # type: ignore[no-untyped-def]
    bundle = gated_bundle(tmp_path, gate[0], entered[0])
    async with run_server(config(bundle, warmup_iters=0)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        busy, other = PredictStream(stub), PredictStream(stub)
        busy.send(make_request(spec, 1, session_id="busy"))
        await asyncio.to_thread(entered[1].wait, 5)
        other.send(make_request(spec, 7, session_id="other", timeout_ms=1))
        bad = make_request(spec, 8, session_id="other")
        bad.images.pop("front")
        other.send(bad)  # answered at once; proves request 7 has arrived (one reader per stream, in order)
        invalid = await other.recv()
        assert (invalid.request_id, invalid.status) == (8, INVALID)
        received = time.monotonic()
        await poll_until(lambda: time.monotonic() - received > 0.002, timeout=1)  # request 7's 1 ms is over
        gate[1].set()
        late = await other.recv()
        first = await busy.recv()
        await busy.close()
        await other.close()
    assert (late.request_id, late.status) == (7, LATE)
    assert "timeout ran out before compute started" in late.message
    assert not late.HasField("actions")
    assert (first.request_id, first.status) == (1, OK)


def _missing_camera(r: pb.PredictRequest) -> None:
    r.images.pop("front")


def _wrong_size(r: pb.PredictRequest) -> None:
    r.images["front"].CopyFrom(encode_image(np.zeros((60, 64, 3), np.uint8)))


def _wrong_encoding(r: pb.PredictRequest) -> None:
    r.images["front"].CopyFrom(encode_image(np.zeros((64, 64, 3), np.uint8), pb.Image.PNG))


def _corrupt_jpeg(r: pb.PredictRequest) -> None:
    r.images["front"].encoding = pb.Image.JPEG
    r.images["front"].data = b"\xff\xd8 not really a jpeg"


def _raw_bytes_short(r: pb.PredictRequest) -> None:
    r.images["front"].data = r.images["front"].data[:-1]


def _state_dtype(r: pb.PredictRequest) -> None:
    r.state.CopyFrom(to_tensor(np.zeros(8, np.float64)))


def _state_length(r: pb.PredictRequest) -> None:
    r.state.CopyFrom(to_tensor(np.zeros(7, np.float32)))


def _state_nan(r: pb.PredictRequest) -> None:
    state = np.zeros(8, np.float32)
    state[5] = np.nan
    r.state.CopyFrom(to_tensor(state))


def _state_bytes(r: pb.PredictRequest) -> None:
    r.state.data = r.state.data[:-4]


def _state_missing(r: pb.PredictRequest) -> None:
    r.ClearField("state")


def _state_dtype_unset(r: pb.PredictRequest) -> None:
    r.state.dtype = pb.Tensor.DTYPE_UNSPECIFIED


def _image_empty(r: pb.PredictRequest) -> None:
    r.images["front"].Clear()


def _encoding_unset(r: pb.PredictRequest) -> None:
    r.images["front"].encoding = pb.Image.ENCODING_UNSPECIFIED


def _oversize(r: pb.PredictRequest) -> None:
    r.instruction = "x" * 40_000


def _past_the_old_transport_limit(r: pb.PredictRequest) -> None:
    # 2 MiB: over the former gRPC limit (2 x 32768 + 1 MiB), which ended the stream with
    # RESOURCE_EXHAUSTED instead of answering.
    r.images["front"].data = bytes(2 << 20)


def _unknown_camera(r: pb.PredictRequest) -> None:
    r.images["side"].CopyFrom(r.images["front"])


def _prev_actions_shape(r: pb.PredictRequest) -> None:
    r.prev_actions.CopyFrom(to_tensor(np.zeros((4, 6), np.float32)))


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (_missing_camera, r"^images\.front: missing"),  # a camera the policy needs is absent
        (_wrong_size, r"^images\.front: 64x60 .*expects 64x64"),  # right camera, wrong image size
        (_wrong_encoding, r"^images\.front: encoding PNG not accepted"),  # PNG, spec takes RAW/JPEG
        (_corrupt_jpeg, r"^images\.front: data is not a valid JPEG"),  # undecodable bytes
        (_raw_bytes_short, r"^images\.front: 12287 bytes of RAW_RGB8"),  # byte count off by one
        (_state_dtype, r"^state: dtype FLOAT64, expected FLOAT32"),  # wrong dtype
        (_state_length, r"^state: shape \[7\], the policy expects \[8\]"),  # wrong state length
        (_state_nan, r"^state\[5\]: is nan"),  # a non-finite state value
        (_state_bytes, r"^state: 28 bytes of data"),  # tensor bytes do not match its shape
        (_state_missing, r"^state: is missing \(the policy expects FLOAT32 \[8\]\)$"),  # no state field
        (_state_dtype_unset, r"^state: dtype is not set \(DTYPE_UNSPECIFIED\), expected FLOAT32$"),  # dtype 0
        (_image_empty, r"^images\.front: is an empty Image \(the policy expects 64x64 RGB\)$"),  # Image()
        (_encoding_unset, r"^images\.front: encoding is not set \(ENCODING_UNSPECIFIED; accepted: "),  # 0
        (_oversize, r"^request: \d+ bytes, larger than max_request_bytes 32768$"),  # oversize message
        (_past_the_old_transport_limit, r"^request: 2\d{6} bytes, larger than max_request_bytes 32768$"),
        (_unknown_camera, r"^images\.side: unknown camera"),  # a camera the policy does not know
        (
            _prev_actions_shape,
            r"^prev_actions: FLOAT32 \[4, 6\], expected FLOAT32 \[n, 7\] with n <= chunk_length 16",
        ),
    ],
)
async def test_invalid_request_names_the_field_and_the_stream_lives_on(
    tmp_path: Path, corrupt, expected
) -> None:  # type: ignore[no-untyped-def]
    bundle = write_python_bundle(
        tmp_path / "b",
        "tests.inference_server.policies:EchoPolicy",
        extra_manifest={"cameras": {"front": {"height": 64, "width": 64, "encodings": ["RAW_RGB8", "JPEG"]}}},
    )
    async with run_server(config(bundle, max_request_bytes=32768)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        bad = make_request(spec, 1)
        corrupt(bad)
        stream.send(bad)
        answer = await stream.recv()
        stream.send(make_request(spec, 2))
        after = await stream.recv()
        await stream.close()
    assert (answer.request_id, answer.status) == (1, INVALID)
    assert __import__("re").search(expected, answer.message), answer.message
    assert (after.request_id, after.status) == (2, OK)


@pytest.mark.parametrize(
    ("instruction", "expected"),
    [
        ("nan", r"non-finite action: actions\[3, 2\] is nan"),  # the model returned a NaN
        ("shape", r"shape \[1, 15, 7\] for a batch of 1, expected \[1, 16, 7\]"),  # chunk too short
        ("raise", r"model failed: RuntimeError: rogue policy failed on purpose"),  # the model raised
    ],
)
async def test_bad_model_output_is_an_error_and_the_stream_lives_on(
    tmp_path: Path, instruction: str, expected: str
) -> None:
    bundle = write_python_bundle(tmp_path / "b", "tests.inference_server.policies:RoguePolicy")
    async with run_server(config(bundle)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        stream.send(make_request(spec, 1, instruction=instruction))
        answer = await stream.recv()
        stream.send(make_request(spec, 2))
        after = await stream.recv()
        await stream.close()
    assert (answer.status, answer.HasField("actions")) == (ERROR, False)
    assert __import__("re").search(expected, answer.message), answer.message
    assert (after.request_id, after.status) == (2, OK)


async def test_health_goes_from_not_serving_to_serving(tmp_path: Path, gate, entered) -> None:  # type: ignore[no-untyped-def]
    bundle = gated_bundle(
        tmp_path, gate[0], entered[0], gate_init=True
    )  # the model "loads" until the gate opens
    async with (
        run_server(config(bundle, warmup_iters=0), wait_started=False) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING
        gate[1].set()
        async with asyncio.timeout(10):
            await server.started.wait()
        for service in ("", SERVICE_NAME):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(echo_bundle: Path) -> None:
    async with (
        run_server(config(echo_bundle)) as server,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        answer = await call.read()
    names = {s.name for s in answer.list_services_response.service}
    assert {
        "vla.v1.PolicyService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names


async def test_sigterm_finishes_in_flight_requests_then_stops(tmp_path: Path, gate, entered) -> None:  # type: ignore[no-untyped-def]
    import signal

    bundle = gated_bundle(tmp_path, gate[0], entered[0])
    async with run_server(config(bundle, warmup_iters=0)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        stream.send(make_request(spec, 1))
        await asyncio.to_thread(entered[1].wait, 5)
        server.handle_exit(signal.SIGTERM)
        await poll_until(
            lambda: server._health is not None and server._health._gracefully_shutting_down, timeout=5
        )
        gate[1].set()
        answer = await stream.recv()
        end = await stream.recv()
    assert (answer.request_id, answer.status) == (1, OK)
    assert end is grpc.aio.EOF  # the server ended the stream cleanly after the in-flight answer


async def test_max_batch_batches_waiting_sessions(tmp_path: Path, gate, entered) -> None:  # type: ignore[no-untyped-def]
    bundle = gated_bundle(tmp_path, gate[0], entered[0])
    async with run_server(config(bundle, warmup_iters=0, max_batch=3)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        streams = [PredictStream(stub) for _ in range(5)]
        streams[0].send(make_request(spec, 100, session_id="s0"))
        await asyncio.to_thread(entered[1].wait, 5)  # the worker is busy with s0
        probe = [make_request(spec, i, session_id=f"s{i}") for i in range(1, 5)]
        for stream, request in zip(streams[1:], probe, strict=True):
            bad = make_request(spec, 999, session_id=request.session_id)
            bad.state.dtype = pb.Tensor.INT64
            stream.send(request)
            stream.send(bad)  # its INVALID answer proves `request` reached the queue
            assert (await stream.recv()).status == INVALID
        gate[1].set()
        answers = [await s.recv() for s in streams]
        for s in streams:
            await s.close()
    assert all(a.status == OK for a in answers), [a.message for a in answers]
    sizes = sorted(a.timing.batch_size for a in answers)
    assert sizes == [1, 1, 3, 3, 3]  # s0 alone, then s1..s3 together (max_batch 3), then s4


async def test_an_unexpected_decoding_failure_is_an_error_and_the_stream_lives_on(
    echo_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inference_server import service

    real = service.decode_request

    def flaky(request, *args):  # type: ignore[no-untyped-def]
        if request.request_id == 1:
            raise MemoryError("decoder ran out of memory")
        return real(request, *args)

    monkeypatch.setattr(service, "decode_request", flaky)
    async with run_server(config(echo_bundle)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        stream.send(make_request(spec, 1))
        failed = await stream.recv()
        stream.send(make_request(spec, 2))
        after = await stream.recv()
        await stream.close()
    assert (failed.status, failed.message) == (
        ERROR,
        "server failed to decode the request: MemoryError: decoder ran out of memory",
    )
    assert (after.request_id, after.status) == (2, OK)


async def test_the_python_policy_gets_the_documented_batch(tmp_path: Path) -> None:
    from tests.inference_server import policies

    bundle = write_python_bundle(
        tmp_path / "b",
        "tests.inference_server.policies:EchoPolicy",
        cameras={"front": (48, 64), "wrist": (32, 32)},
        extra_manifest={"extra": {"name": f"contract-{id(tmp_path)}"}},
    )
    async with run_server(config(bundle, warmup_iters=0)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        request = make_request(spec, 5, instruction="wave")
        request.prev_actions.CopyFrom(to_tensor(np.ones((6, 7), np.float32)))
        request.inference_delay_steps = 3
        stream.send(request)
        assert (await stream.recv()).status == OK
        stream.send(make_request(spec, 6))
        assert (await stream.recv()).status == OK
        await stream.close()
    first, second = policies.CALLS.pop(f"contract-{id(tmp_path)}")
    assert set(first) == {"images", "state", "instruction", "prev_actions", "inference_delay_steps"}
    assert {k: (v.dtype, v.shape) for k, v in first["images"].items()} == {
        "front": (np.uint8, (1, 48, 64, 3)),
        "wrist": (np.uint8, (1, 32, 32, 3)),
    }
    assert (first["state"].dtype, first["state"].shape) == (np.float32, (1, 8))
    assert first["instruction"] == ["wave"] and first["inference_delay_steps"] == [3]
    np.testing.assert_array_equal(first["prev_actions"][0], np.ones((6, 7), np.float32))
    assert second["prev_actions"] == [None] and second["inference_delay_steps"] == [None]


async def test_the_python_policy_gets_prev_actions_in_its_own_normalised_space(tmp_path: Path) -> None:
    """State and prev_actions go in normalised, actions come out un-normalised: one space for the policy."""
    from tests.inference_server import policies

    name = f"normalised-{id(tmp_path)}"
    mean, std = np.arange(7, dtype=np.float32), np.full(7, 2.0, np.float32)
    bundle = write_python_bundle(
        tmp_path / "b",
        "tests.inference_server.policies:EchoPolicy",
        extra_manifest={
            "extra": {"name": name},
            "normalization": {"actions": {"mean": mean.tolist(), "std": std.tolist()}},
        },
    )
    sent = np.array([[3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.0] * 7], np.float32)
    async with run_server(config(bundle, warmup_iters=0)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        request = make_request(spec, 5)
        request.prev_actions.CopyFrom(to_tensor(sent))
        stream.send(request)
        answer = await stream.recv()
        await stream.close()
    assert answer.status == OK, answer.message
    (batch,) = policies.CALLS.pop(name)
    np.testing.assert_allclose(batch["prev_actions"][0], (sent - mean) / std)
    assert batch["prev_actions"][0].dtype == np.float32
    # the echo policy answers state[0] + 0.001 h in normalised space; the wire carries x * std + mean
    np.testing.assert_allclose(from_tensor(answer.actions)[:, 1], (5.0 + 0.001 * np.arange(16)) * 2.0 + 1.0)


async def test_the_python_policy_is_closed_at_shutdown_and_never_reset(tmp_path: Path) -> None:
    from tests.inference_server import policies

    name = f"lifecycle-{id(tmp_path)}"
    bundle = write_python_bundle(
        tmp_path / "b",
        "tests.inference_server.policies:ClosingPolicy",
        extra_manifest={"extra": {"name": name}},
    )
    async with run_server(config(bundle)) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        stream.send(make_request(spec, 1))
        assert (await stream.recv()).status == OK
        await stream.close()
        assert policies.LIFECYCLE.get(name) is None  # not closed while serving
    policies.CALLS.pop(name, None)
    assert policies.LIFECYCLE.pop(name) == ["close"]


async def test_a_client_that_disconnects_leaves_no_unretrieved_task_error(
    echo_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The reader's pending ``anext()`` is retrieved when the stream ends, not left for the GC to log."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with run_server(config(echo_bundle)) as server:
        async with connect(server) as stub:
            spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
            stream = PredictStream(stub)
            stream.send(make_request(spec, 1))
            assert (await stream.recv()).status == OK
        # the channel is closed: the server ends the stream
        await poll_until(lambda: server.registry.get_sample_value("vla_server_sessions") == 0)
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
    never_retrieved = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert never_retrieved == []

"""The agent's side of the ``Predict`` stream: the one place that talks gRPC.

Images are resized and encoded to what ``GetPolicySpec`` asks; request ids are monotonic; every
request carries its ``timeout_ms``. ``grpc.aio.AioRpcError`` is translated here, and only here,
into :class:`ServerUnavailable`. Reconnection policy (backoff with jitter) is :class:`Backoff`; the
agent's stream task drives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import grpc
import numpy as np

from robot_agent.camera import Frame
from robot_agent.errors import ServerUnavailable
from vla.codec import CodecError, encode_image, from_tensor, to_tensor
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc as pb_grpc

__all__ = ["Backoff", "Chunk", "DelayedClient", "PolicyClient", "encode_frame"]

logger = logging.getLogger(__name__)

_SUPPORTED_ENCODINGS = (pb.Image.RAW_RGB8, pb.Image.JPEG, pb.Image.PNG)


@dataclass(frozen=True)
class Chunk:
    """One decoded response. ``actions`` is None unless ``status`` is OK and the tensor decoded;
    ``problem`` then says why."""

    request_id: int
    status: str  # OK | LATE | INVALID | ERROR | ...
    message: str
    actions: np.ndarray | None
    dt_s: float
    capture_time_s: float
    received_s: float
    server_total_ms: float
    problem: str | None = None


class Backoff:
    """Exponential backoff with jitter: ``initial * factor**n``, capped, times ``1 +- jitter``."""

    def __init__(
        self, initial_s: float, factor: float, max_s: float, jitter: float, rng: random.Random | None = None
    ):
        self._initial, self._factor, self._max, self._jitter = initial_s, factor, max_s, jitter
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        base = min(self._max, self._initial * self._factor**self._attempt)
        self._attempt += 1
        return base * (1.0 + self._rng.uniform(-self._jitter, self._jitter))

    def reset(self) -> None:
        self._attempt = 0


def encode_frame(frame: Frame, spec: pb.CameraSpec, jpeg_quality: int = 90) -> pb.Image:
    """Resize ``frame`` to the spec's size (area filter when shrinking) and encode it in the
    first encoding of the spec's list that the agent supports."""
    rgb = frame.rgb
    if rgb.shape[0] != spec.height or rgb.shape[1] != spec.width:
        shrinking = rgb.shape[0] > spec.height
        rgb = cv2.resize(
            rgb, (spec.width, spec.height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
    encoding = next((e for e in spec.encodings if e in _SUPPORTED_ENCODINGS), pb.Image.RAW_RGB8)
    return encode_image(rgb, encoding, jpeg_quality=jpeg_quality)


class PolicyClient:
    """One session with the inference server: ``connect`` reads the spec and opens the stream."""

    def __init__(
        self,
        address: str,
        *,
        session_id: str | None = None,
        request_timeout_ms: int = 1000,
        connect_timeout_s: float = 2.0,
        jpeg_quality: int = 90,
    ) -> None:
        self.address = address
        self.session_id = session_id or uuid.uuid4().hex
        self._timeout_ms = int(request_timeout_ms)
        self._connect_timeout = connect_timeout_s
        self._jpeg_quality = jpeg_quality
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._next_id = 1  # monotonic for the whole session, across reconnects
        self.spec: pb.PolicySpec | None = None

    async def connect(self) -> pb.PolicySpec:
        """Connect, read the spec and open the ``Predict`` stream; raise :class:`ServerUnavailable`."""
        await self.close()
        self._channel = grpc.aio.insecure_channel(
            self.address,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ],
        )
        stub = pb_grpc.PolicyServiceStub(self._channel)
        try:
            async with asyncio.timeout(self._connect_timeout):
                await self._channel.channel_ready()
            self.spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest(), timeout=self._connect_timeout)
        except TimeoutError:
            await self.close()
            raise ServerUnavailable(
                f"no inference server answering at {self.address} within {self._connect_timeout:g} s",
                address=self.address,
            ) from None
        except grpc.aio.AioRpcError as exc:
            await self.close()
            raise _translate(exc, self.address) from exc
        self._call = stub.Predict()
        return self.spec

    def _require_call(self) -> grpc.aio.StreamStreamCall:
        if self._call is None:
            raise ServerUnavailable(f"not connected to {self.address}", address=self.address)
        return self._call

    def build_request(
        self,
        frames: Mapping[str, Frame],
        state: np.ndarray,
        instruction: str,
        capture_time_s: float,
        prev_actions: np.ndarray | None = None,
        inference_delay_steps: int | None = None,
    ) -> pb.PredictRequest:
        """Encode an observation for the current spec (blocking: call it from a thread)."""
        assert self.spec is not None
        images = {
            cam.name: encode_frame(frames[cam.name], cam, self._jpeg_quality) for cam in self.spec.cameras
        }
        request = pb.PredictRequest(
            session_id=self.session_id,
            images=images,
            state=to_tensor(np.asarray(state, dtype=np.float32)),
            instruction=instruction,
            timeout_ms=self._timeout_ms,
            capture_time_s=capture_time_s,
        )
        if prev_actions is not None and len(prev_actions):
            request.prev_actions.CopyFrom(to_tensor(np.asarray(prev_actions, dtype=np.float32)))
        if inference_delay_steps is not None:
            request.inference_delay_steps = int(inference_delay_steps)
        return request

    def stamp(self, request: pb.PredictRequest) -> int:
        """Give ``request`` the next request id (monotonic for the session) and return it.

        Separate from :meth:`send` so the caller can file the request under its id *before* the
        write is awaited: on a fast server the answer can arrive before ``send`` returns.
        """
        request.request_id = self._next_id
        self._next_id += 1
        return request.request_id

    async def send(self, request: pb.PredictRequest) -> None:
        """Send a stamped request on the stream."""
        call = self._require_call()
        try:
            await call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, self.address) from exc
        except asyncio.InvalidStateError as exc:  # the call already finished (server gone)
            raise ServerUnavailable(f"stream to {self.address} is closed", address=self.address) from exc

    async def receive(self) -> Chunk:
        """The next response, decoded and checked against the spec's shape and finiteness."""
        call = self._require_call()
        try:
            response = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, self.address) from exc
        if response is grpc.aio.EOF:
            raise ServerUnavailable(f"stream to {self.address} closed by the server", address=self.address)
        return self._decode(response, time.monotonic())

    def _decode(self, response: pb.PredictResponse, received: float) -> Chunk:
        status = (
            pb.PredictResponse.Status.Name(response.status)
            if response.status in pb.PredictResponse.Status.values()
            else str(response.status)
        )
        actions = None
        problem = None
        if response.status == pb.PredictResponse.OK:
            actions, problem = self._check_actions(response)
        return Chunk(
            request_id=response.request_id,
            status=status,
            message=response.message,
            actions=actions,
            dt_s=response.dt_s,
            capture_time_s=response.capture_time_s,
            received_s=received,
            server_total_ms=response.timing.total_ms,
            problem=problem,
        )

    def _check_actions(self, response: pb.PredictResponse) -> tuple[np.ndarray | None, str | None]:
        """The server is never trusted: shape, dtype and finiteness are checked here again."""
        assert self.spec is not None
        try:
            actions = from_tensor(response.actions, name="actions")
        except CodecError as exc:
            return None, f"invalid_chunk: {exc}"
        expected = (self.spec.chunk_length, self.spec.action_dim)
        if (
            actions.ndim != 2
            or actions.shape[1] != self.spec.action_dim
            or actions.shape[0] < 1
            or actions.shape[0] > expected[0]
        ):
            return None, f"invalid_chunk: actions shape {list(actions.shape)}, spec says {list(expected)}"
        if not (response.dt_s > 0 and np.isfinite(response.dt_s)):
            return None, f"invalid_chunk: dt_s is {response.dt_s}"
        if abs(response.dt_s - self.spec.dt_s) > 1e-3 * self.spec.dt_s:
            # A different step would stretch or squeeze the chunk in time: not what the spec promised.
            return None, f"invalid_chunk: dt_s is {response.dt_s}, spec says {self.spec.dt_s}"
        actions = actions.astype(np.float64)
        if not np.isfinite(actions).all():
            bad = np.argwhere(~np.isfinite(actions))[0].tolist()
            return None, f"non_finite: actions{bad} is {actions[tuple(bad)]}"
        return actions, None

    async def close(self) -> None:
        """Close the stream and the channel (idempotent)."""
        call, channel = self._call, self._channel
        self._call = self._channel = None
        if call is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.2):
                    await call.done_writing()
            call.cancel()
        if channel is not None:
            await channel.close(grace=None)


class DelayedClient:
    """A :class:`PolicyClient` whose responses reach the agent ``latency +- jitter`` later, as if
    the network were slower (``robot-agent eval --inject-latency-ms``). The server is untouched,
    and responses keep their order."""

    def __init__(
        self, inner: PolicyClient, latency_ms: float, jitter_ms: float = 0.0, rng: random.Random | None = None
    ):
        self._inner = inner
        self._latency = latency_ms / 1000.0
        self._jitter = jitter_ms / 1000.0
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[tuple[float, Chunk | BaseException]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._last_delivery = 0.0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def connect(self) -> pb.PolicySpec:
        await self._stop_reader()
        spec = await self._inner.connect()
        self._queue = asyncio.Queue()
        self._reader = asyncio.create_task(self._read_loop(), name="delayed-reader")
        return spec

    def stamp(self, request: pb.PredictRequest) -> int:
        return self._inner.stamp(request)

    async def send(self, request: pb.PredictRequest) -> None:
        await self._inner.send(request)

    async def _read_loop(self) -> None:
        while True:
            try:
                item: Chunk | BaseException = await self._inner.receive()
            except ServerUnavailable as exc:
                item = exc
            delay = max(0.0, self._latency + self._rng.uniform(-self._jitter, self._jitter))
            deliver_at = max(self._last_delivery, time.monotonic() + delay)
            self._last_delivery = deliver_at
            await self._queue.put((deliver_at, item))
            if isinstance(item, BaseException):
                return

    async def receive(self) -> Chunk:
        deliver_at, item = await self._queue.get()
        await asyncio.sleep(max(0.0, deliver_at - time.monotonic()))
        if isinstance(item, BaseException):
            raise item
        # The agent sees the response when it is delivered, not when it reached this machine.
        return dataclasses.replace(item, received_s=time.monotonic())

    async def _stop_reader(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ServerUnavailable):
                await self._reader
            self._reader = None

    async def close(self) -> None:
        await self._stop_reader()
        await self._inner.close()


def _translate(exc: grpc.aio.AioRpcError, address: str) -> ServerUnavailable:
    code = exc.code()
    name = code.name if code is not None else "UNKNOWN"
    return ServerUnavailable(f"inference server at {address}: {name}: {exc.details()}", address=address)

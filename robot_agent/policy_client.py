"""The agent's side of the ``Predict`` stream: the one place that talks gRPC.

Images are resized and encoded to what ``GetPolicySpec`` asks, in an encoding per camera chosen
so that the whole request fits the server's ``max_request_bytes`` (:func:`plan_encodings`);
request ids are monotonic; every request carries its ``timeout_ms``. ``grpc.aio.AioRpcError`` is
translated here, and only here, into :class:`ServerUnavailable`. Reconnection policy (backoff with
jitter) is :class:`Backoff`; the agent's stream task drives it.

Nothing the server sends is trusted: the spec is checked for sane sizes at connect
(:func:`check_spec`), and every response, down to its raw bytes, is checked before use; a bad one
becomes a :class:`Chunk` with a :class:`ChunkProblem` (the agent holds), never an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import cv2
import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from robot_agent.cameras.base import Frame
from robot_agent.errors import (
    AgentError,
    ConfigError,
    NotAPolicyServer,
    ServerUnavailable,
    SpecMismatch,
    TransportSecurityError,
)
from robot_agent.security import ChannelSecurity, LoadedSecurity, security_error
from vla.codec import (
    MAX_IMAGE_PIXELS,
    CodecError,
    dtype_name,
    encode_image_into,
    encoding_name,
    from_tensor,
    peek_varint,
    to_tensor,
)
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc as pb_grpc

__all__ = [
    "CHUNK_PROBLEM_KINDS",
    "Backoff",
    "Chunk",
    "ChunkProblem",
    "ChunkProblemKind",
    "DelayedClient",
    "PolicyClient",
    "check_spec",
    "encode_frame",
    "estimate_image_bytes",
    "plan_encodings",
]

logger = logging.getLogger(__name__)

_SUPPORTED_ENCODINGS = (pb.Image.RAW_RGB8, pb.Image.JPEG, pb.Image.PNG)
_FLOAT_DTYPES = (pb.Tensor.FLOAT32, pb.Tensor.FLOAT64, pb.Tensor.FLOAT16)
_PREDICT = "/vla.v1.PolicyService/Predict"

# Bounds on a spec from the server: far above any real policy, far below what exhausts memory.
_MAX_CAMERAS = 16
_MAX_NAME_CHARS = 256  # policy name, version, backend, camera names...
_MAX_ACTION_DIM = 64  # also the most state entries and names
_MAX_CHUNK_LENGTH = 10_000
_MAX_DT_S = 10.0
_MAX_MESSAGE_CHARS = 512  # a response's message, as kept in a Chunk (it ends up in logs)

# Worst-case JPEG bytes per pixel by quality, OpenCV's encoder (4:2:0): measured on uniform noise,
# the least compressible content a camera can give (640x480, q50: 0.41, q75: 0.60, q90: 0.90,
# q95: 1.17, q100: 1.98), rounded up by 5-10 %. Real camera frames are 3-10 times smaller.
_JPEG_BYTES_PER_PIXEL = ((50, 0.45), (75, 0.65), (90, 0.95), (95, 1.25), (100, 2.1))
_JPEG_FALLBACK_QUALITIES = (75, 50, 30)  # tried in turn when a request still comes out too big
# What a request holds besides images and tensors: session id, instruction, ids, framing.
_TEXT_RESERVE_BYTES = 2048


#: Why the agent refuses an answer the server called OK: a closed set, each also a hold reason
#: (``robot_agent.reasons.HOLD_REASONS``) and the ``reason`` of the rejected-chunk count.
ChunkProblemKind = Literal[
    "invalid_chunk",  # not the spec's shape, dtype or dt_s, or it does not decode
    "non_finite",  # NaN or inf among the actions
]
CHUNK_PROBLEM_KINDS: tuple[ChunkProblemKind, ...] = get_args(ChunkProblemKind)


@dataclass(frozen=True)
class ChunkProblem:
    """What is wrong with an answer: its ``kind`` (one of :data:`CHUNK_PROBLEM_KINDS`) and a
    ``detail`` for the log (``actions shape [16, 6], spec says [16, 7]``). ``str()`` reads
    ``invalid_chunk: actions shape ...``, at most 512 characters. Raises ``ValueError`` for a
    kind outside the set.

        ChunkProblem("non_finite", "actions[3, 0] is nan")
    """

    kind: ChunkProblemKind
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in CHUNK_PROBLEM_KINDS:
            raise ValueError(
                f"chunk problem kind {self.kind!r}, expected one of {', '.join(CHUNK_PROBLEM_KINDS)}"
            )
        # the detail quotes the server's bytes and ends up in logs: bounded, as the message is
        object.__setattr__(self, "detail", self.detail[: _MAX_MESSAGE_CHARS - len(self.kind) - 2])

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


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
    problem: ChunkProblem | None = None


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
        if base < self._max:
            # Not past the cap: the exponent would grow without end (a server down for 85 min
            # at the defaults made factor**attempt overflow: OverflowError ended the agent).
            self._attempt += 1
        return base * (1.0 + self._rng.uniform(-self._jitter, self._jitter))

    def reset(self) -> None:
        self._attempt = 0


def encode_frame(
    frame: Frame,
    spec: pb.CameraSpec,
    jpeg_quality: int = 90,
    encoding: int | None = None,
    *,
    into: pb.Image | None = None,
) -> pb.Image:
    """Resize ``frame`` to the spec's size (area filter when shrinking) and encode it in
    ``encoding``, by default the first encoding of the spec's list that the agent supports.

    ``into``: the message to fill and return (a request's ``images`` map entry), which saves a
    copy of the bytes over building an Image and copying it in (:func:`vla.codec.encode_image_into`).
    """
    rgb = frame.rgb
    if rgb.shape[0] != spec.height or rgb.shape[1] != spec.width:
        shrinking = rgb.shape[0] > spec.height
        rgb = cv2.resize(
            rgb, (spec.width, spec.height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        )
    if encoding is None:
        encoding = _accepted(spec)[0]
    image = pb.Image() if into is None else into
    encode_image_into(image, rgb, encoding, jpeg_quality=jpeg_quality)
    return image


def _accepted(spec: pb.CameraSpec) -> list[int]:
    """The camera's accepted encodings that the agent can write, server's order; RAW if it lists none."""
    if not spec.encodings:
        return [pb.Image.RAW_RGB8]
    return [e for e in spec.encodings if e in _SUPPORTED_ENCODINGS]


def estimate_image_bytes(height: int, width: int, encoding: int, jpeg_quality: int = 90) -> int:
    """Bound on one encoded ``height x width`` RGB frame's size on the wire, in bytes.

    RAW_RGB8 is exact (``3 * height * width``); PNG is bounded by RAW plus its framing (deflate's
    stored blocks add 5 bytes per 64 KiB, PNG a filter byte per row and 12 bytes per 8 KiB chunk);
    JPEG has no useful worst case (libjpeg-turbo's ``tjBufSize`` allows 3 bytes per pixel, more
    than RAW), so it is bounded by what uniform noise, the least compressible frame a camera
    gives, takes at ``jpeg_quality`` (:data:`_JPEG_BYTES_PER_PIXEL`); :meth:`PolicyClient.build_request`
    re-encodes at lower quality if a frame still comes out larger. Each adds the ``Image``
    message's own fields.
    """
    pixels = height * width
    raw = 3 * pixels
    if encoding == pb.Image.RAW_RGB8:
        body = raw
    elif encoding == pb.Image.PNG:
        body = raw + height + raw // 8192 * 12 + raw // 65535 * 5 + 1024
    elif encoding == pb.Image.JPEG:
        per_pixel = next(b for q, b in _JPEG_BYTES_PER_PIXEL if jpeg_quality <= q)
        body = math.ceil(pixels * per_pixel) + 1024
    else:
        raise ValueError(f"no size estimate for encoding {encoding_name(encoding)}")
    return body + 64


def _reserve_bytes(spec: pb.PolicySpec) -> int:
    """Bytes a request needs besides its images: state, a full chunk of prev_actions, text."""
    state = 4 * spec.state_dim + 32
    prev_actions = 4 * spec.chunk_length * spec.action_dim + 32
    names = sum(len(c.name.encode()) + 16 for c in spec.cameras)
    return state + prev_actions + names + _TEXT_RESERVE_BYTES


def plan_encodings(spec: pb.PolicySpec, jpeg_quality: int = 90, *, address: str = "") -> dict[str, int]:
    """The encoding to send for each camera of ``spec``, so that a request fits its
    ``max_request_bytes`` (0: no limit).

    Each camera starts on the server's preferred encoding (the first of its list the agent can
    write); while the size bound (:func:`estimate_image_bytes`, plus state, a full chunk of
    ``prev_actions`` and 2 KiB of text) is over the limit, the camera whose switch saves the most
    moves to its smallest accepted encoding. Raises :class:`SpecMismatch` naming the limit and
    the sizes when even the smallest choice does not fit, or a camera accepts nothing the agent
    can write.
    """
    where = f"policy at {address}: " if address else ""
    choice: dict[str, int] = {}
    options: dict[str, dict[int, int]] = {}
    for cam in spec.cameras:
        accepted = _accepted(cam)
        if not accepted:
            listed = ", ".join(encoding_name(e) for e in cam.encodings)
            raise SpecMismatch(
                f"{where}camera {cam.name!r} accepts only {listed}; the agent writes RAW_RGB8, JPEG, PNG"
            )
        options[cam.name] = {
            e: estimate_image_bytes(cam.height, cam.width, e, jpeg_quality) for e in accepted
        }
        choice[cam.name] = accepted[0]
    limit = int(spec.max_request_bytes)
    if not limit:
        return choice
    reserve = _reserve_bytes(spec)

    def total() -> int:
        return reserve + sum(options[name][enc] for name, enc in choice.items())

    while total() > limit:
        savings = {name: options[name][enc] - min(options[name].values()) for name, enc in choice.items()}
        name = max(savings, key=lambda n: savings[n])
        if savings[name] <= 0:
            sizes = ", ".join(
                f"{c.name} {c.width}x{c.height} {encoding_name(choice[c.name])} {options[c.name][choice[c.name]]}"
                for c in spec.cameras
            )
            raise SpecMismatch(
                f"{where}a request needs up to {total()} bytes ({sizes}, {reserve} for state, "
                f"prev_actions and text), more than the server's max_request_bytes {limit}; "
                "let the cameras accept JPEG or raise max_request_bytes"
            )
        choice[name] = min(options[name], key=lambda e: options[name][e])
    return choice


def check_spec(spec: pb.PolicySpec, *, address: str = "") -> None:
    """Raise :class:`SpecMismatch` when a spec from the server has sizes no policy has.

    A spec is bytes from the peer like any other: a camera of 60000x60000 would make the agent
    resize every frame to 10 GB, a NaN ``dt_s`` would pass ``dt_s <= 0``. Bounds: at most 16
    cameras of at most :data:`vla.codec.MAX_IMAGE_PIXELS` pixels, names of at most 256
    characters, ``action_dim`` 1-64 (``state_dim`` and the name lists at most 64),
    ``chunk_length`` 1-10000, ``dt_s`` finite in (0, 10] s.
    """
    where = f"policy at {address}: " if address else "policy: "
    for field in ("name", "version", "backend", "precision", "device", "action_space"):
        value = getattr(spec, field)
        if len(value) > _MAX_NAME_CHARS:
            raise SpecMismatch(f"{where}{field} is {len(value)} characters long, at most {_MAX_NAME_CHARS}")
    if len(spec.cameras) > _MAX_CAMERAS:
        raise SpecMismatch(f"{where}{len(spec.cameras)} cameras, at most {_MAX_CAMERAS}")
    names = set()
    for cam in spec.cameras:
        if not cam.name or len(cam.name) > _MAX_NAME_CHARS or not cam.name.isprintable():
            raise SpecMismatch(f"{where}camera name {cam.name[:64]!r} is empty, too long or not printable")
        if cam.name in names:
            raise SpecMismatch(f"{where}camera {cam.name!r} is listed twice")
        names.add(cam.name)
        if cam.height < 1 or cam.width < 1 or cam.height * cam.width > MAX_IMAGE_PIXELS:
            raise SpecMismatch(
                f"{where}camera {cam.name!r} is {cam.width}x{cam.height} (width x height); "
                f"expected 1 to {MAX_IMAGE_PIXELS} pixels"
            )
    if spec.state_dim > _MAX_ACTION_DIM or len(spec.state_names) > _MAX_ACTION_DIM:
        raise SpecMismatch(
            f"{where}state_dim is {spec.state_dim} with {len(spec.state_names)} state_names, "
            f"expected at most {_MAX_ACTION_DIM}"
        )
    if len(spec.action_names) > _MAX_ACTION_DIM:
        raise SpecMismatch(f"{where}{len(spec.action_names)} action_names, at most {_MAX_ACTION_DIM}")
    if not 1 <= spec.action_dim <= _MAX_ACTION_DIM:
        raise SpecMismatch(f"{where}action_dim is {spec.action_dim}, expected 1 to {_MAX_ACTION_DIM}")
    if not 1 <= spec.chunk_length <= _MAX_CHUNK_LENGTH:
        raise SpecMismatch(f"{where}chunk_length is {spec.chunk_length}, expected 1 to {_MAX_CHUNK_LENGTH}")
    if not (math.isfinite(spec.dt_s) and 0 < spec.dt_s <= _MAX_DT_S):
        raise SpecMismatch(f"{where}dt_s is {spec.dt_s}, expected a number of seconds in (0, {_MAX_DT_S:g}]")


#: gRPC keepalive of the agent's channel (gRPC's ``doc/keepalive.md``): a ping every 2 s, calls
#: or not, the connection dropped when one goes unanswered for 2 s, so a dead server or cable is
#: noticed within ~4 s. Matches the server's defaults (``keepalive_min_ping_interval_ms`` 1000 <=
#: 2000, so the server never answers these pings with GOAWAY ``too_many_pings``).
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.min_sent_ping_interval_without_data_ms", 2000),
    ("grpc.http2.ping_timeout_ms", 2000),
)


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
        security: ChannelSecurity | None = None,
    ) -> None:
        self.address = address
        self._security = security if security is not None else ChannelSecurity()
        self._metadata: tuple[tuple[str, str], ...] = ()  # the bearer token, when one is set
        self.session_id = session_id or uuid.uuid4().hex
        self._timeout_ms = int(request_timeout_ms)
        self._connect_timeout = connect_timeout_s
        self._jpeg_quality = jpeg_quality
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.StreamStreamCall | None = None
        self._next_id = 1  # monotonic for the whole session, across reconnects
        self.spec: pb.PolicySpec | None = None
        # (spec, encoding per camera): one tuple, so a thread building a request never sees the
        # encodings of one spec paired with another.
        self._planned: tuple[pb.PolicySpec, dict[str, int]] | None = None
        self._warned_quality = False

    async def connect(self) -> pb.PolicySpec:
        """Connect, read and check the spec, plan the encodings and open the ``Predict`` stream.

        Raises :class:`ServerUnavailable` when the server does not answer (nothing listening, no
        answer within ``connect_timeout_s``), :class:`NotAPolicyServer` when something answers that
        is not a gRPC ``PolicyService`` (:func:`_connect_error`), :class:`SpecMismatch`
        when the spec is malformed (:func:`check_spec`) or no choice of encodings makes a request
        fit its ``max_request_bytes`` (:func:`plan_encodings`).
        """
        await self.close()
        try:  # read on each connect: a renewed certificate or token is used at the next reconnect
            loaded = await asyncio.to_thread(self._security.load)
        except ConfigError as exc:  # fatal, as a certificate the server refuses is
            raise TransportSecurityError(
                f"{self.address}: {exc}", address=self.address, reason="files"
            ) from None
        self._metadata = loaded.metadata
        self._channel = _open_channel(
            self.address,
            loaded,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                *KEEPALIVE_OPTIONS,
            ],
        )
        stub = pb_grpc.PolicyServiceStub(self._channel)
        try:
            # Not wait_for_ready (nor channel_ready()): a failed connection fails the call at once
            # with its reason (refused, not HTTP/2...), where waiting would hide it behind a timeout.
            self.spec = await stub.GetPolicySpec(
                pb.GetPolicySpecRequest(),
                timeout=self._connect_timeout,
                wait_for_ready=False,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            await self.close()
            error = security_error(exc, self.address, self._security) or _connect_error(
                exc, self.address, self._connect_timeout
            )
            if not self._security.tls and "Socket closed" in (exc.details() or ""):
                # A TLS port closes a plaintext connection at once; so can a server going down, so
                # this stays ServerUnavailable (retried), with the likelier cause named.
                error = ServerUnavailable(
                    f"{error} (closed at once: a TLS port? then set server.tls_ca)", address=self.address
                )
            raise error from exc
        try:
            check_spec(self.spec, address=self.address)
            self._plan(self.spec)
        except SpecMismatch:
            await self.close()
            raise
        # Raw bytes in: responses are parsed in ``receive``, so bytes that do not parse are a
        # rejected chunk rather than a broken stream.
        self._call = self._channel.stream_stream(
            _PREDICT, request_serializer=pb.PredictRequest.SerializeToString, response_deserializer=None
        )(metadata=self._metadata)
        return self.spec

    def _plan(self, spec: pb.PolicySpec) -> dict[str, int]:
        """The encodings for ``spec`` (:func:`plan_encodings`), computed once per spec."""
        planned = self._planned
        if planned is not None and planned[0] is spec:
            return planned[1]
        encodings = plan_encodings(spec, self._jpeg_quality, address=self.address)
        self._planned = (spec, encodings)
        if any(encodings[c.name] != _accepted(c)[0] for c in spec.cameras):
            logger.info(
                "Sending %s so that a request fits the server's max_request_bytes %d",
                ", ".join(f"{n} as {encoding_name(e)}" for n, e in encodings.items()),
                spec.max_request_bytes,
            )
        return encodings

    def _require_call(self) -> grpc.aio.StreamStreamCall:
        if self._call is None:
            raise ServerUnavailable(f"not connected to {self.address}", address=self.address)
        return self._call

    def build_request(
        self,
        frames: Mapping[str, Frame | None],
        state: np.ndarray,
        instruction: str,
        capture_time_s: float,
        prev_actions: np.ndarray | None = None,
        inference_delay_steps: int | None = None,
    ) -> pb.PredictRequest:
        """Encode an observation for the current spec (blocking: call it from a thread).

        ``state`` is ``[state_dim]``; ``prev_actions`` ``[n, action_dim]`` (only its first
        ``chunk_length`` rows are sent) or None; ``inference_delay_steps`` is sent capped at
        ``chunk_length``, as the server accepts. Each camera is encoded as planned at connect;
        if the request still comes out over ``max_request_bytes``, JPEG frames are encoded again
        at lower quality, and :class:`SpecMismatch` is raised naming the sizes if nothing fits.
        ``ValueError`` when a camera of the spec has no frame in ``frames`` (absent or None).
        """
        spec = self.spec
        assert spec is not None
        encodings = self._plan(spec)
        cameras = {cam.name: cam for cam in spec.cameras}
        have = {name: frame for name, frame in frames.items() if frame is not None}
        missing = [name for name in cameras if name not in have]
        if missing:
            raise ValueError(f"no frame from camera(s) {', '.join(missing)} the policy expects")
        request = pb.PredictRequest(
            session_id=self.session_id,
            state=to_tensor(np.asarray(state, dtype=np.float32)),
            instruction=instruction,
            timeout_ms=self._timeout_ms,
            capture_time_s=capture_time_s,
        )
        for name, cam in cameras.items():  # into the map entries: no copy of each image's bytes
            encode_frame(have[name], cam, self._jpeg_quality, encodings[name], into=request.images[name])
        horizon = spec.chunk_length or None  # a spec set by hand may leave it 0: no cap then
        if prev_actions is not None and len(prev_actions):
            rows = np.asarray(prev_actions, dtype=np.float32)[:horizon]
            request.prev_actions.CopyFrom(to_tensor(rows))
        if inference_delay_steps is not None:
            steps = max(0, int(inference_delay_steps))
            request.inference_delay_steps = min(steps, horizon) if horizon else steps
        limit = int(spec.max_request_bytes)
        if limit and request.ByteSize() > limit:
            self._shrink(request, have, cameras, encodings, limit)
        return request

    def _shrink(
        self,
        request: pb.PredictRequest,
        frames: Mapping[str, Frame],
        cameras: Mapping[str, pb.CameraSpec],
        encodings: Mapping[str, int],
        limit: int,
    ) -> None:
        """Encode the JPEG frames of ``request`` again at lower quality until it fits ``limit``."""
        jpeg = [name for name, e in encodings.items() if e == pb.Image.JPEG]
        for quality in (q for q in _JPEG_FALLBACK_QUALITIES if jpeg and q < self._jpeg_quality):
            for name in jpeg:
                encode_frame(frames[name], cameras[name], quality, pb.Image.JPEG, into=request.images[name])
            if request.ByteSize() <= limit:
                if not self._warned_quality:
                    self._warned_quality = True
                    logger.warning(
                        "A request at JPEG quality %d was over max_request_bytes %d; sent at quality %d",
                        self._jpeg_quality,
                        limit,
                        quality,
                    )
                return
        sizes = ", ".join(
            f"{name} {encoding_name(request.images[name].encoding)} {request.images[name].ByteSize()}"
            for name in cameras  # the spec's order: a proto map's order is arbitrary
        )
        raise SpecMismatch(
            f"policy at {self.address}: a request is {request.ByteSize()} bytes ({sizes}), more than "
            f"the server's max_request_bytes {limit}"
        )

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
            data = await call.read()
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, self.address) from exc
        if data is grpc.aio.EOF:
            raise ServerUnavailable(f"stream to {self.address} closed by the server", address=self.address)
        received = time.monotonic()
        if isinstance(data, pb.PredictResponse):  # a channel that parses for us (tests)
            return self._decode(data, received)
        try:
            response = pb.PredictResponse.FromString(data)
        except DecodeError as exc:
            status = peek_varint(data, 2)  # PredictResponse.status
            request_id = peek_varint(data, 1) or 0  # PredictResponse.request_id
            return _rejected(request_id, status, f"response does not parse: {exc}", received)
        return self._decode(response, received)

    def _decode(self, response: pb.PredictResponse, received: float) -> Chunk:
        """Check ``response`` and make it a :class:`Chunk`; never raises (a bug here is a problem)."""
        try:
            return self._chunk(response, received)
        except Exception as exc:  # the server is never trusted: whatever it sent, the agent holds
            logger.exception("Checking response %d failed", response.request_id)
            detail = f"response could not be checked: {type(exc).__name__}: {exc}"
            return _rejected(response.request_id, response.status, detail, received)

    def _chunk(self, response: pb.PredictResponse, received: float) -> Chunk:
        actions = None
        problem = None
        if response.status == pb.PredictResponse.OK:
            actions, problem = self._check_actions(response)
        return Chunk(
            request_id=response.request_id,
            status=_status_name(response.status),
            message=response.message[:_MAX_MESSAGE_CHARS],
            actions=actions,
            dt_s=response.dt_s,
            capture_time_s=response.capture_time_s,
            received_s=received,
            server_total_ms=response.timing.total_ms,
            problem=problem,
        )

    def _check_actions(self, response: pb.PredictResponse) -> tuple[np.ndarray | None, ChunkProblem | None]:
        """The server is never trusted: shape, dtype and finiteness are checked here again."""
        assert self.spec is not None
        tensor = response.actions
        expected = (self.spec.chunk_length, self.spec.action_dim)
        # dtype and shape are checked as Python integers before anything is decoded.
        if tensor.dtype not in _FLOAT_DTYPES:
            return None, ChunkProblem(
                "invalid_chunk", f"actions dtype {dtype_name(tensor.dtype)}, expected FLOAT32"
            )
        shape = list(tensor.shape)
        if len(shape) != 2 or shape[1] != expected[1] or not 1 <= shape[0] <= expected[0]:
            shown = shape if len(shape) <= 8 else [*shape[:8], "..."]
            return None, ChunkProblem("invalid_chunk", f"actions shape {shown}, spec says {list(expected)}")
        try:
            actions = from_tensor(tensor, name="actions")
        except CodecError as exc:
            return None, ChunkProblem("invalid_chunk", str(exc))
        if not (response.dt_s > 0 and np.isfinite(response.dt_s)):
            return None, ChunkProblem("invalid_chunk", f"dt_s is {response.dt_s}")
        if abs(response.dt_s - self.spec.dt_s) > 1e-3 * self.spec.dt_s:
            # A different step would stretch or squeeze the chunk in time: not what the spec promised.
            return None, ChunkProblem("invalid_chunk", f"dt_s is {response.dt_s}, spec says {self.spec.dt_s}")
        actions = actions.astype(np.float64)
        if not np.isfinite(actions).all():
            bad = np.argwhere(~np.isfinite(actions))[0].tolist()
            return None, ChunkProblem("non_finite", f"actions{bad} is {actions[tuple(bad)]}")
        return actions, None

    async def wait_until_serving(self, timeout_s: float, poll_s: float = 0.5) -> bool:
        """Whether the server's ``grpc.health.v1`` status turned ``SERVING`` within ``timeout_s``
        (seconds; polled every ``poll_s``). The server answers the spec as soon as it binds but
        health stays ``NOT_SERVING`` until its model is loaded and warm, so a request sent before
        that waits behind the warm-up (and is answered ``LATE``). A server without the health
        service counts as serving. Call after :meth:`connect`."""
        if self._channel is None:
            raise RuntimeError("wait_until_serving() before connect()")
        stub = health_pb2_grpc.HealthStub(self._channel)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                answer = await stub.Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=max(0.1, min(poll_s * 4, timeout_s))
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return True
            else:
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            if time.monotonic() + poll_s > deadline:
                return False
            await asyncio.sleep(poll_s)

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

    @property
    def spec(self) -> pb.PolicySpec | None:
        """The inner client's spec (None before :meth:`connect`)."""
        return self._inner.spec

    def build_request(
        self,
        frames: Mapping[str, Frame | None],
        state: np.ndarray,
        instruction: str,
        capture_time_s: float,
        prev_actions: np.ndarray | None = None,
        inference_delay_steps: int | None = None,
    ) -> pb.PredictRequest:
        """The inner client's request (:meth:`PolicyClient.build_request`); the delay is on answers."""
        return self._inner.build_request(
            frames, state, instruction, capture_time_s, prev_actions, inference_delay_steps
        )

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


def _open_channel(
    address: str, loaded: LoadedSecurity, *, options: list[tuple[str, object]]
) -> grpc.aio.Channel:
    """A TLS channel when ``loaded`` has credentials (with its server name override), else plaintext."""
    if loaded.credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, loaded.credentials, options=[*options, *loaded.options])


def _rejected(request_id: int, status: int | None, detail: str, received: float) -> Chunk:
    """A chunk for a response that cannot be read or checked: ``invalid_chunk``, no actions."""
    return Chunk(
        request_id=request_id,
        status=_status_name(pb.PredictResponse.STATUS_UNSPECIFIED if status is None else status),
        message=detail[:_MAX_MESSAGE_CHARS],
        actions=None,
        dt_s=0.0,
        capture_time_s=math.nan,
        received_s=received,
        server_total_ms=math.nan,
        problem=ChunkProblem("invalid_chunk", detail),
    )


def _status_name(status: int) -> str:
    """``OK`` for a known :class:`pb.PredictResponse.Status` value, else the number as text."""
    values = pb.PredictResponse.Status.values()
    return pb.PredictResponse.Status.Name(status) if status in values else str(status)


# gRPC core's words for a peer that accepted the connection but does not speak gRPC over HTTP/2:
# an HTTP/1 server answers the HTTP/2 preface with text ("Expected SETTINGS frame as the first
# frame, got frame type 79": 'O' of "HTTP/1.0 505"); an HTTP/2 server that is not gRPC answers
# with an HTTP status or a content-type gRPC does not accept.
_NOT_GRPC = (
    "Failed parsing HTTP/2",
    "Expected SETTINGS frame",
    "Trying to connect an http1.x server",
    "Received http2 header with status",
    "invalid content-type",
)


def _connect_error(exc: grpc.aio.AioRpcError, address: str, timeout_s: float) -> AgentError:
    """``GetPolicySpec``'s failure as the agent's error: who answered, if anyone.

    :class:`NotAPolicyServer` (not retried) for a peer that answered without being a
    ``PolicyService``: UNIMPLEMENTED from a gRPC server without the service, a protocol error
    from an HTTP server. :class:`ServerUnavailable` (retried) for nothing listening (connection
    refused), no answer in time, and everything else.
    """
    code = exc.code()
    details = exc.details() or ""
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return NotAPolicyServer(
            f"{address} is a gRPC server without vla.v1.PolicyService (GetPolicySpec: UNIMPLEMENTED: "
            f"{details}); not retrying: is --server the inference server's gRPC port?",
            address=address,
        )
    if any(marker in details for marker in _NOT_GRPC):
        last = details.rsplit("last error: ", 1)[-1]
        return NotAPolicyServer(
            f"{address} answered, but not as a gRPC server (an HTTP server, or TLS?): {last}; "
            "not retrying: is --server the inference server's gRPC port?",
            address=address,
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServerUnavailable(
            f"no inference server answering at {address} within {timeout_s:g} s", address=address
        )
    if "Connection refused" in details:
        return ServerUnavailable(f"nothing listening at {address} (connection refused)", address=address)
    return _translate(exc, address)


def _translate(exc: grpc.aio.AioRpcError, address: str) -> ServerUnavailable:
    code = exc.code()
    name = code.name if code is not None else "UNKNOWN"
    return ServerUnavailable(f"inference server at {address}: {name}: {exc.details()}", address=address)

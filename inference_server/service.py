"""The ``vla.v1.PolicyService`` servicer: streams in, checked requests to the worker, answers out.

Each Predict stream has a reader that checks and submits requests in arrival order and a writer
(the handler itself) that sends answers as they complete, so a LATE or INVALID answer never waits
behind a computation. The event loop only validates and decodes; the model runs on the worker.

Requests are parsed here, not by gRPC (:meth:`PolicyService.add_to_server`): bytes that are not a
``PredictRequest`` (bad UTF-8 in a string, a truncated field) get an INVALID answer on a live
stream, where gRPC's own parser would end the stream with UNKNOWN and a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from inference_server.error_log import ErrorLog
from inference_server.errors import InvalidRequest
from inference_server.result import Result, Status
from inference_server.validation import decode_request, needs_decoding, shown
from inference_server.worker import ModelWorker, Pending
from vla.codec import peek_varint, to_tensor
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc

if TYPE_CHECKING:
    from inference_server.bundle import Bundle
    from inference_server.metrics import ServerMetrics

__all__ = [
    "MAX_OUTSTANDING_PER_STREAM",
    "MAX_UNSENT_PER_STREAM",
    "Limits",
    "PolicyService",
    "Undecodable",
    "parse_request",
    "policy_spec",
    "transport_limit",
]

logger = logging.getLogger(__name__)

#: Most requests of one stream waiting or computing at once. An agent has one session per stream
#: and so at most two (one computing, the next waiting); the rest get INVALID.
MAX_OUTSTANDING_PER_STREAM = 16

#: Most answers of one stream waiting or computing plus computed but not yet sent. Past it the
#: stream's next request is not read until the client reads answers, so a client that sends but
#: never reads is held back by HTTP/2 flow control instead of growing the server's queue.
MAX_UNSENT_PER_STREAM = 2 * MAX_OUTSTANDING_PER_STREAM


@dataclass(frozen=True)
class Limits:
    """Limits per client (:class:`~inference_server.config.ServerConfig` fields of the same names).

    ``max_streams`` open Predict streams and ``max_sessions`` distinct session ids on them: past
    either, the stream is ended with RESOURCE_EXHAUSTED naming the limit. ``max_request_rate_hz``
    per session, a token bucket holding ``max_request_burst`` requests: a request over it is
    answered INVALID without being decoded, and its stream is not read again until the bucket
    holds a request. ``idle_stream_timeout_s`` (0: never): a stream with no request and nothing
    to answer for that long is ended with DEADLINE_EXCEEDED.
    """

    max_streams: int = 64
    max_sessions: int = 64
    max_request_rate_hz: float = 100.0
    max_request_burst: int = 50
    idle_stream_timeout_s: float = 60.0


@dataclass
class _Session:
    """A session id on open streams: how many hold it and its request token bucket."""

    tokens: float
    refilled: float
    streams: int = 0


class _Refused(Exception):
    """Ends a stream with ``code`` and ``details`` (a limit, not a fault)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


#: An answer on its way to the writer: the response, its status, when its request arrived.
_Answer = tuple[pb.PredictResponse, Status, float]

#: The one place an internal :class:`Status` becomes the wire's.
_WIRE_STATUS: dict[Status, pb.PredictResponse.Status] = {
    Status.OK: pb.PredictResponse.OK,
    Status.LATE: pb.PredictResponse.LATE,
    Status.INVALID: pb.PredictResponse.INVALID,
    Status.ERROR: pb.PredictResponse.ERROR,
}


def policy_spec(bundle: Bundle, *, max_batch: int, max_request_bytes: int) -> pb.PolicySpec:
    """The spec the server announces, straight from the checked bundle."""
    return pb.PolicySpec(
        name=bundle.name,
        version=bundle.version,
        backend=bundle.backend,
        precision=bundle.precision,
        device=bundle.device,
        cameras=[
            pb.CameraSpec(
                name=c.name,
                height=c.height,
                width=c.width,
                encodings=[pb.Image.Encoding.Value(e) for e in c.encodings],  # type: ignore[misc]
            )
            for c in bundle.cameras
        ],
        state_dim=bundle.state_dim,
        action_dim=bundle.action_dim,
        action_space=bundle.action_space,
        action_names=list(bundle.action_names),
        chunk_length=bundle.chunk_length,
        dt_s=bundle.dt_s,
        max_batch=max_batch,
        state_names=list(bundle.state_names),
        max_request_bytes=max_request_bytes,
    )


@dataclass(frozen=True)
class Undecodable:
    """What the stream yields for bytes that are not a ``PredictRequest`` it will read.

    ``request_id`` is read from the raw bytes when it can be (else 0), so the INVALID answer can
    still be matched to the request; ``message`` is that answer's text, naming what is wrong.
    """

    request_id: int
    message: str


def transport_limit(max_request_bytes: int) -> int:
    """The gRPC ``max_receive_message_length`` for a server taking ``max_request_bytes``.

    A margin above the request limit (twice it, plus 64 MiB), so that an oversize request still
    reaches :func:`parse_request` and gets INVALID naming its size on a live stream; only a message
    past this transport limit ends the stream (RESOURCE_EXHAUSTED, from gRPC). The bytes are only
    buffered, never parsed, so the margin costs memory only while such a message is read.
    """
    return 2 * max_request_bytes + (64 << 20)


def parse_request(data: bytes, max_request_bytes: int = 0) -> pb.PredictRequest | Undecodable:
    """The Predict stream's request deserializer: never raises, so the stream survives bad bytes.

    Bytes over ``max_request_bytes`` (0: no limit) are refused before they are parsed.
    """
    if max_request_bytes and len(data) > max_request_bytes:
        return Undecodable(
            peek_varint(data, 2) or 0,  # field 2: request_id
            f"request: {len(data)} bytes, larger than max_request_bytes {max_request_bytes}",
        )
    try:
        request: pb.PredictRequest = pb.PredictRequest.FromString(data)
    except DecodeError as exc:
        return Undecodable(peek_varint(data, 2) or 0, f"request: not a valid vla.v1.PredictRequest ({exc})")
    return request


class PolicyService(policy_pb2_grpc.PolicyServiceServicer):
    """Serves one bundle through one :class:`ModelWorker`."""

    def __init__(
        self,
        bundle: Bundle,
        worker: ModelWorker,
        *,
        metrics: ServerMetrics,
        max_batch: int,
        max_request_bytes: int,
        decode_executor: Executor | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bundle = bundle
        self._worker = worker
        self._metrics = metrics
        self._max_request_bytes = max_request_bytes
        self._decode_executor = decode_executor
        self._clock = clock
        self._errors = ErrorLog(logger, clock=clock)  # a decoder bug hit by every request logs once
        self._spec = policy_spec(bundle, max_batch=max_batch, max_request_bytes=max_request_bytes)
        self._closing = asyncio.Event()
        self._streams = itertools.count(1)
        self._open_streams = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._limits = limits if limits is not None else Limits()
        self._sessions: dict[str, _Session] = {}
        self._backlogs: dict[int, Callable[[], int]] = {}

    @property
    def open_streams(self) -> int:
        """Predict streams now open."""
        return self._open_streams

    @property
    def live_sessions(self) -> int:
        """Distinct session ids on the open streams (at most ``max_sessions``)."""
        return len(self._sessions)

    def backlogs(self) -> list[int]:
        """Per open stream: requests waiting or computing plus answers not yet sent.

        Each is at most :data:`MAX_UNSENT_PER_STREAM` plus one (the request being handled).
        """
        return [backlog() for backlog in self._backlogs.values()]

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register ``vla.v1.PolicyService`` on ``server``, as the generated
        ``add_PolicyServiceServicer_to_server`` does but with :func:`parse_request` for Predict."""
        handlers = {
            "GetPolicySpec": grpc.unary_unary_rpc_method_handler(
                self.GetPolicySpec,
                request_deserializer=pb.GetPolicySpecRequest.FromString,
                response_serializer=pb.PolicySpec.SerializeToString,
            ),
            "Predict": grpc.stream_stream_rpc_method_handler(
                self._predict_sized_on_wire,
                request_deserializer=functools.partial(
                    parse_request, max_request_bytes=self._max_request_bytes
                ),
                response_serializer=pb.PredictResponse.SerializeToString,
            ),
        }
        name = pb.DESCRIPTOR.services_by_name["PolicyService"].full_name
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)

    async def _predict_sized_on_wire(
        self, request_iterator: AsyncIterator[pb.PredictRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PredictResponse]:
        """Predict as :meth:`add_to_server` registers it: :func:`parse_request` has refused every
        oversize request from its wire bytes, so the size is not computed again (``ByteSize()``
        re-serialises the message). Per handler, not per service: the same service registered
        elsewhere (the generated ``add_PolicyServiceServicer_to_server``) still checks sizes."""
        async for response in self.Predict(request_iterator, context, _sized_on_wire=True):
            yield response

    async def GetPolicySpec(
        self, request: pb.GetPolicySpecRequest, context: grpc.aio.ServicerContext
    ) -> pb.PolicySpec:
        return self._spec

    async def Predict(
        self,
        request_iterator: AsyncIterator[pb.PredictRequest],
        context: grpc.aio.ServicerContext,
        _sized_on_wire: bool = False,
    ) -> AsyncIterator[pb.PredictResponse]:
        limit = self._limits.max_streams
        if self._open_streams >= limit:
            logger.info("A Predict stream from %s is refused: %d streams are open", context.peer(), limit)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"max_streams: {self._open_streams} Predict streams are open on this server, the most "
                f"it takes (max_streams {limit}); close one or raise --max-streams",
            )
        stream_id = next(self._streams)
        out: asyncio.Queue[_Answer | None] = asyncio.Queue()
        outstanding: set[Pending] = set()
        sent = asyncio.Event()  # an answer left ``out``: the reader may have room again
        sessions: set[str] = set()
        self._stream_opened()
        self._backlogs[stream_id] = lambda: out.qsize() + len(outstanding)
        reader = asyncio.create_task(
            self._read(stream_id, request_iterator, out, outstanding, sent, sessions, _sized_on_wire)
        )
        refused: _Refused | None = None
        try:
            while (item := await out.get()) is not None:
                sent.set()
                response, status, arrival = item
                _stamp_sent(response.timing, arrival, self._clock())
                yield response
                self._metrics.requests.labels(status=status.value).inc()
                self._metrics.request_seconds.observe(self._clock() - arrival)
            try:
                await reader  # surfaces a reader failure as the RPC's error
            except _Refused as exc:
                refused = exc
        finally:
            reader.cancel()
            for p in outstanding:
                self._worker.discard(p)
            self._release(sessions)
            del self._backlogs[stream_id]
            self._stream_closed()
        if refused is not None:
            await context.abort(refused.code, refused.details)

    async def close(self, timeout: float) -> None:
        """Stop reading requests on every stream, let in-flight ones finish, end the streams."""
        self._closing.set()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            logger.warning("%d Predict stream(s) still open after %.1f s", self._open_streams, timeout)
        self._errors.flush()

    # -- internals -------------------------------------------------------------------------------

    def _stream_opened(self) -> None:
        self._open_streams += 1
        self._idle.clear()
        self._metrics.sessions.inc()

    def _stream_closed(self) -> None:
        self._open_streams -= 1
        self._metrics.sessions.dec()
        if self._open_streams == 0:
            self._idle.set()

    def _release(self, sessions: set[str]) -> None:
        for name in sessions:
            session = self._sessions[name]
            session.streams -= 1
            if session.streams == 0:
                del self._sessions[name]
        sessions.clear()

    def _admit(self, session_id: str, sessions: set[str]) -> float:
        """Take one request of ``session_id`` from its bucket: 0.0, or the seconds until one is there.

        Raises :class:`_Refused` (RESOURCE_EXHAUSTED) for a new session past ``max_sessions``.
        """
        limits = self._limits
        now = self._clock()
        session = self._sessions.get(session_id)
        if session is None:
            if len(self._sessions) >= limits.max_sessions:
                raise _Refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"max_sessions: {len(self._sessions)} sessions are open on this server, the most it "
                    f"takes (max_sessions {limits.max_sessions}); session_id {shown(session_id)} is refused: "
                    "close one or raise --max-sessions",
                )
            session = self._sessions[session_id] = _Session(float(limits.max_request_burst), now)
        if session_id not in sessions:
            sessions.add(session_id)
            session.streams += 1
        rate = limits.max_request_rate_hz
        session.tokens = min(
            float(limits.max_request_burst), session.tokens + (now - session.refilled) * rate
        )
        session.refilled = now
        if session.tokens >= 1.0:
            session.tokens -= 1.0
            return 0.0
        return (1.0 - session.tokens) / rate

    async def _read(
        self,
        stream_id: int,
        requests: AsyncIterator[pb.PredictRequest | Undecodable],
        out: asyncio.Queue[_Answer | None],
        outstanding: set[Pending],
        sent: asyncio.Event,
        sessions: set[str],
        sized_on_wire: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        closing = asyncio.ensure_future(self._closing.wait())
        it = aiter(requests)
        next_request: asyncio.Future[pb.PredictRequest | Undecodable] | None = None
        idle_s = self._limits.idle_stream_timeout_s or None
        try:
            while not self._closing.is_set():
                while out.qsize() + len(outstanding) >= MAX_UNSENT_PER_STREAM and not closing.done():
                    sent.clear()  # the client is not reading answers: stop reading its requests
                    await _first(sent.wait(), closing)
                next_request = asyncio.ensure_future(anext(it))
                while not (next_request.done() or closing.done()):
                    await asyncio.wait(
                        (next_request, closing), timeout=idle_s, return_when=asyncio.FIRST_COMPLETED
                    )
                    busy = bool(outstanding) or not out.empty()
                    if not (next_request.done() or closing.done() or busy):
                        raise _Refused(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            f"idle_stream_timeout_s: no request on this stream for {idle_s:g} s "
                            f"(idle_stream_timeout_s {idle_s:g}); open a new stream to go on",
                        )
                if not next_request.done():
                    break  # shutting down: take no new work
                try:
                    request = next_request.result()
                except StopAsyncIteration:
                    break
                arrival = self._clock()
                wait_s = await self._handle(
                    stream_id, request, arrival, loop, out, outstanding, sessions, sized_on_wire
                )
                if wait_s > 0:  # over the rate: read nothing more until the bucket holds a request
                    await asyncio.wait((closing,), timeout=wait_s)
            if outstanding:
                await asyncio.wait([p.future for p in outstanding])
        finally:
            closing.cancel()
            if next_request is not None:
                # When the client goes away, this reader is cancelled while ``anext()`` waits; the
                # read then ends with StopAsyncIteration, which asyncio would log as never retrieved.
                next_request.cancel()
                next_request.add_done_callback(_retrieve)
            out.put_nowait(None)

    async def _handle(
        self,
        stream_id: int,
        request: pb.PredictRequest | Undecodable,
        arrival: float,
        loop: asyncio.AbstractEventLoop,
        out: asyncio.Queue[_Answer | None],
        outstanding: set[Pending],
        sessions: set[str],
        sized_on_wire: bool,
    ) -> float:
        """Answer or submit ``request``; the seconds the stream must wait before its next request.
        ``sized_on_wire``: :func:`parse_request` has already refused it if oversize."""
        if isinstance(request, Undecodable):
            logger.debug(
                "Request %d on stream %d is refused: %s", request.request_id, stream_id, request.message
            )
            result = Result(Status.INVALID, request.message)
            answer = pb.PredictRequest(request_id=request.request_id)
            out.put_nowait(self._answer(answer, arrival, self._clock(), result))
            return 0.0
        session_id = request.session_id or f"stream-{stream_id}"
        wait_s = self._admit(session_id, sessions)
        if wait_s > 0:
            limits = self._limits
            result = Result(
                Status.INVALID,
                f"request: session_id {shown(session_id)} is over max_request_rate_hz "
                f"{limits.max_request_rate_hz:g} (bursts of {limits.max_request_burst}); not computed: "
                f"send at most {limits.max_request_rate_hz:g} requests/s per session",
            )
            out.put_nowait(self._answer(request, arrival, self._clock(), result))
            return wait_s
        max_bytes = None if sized_on_wire else self._max_request_bytes
        try:
            if self._decode_executor is not None and needs_decoding(request):
                obs = await loop.run_in_executor(
                    self._decode_executor, decode_request, request, self._bundle, max_bytes
                )
            else:
                obs = decode_request(request, self._bundle, max_bytes)
        except InvalidRequest as exc:
            logger.debug(
                "Request %d of %s is invalid: %s", request.request_id, shown(request.session_id), exc
            )
            result = Result(Status.INVALID, str(exc))
            out.put_nowait(self._answer(request, arrival, self._clock(), result))
            return 0.0
        except Exception as exc:  # a decoder bug must cost one answer, not the stream
            self._errors.exception(exc, "Decoding a request failed")
            result = Result(Status.ERROR, f"server failed to decode the request: {type(exc).__name__}: {exc}")
            out.put_nowait(self._answer(request, arrival, self._clock(), result))
            return 0.0
        if len(outstanding) >= MAX_OUTSTANDING_PER_STREAM:
            # Latest-wins is per session, so a stream naming a new session in every request could
            # queue decoded observations without bound; one robot session has at most two.
            result = Result(
                Status.INVALID,
                f"request: {len(outstanding)} requests of this stream are still waiting or computing "
                f"(at most {MAX_OUTSTANDING_PER_STREAM}); one stream serves one session",
            )
            out.put_nowait(self._answer(request, arrival, self._clock(), result))
            return 0.0
        enqueued = self._clock()
        pending = Pending(
            session=session_id,
            request_id=request.request_id,
            observation=obs,
            enqueued=enqueued,
            deadline=arrival + request.timeout_ms / 1e3 if request.timeout_ms else None,
            loop=loop,
            future=loop.create_future(),
            stream=stream_id,
        )
        outstanding.add(pending)

        def done(future: asyncio.Future[Result]) -> None:
            outstanding.discard(pending)
            if not future.cancelled():
                out.put_nowait(self._answer(request, arrival, enqueued, future.result()))

        pending.future.add_done_callback(done)
        self._worker.submit(pending)
        return 0.0

    def _answer(self, request: pb.PredictRequest, arrival: float, enqueued: float, result: Result) -> _Answer:
        """The answer to ``request`` for the writer: the response, its status and when it arrived.

        ``timing`` (ms) splits arrival to send into parts that add up to ``total_ms``:
        ``preprocess_ms`` arrival to queued plus building the batch, ``queue_ms`` waiting for the
        worker, ``inference_ms`` the model, ``postprocess_ms`` the rest (checking and
        un-normalising, the hop back to the event loop, building this answer, waiting for the
        stream's writer); the writer sets ``total_ms`` and the last part of ``postprocess_ms``
        just before it hands the answer to gRPC (:func:`_stamp_sent`).
        """
        response = pb.PredictResponse(
            request_id=request.request_id,
            status=_WIRE_STATUS[result.status],
            message=result.message,
            dt_s=self._bundle.dt_s,
            capture_time_s=request.capture_time_s,
        )
        t = self._clock()
        if result.actions is not None:
            response.actions.CopyFrom(to_tensor(result.actions))
        timing = response.timing
        timing.preprocess_ms = ((enqueued - arrival) + result.stack_s) * 1e3
        timing.queue_ms = result.queue_s * 1e3
        timing.inference_ms = result.inference_s * 1e3
        timing.postprocess_ms = (result.postprocess_s + self._clock() - t) * 1e3
        timing.batch_size = result.batch_size
        return response, result.status, arrival


async def _first(wait: Coroutine[Any, Any, Any], other: asyncio.Future[Any]) -> None:
    """Await whichever ends first, ``wait`` or ``other``; ``wait`` is cancelled if still running."""
    task = asyncio.ensure_future(wait)
    try:
        await asyncio.wait((task, other), return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()


def _stamp_sent(timing: pb.Timing, arrival: float, now: float) -> None:
    """Set ``total_ms`` to arrival to ``now`` (the answer goes to gRPC) and, for a computed
    request (``batch_size`` > 0), ``postprocess_ms`` to what the other parts leave of it: the hop
    back from the worker thread and the wait for the writer are in no other part. Times in ms;
    ``arrival`` and ``now`` in seconds on one clock."""
    timing.total_ms = (now - arrival) * 1e3
    if timing.batch_size:
        others = timing.preprocess_ms + timing.queue_ms + timing.inference_ms
        timing.postprocess_ms = max(timing.postprocess_ms, timing.total_ms - others)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen: nothing is left to act on, and nothing to log."""
    if not future.cancelled():
        future.exception()

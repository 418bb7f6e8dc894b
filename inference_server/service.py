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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError

from inference_server.batcher import ModelWorker, Pending, Result
from inference_server.error_log import ErrorLog
from inference_server.errors import InvalidRequest
from inference_server.validation import decode_request, needs_decoding, shown
from vla.codec import peek_varint, to_tensor
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc

if TYPE_CHECKING:
    from inference_server.bundle import Bundle
    from inference_server.metrics import ServerMetrics

__all__ = [
    "MAX_OUTSTANDING_PER_STREAM",
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

_STATUS_LABEL = {
    pb.PredictResponse.OK: "ok",
    pb.PredictResponse.LATE: "late",
    pb.PredictResponse.INVALID: "invalid",
    pb.PredictResponse.ERROR: "error",
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
                encodings=[pb.Image.Encoding.Value(e) for e in c.encodings],
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
        return pb.PredictRequest.FromString(data)
    except DecodeError as exc:
        return Undecodable(peek_varint(data, 2) or 0, f"request: not a valid vla.v1.PredictRequest ({exc})")


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
                self.Predict,
                request_deserializer=functools.partial(
                    parse_request, max_request_bytes=self._max_request_bytes
                ),
                response_serializer=pb.PredictResponse.SerializeToString,
            ),
        }
        name = pb.DESCRIPTOR.services_by_name["PolicyService"].full_name
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)

    async def GetPolicySpec(
        self, request: pb.GetPolicySpecRequest, context: grpc.aio.ServicerContext
    ) -> pb.PolicySpec:
        return self._spec

    async def Predict(
        self, request_iterator: AsyncIterator[pb.PredictRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.PredictResponse]:
        stream_id = next(self._streams)
        out: asyncio.Queue[tuple[pb.PredictResponse, float] | None] = asyncio.Queue()
        outstanding: set[Pending] = set()
        self._stream_opened()
        reader = asyncio.create_task(self._read(stream_id, request_iterator, out, outstanding))
        try:
            while (item := await out.get()) is not None:
                response, arrival = item
                yield response
                self._metrics.requests.labels(status=_STATUS_LABEL.get(response.status, "error")).inc()
                self._metrics.request_seconds.observe(self._clock() - arrival)
            await reader  # surfaces a reader failure as the RPC's error
        finally:
            reader.cancel()
            for p in outstanding:
                self._worker.discard(p)
            self._stream_closed()

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

    async def _read(
        self,
        stream_id: int,
        requests: AsyncIterator[pb.PredictRequest | Undecodable],
        out: asyncio.Queue[tuple[pb.PredictResponse, float] | None],
        outstanding: set[Pending],
    ) -> None:
        loop = asyncio.get_running_loop()
        closing = asyncio.ensure_future(self._closing.wait())
        it = aiter(requests)
        next_request: asyncio.Future[pb.PredictRequest | Undecodable] | None = None
        try:
            while not self._closing.is_set():
                next_request = asyncio.ensure_future(anext(it))
                await asyncio.wait((next_request, closing), return_when=asyncio.FIRST_COMPLETED)
                if not next_request.done():
                    break  # shutting down: take no new work
                try:
                    request = next_request.result()
                except StopAsyncIteration:
                    break
                arrival = self._clock()
                await self._handle(stream_id, request, arrival, loop, out, outstanding)
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
        out: asyncio.Queue[tuple[pb.PredictResponse, float] | None],
        outstanding: set[Pending],
    ) -> None:
        if isinstance(request, Undecodable):
            logger.debug(
                "Request %d on stream %d is refused: %s", request.request_id, stream_id, request.message
            )
            result = Result(pb.PredictResponse.INVALID, request.message)
            answer = pb.PredictRequest(request_id=request.request_id)
            out.put_nowait((self._response(answer, arrival, self._clock(), result), arrival))
            return
        try:
            if self._decode_executor is not None and needs_decoding(request):
                obs = await loop.run_in_executor(
                    self._decode_executor, decode_request, request, self._bundle, self._max_request_bytes
                )
            else:
                obs = decode_request(request, self._bundle, self._max_request_bytes)
        except InvalidRequest as exc:
            logger.debug(
                "Request %d of %s is invalid: %s", request.request_id, shown(request.session_id), exc
            )
            result = Result(pb.PredictResponse.INVALID, str(exc))
            out.put_nowait((self._response(request, arrival, self._clock(), result), arrival))
            return
        except Exception as exc:  # a decoder bug must cost one answer, not the stream
            self._errors.exception(exc, "Decoding a request failed")
            result = Result(
                pb.PredictResponse.ERROR, f"server failed to decode the request: {type(exc).__name__}: {exc}"
            )
            out.put_nowait((self._response(request, arrival, self._clock(), result), arrival))
            return
        if len(outstanding) >= MAX_OUTSTANDING_PER_STREAM:
            # Latest-wins is per session, so a stream naming a new session in every request could
            # queue decoded observations without bound; one robot session has at most two.
            result = Result(
                pb.PredictResponse.INVALID,
                f"request: {len(outstanding)} requests of this stream are still waiting or computing "
                f"(at most {MAX_OUTSTANDING_PER_STREAM}); one stream serves one session",
            )
            out.put_nowait((self._response(request, arrival, self._clock(), result), arrival))
            return
        enqueued = self._clock()
        pending = Pending(
            session=request.session_id or f"stream-{stream_id}",
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
                out.put_nowait((self._response(request, arrival, enqueued, future.result()), arrival))

        pending.future.add_done_callback(done)
        self._worker.submit(pending)

    def _response(
        self, request: pb.PredictRequest, arrival: float, enqueued: float, result: Result
    ) -> pb.PredictResponse:
        response = pb.PredictResponse(
            request_id=request.request_id,
            status=result.status,  # type: ignore[arg-type]
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
        timing.total_ms = (self._clock() - arrival) * 1e3
        timing.batch_size = result.batch_size
        return response


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's outcome as seen: nothing is left to act on, and nothing to log."""
    if not future.cancelled():
        future.exception()

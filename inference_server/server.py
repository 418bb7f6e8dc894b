"""Server lifecycle: ``startup()`` → serve until asked to stop → ``shutdown()``, in a fixed order.

Startup: read the bundle, bind gRPC with health NOT_SERVING (so orchestrators can probe while the
model loads), start /metrics, load the model on its worker thread, warm it up, then SERVING and
``started`` is set. Shutdown (SIGTERM, SIGINT, or :meth:`Server.handle_exit`): NOT_SERVING, stop
accepting, let in-flight requests finish within ``graceful_shutdown_s``, then free the model. A
second SIGINT skips the graceful wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from inference_server.backends import Backend, create_backend, dummy_batch
from inference_server.bundle import Bundle, load_bundle
from inference_server.errors import BackendError, ServerError
from inference_server.metrics import ServerMetrics
from inference_server.security import TokenInterceptor, read_tokens, server_credentials
from inference_server.service import Limits, PolicyService, transport_limit
from inference_server.validation import check_output
from inference_server.worker import ModelWorker
from vla import eventloop
from vla.signals import capture_signals
from vla.v1 import policy_pb2

if TYPE_CHECKING:
    from inference_server.config import ServerConfig

__all__ = ["SERVICE_NAME", "Server", "is_loopback", "keepalive_options", "transport_security", "warm_up"]

logger = logging.getLogger(__name__)

SERVICE_NAME = policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Server:
    """Serves ``config.policy`` until told to stop. ``run()`` blocks; ``serve()`` is the coroutine.

    ``started`` is set once the port is bound and the model warm; ``port`` and ``metrics_port``
    then hold the bound ports (useful with port 0).
    """

    def __init__(
        self,
        config: ServerConfig,
        *,
        registry: CollectorRegistry | None = None,
        backend_factory: Callable[[Bundle], Backend] = create_backend,
        tokens: Sequence[bytes] = (),
    ) -> None:
        self.config = config
        self._tokens = tuple(tokens)  # accepted besides config.token_file's (cli.py: $VLA_TOKENS)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ServerMetrics.create(self.registry)
        self.started = asyncio.Event()
        self.should_exit = asyncio.Event()
        self.force_exit = False
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.bundle: Bundle | None = None
        self._backend_factory = backend_factory
        self._grpc: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None
        self._service: PolicyService | None = None
        self._worker: ModelWorker | None = None
        self._metrics_httpd: Any = None
        self._decode_pool: ThreadPoolExecutor | None = None

    def run(self) -> None:
        """Serve in a fresh event loop (uvloop when installed) with SIGINT/SIGTERM handled."""
        eventloop.run(self.serve(install_signal_handlers=True))

    async def serve(self, *, install_signal_handlers: bool = False) -> None:
        with self._capture_signals(install_signal_handlers):
            try:
                await self.startup()
                await self.should_exit.wait()
            finally:
                await self.shutdown()

    def handle_exit(self, sig: int, frame: Any = None) -> None:
        """Record a stop request; a second SIGINT skips the graceful wait."""
        if self.should_exit.is_set() and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def startup(self) -> None:
        config = self.config
        logger.info("Loading policy bundle %s", config.policy)
        bundle = await asyncio.to_thread(
            load_bundle,
            config.policy,
            backend=config.backend,
            device=config.device,
            precision=config.precision,
            cpu_threads=config.cpu_threads,
        )
        self.bundle = bundle
        self.metrics.model_info.info(
            {"name": bundle.name, "version": bundle.version, "backend": bundle.backend,
             "precision": bundle.precision, "device": bundle.device}
        )  # fmt: skip

        self._worker = ModelWorker(
            bundle,
            max_batch=config.max_batch,
            max_queue_delay_s=config.max_queue_delay_ms / 1e3,
            metrics=self.metrics,
            backend_factory=self._backend_factory,
        )
        self._decode_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vla-decode")
        self._service = PolicyService(
            bundle,
            self._worker,
            metrics=self.metrics,
            max_batch=config.max_batch,
            max_request_bytes=config.max_request_bytes,
            decode_executor=self._decode_pool,
            limits=Limits(
                max_streams=config.max_streams,
                max_sessions=config.max_sessions,
                max_request_rate_hz=config.max_request_rate_hz,
                max_request_burst=config.max_request_burst,
                idle_stream_timeout_s=config.idle_stream_timeout_s,
            ),
        )
        credentials, interceptors = await asyncio.to_thread(transport_security, config, self._tokens)
        self._health = health.aio.HealthServicer()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        # The transport limit sits well above max_request_bytes so that an oversize request reaches
        # the service and gets INVALID on a live stream; only a wildly oversize one breaks the stream.
        limit = transport_limit(config.max_request_bytes)
        self._grpc = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
                *keepalive_options(config),
            ],
        )
        self._service.add_to_server(self._grpc)  # parses requests itself: bad bytes get INVALID
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)
        if config.reflection:
            reflection.enable_server_reflection(
                (
                    SERVICE_NAME,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ),
                self._grpc,
            )
        try:
            if credentials is None:
                self.port = self._grpc.add_insecure_port(f"{config.host}:{config.port}")
            else:
                self.port = self._grpc.add_secure_port(f"{config.host}:{config.port}", credentials)
        except RuntimeError as exc:  # gRPC says only "Failed to bind"; find out why with a socket
            raise _bind_error("gRPC", config.host, config.port, str(exc)) from None
        await self._grpc.start()
        logger.info(
            "gRPC listening on %s:%d (%s; NOT_SERVING until the model is warm)",
            config.host,
            self.port,
            _security_words(config, self._tokens),
        )
        if credentials is None and not is_loopback(config.host):
            logger.warning(
                "gRPC on %s without TLS: anyone on the network can read the camera images and "
                'instructions and open sessions; set --tls-cert/--tls-key (README "Security")',
                config.host,
            )

        if config.metrics_port is not None:
            try:
                self._metrics_httpd, _ = start_http_server(
                    config.metrics_port, addr=config.host, registry=self.registry
                )
            except OSError as exc:  # socket.gaierror included
                raise _bind_error("metrics", config.host, config.metrics_port, str(exc), exc) from None
            self.metrics_port = int(self._metrics_httpd.server_port)
            logger.info("Metrics on http://%s:%d/metrics", config.host, self.metrics_port)

        logger.info("Loading the %s model (%s, %s)", bundle.backend, bundle.device, bundle.precision)
        await asyncio.wrap_future(self._worker.start())
        if config.warmup_iters:
            t0 = time.monotonic()
            await asyncio.wrap_future(
                self._worker.call(lambda b: warm_up(b, bundle, config.warmup_iters, config.max_batch))
            )
            logger.info("Warm-up done: %d iterations in %.2f s", config.warmup_iters, time.monotonic() - t0)
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.started.set()
        logger.info("Serving %s %s on port %d", bundle.name, bundle.version, self.port)

    async def shutdown(self) -> None:
        logger.info("Shutting down")
        grace = 0.0 if self.force_exit else self.config.graceful_shutdown_s
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        steps = []
        if self._grpc is not None:
            steps.append(self._grpc.stop(grace))  # stops accepting now, cancels what is left after grace
        if self._service is not None:
            steps.append(self._service.close(grace))  # ends open streams once in-flight requests answer
        await asyncio.gather(*steps)
        if self._worker is not None:
            self._worker.stop(drain=not self.force_exit)
            if not await asyncio.to_thread(self._worker.join, max(grace, 1.0)):
                logger.warning("The model worker is still busy; leaving it behind")
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()
            self._metrics_httpd.server_close()
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
        logger.info("Finished server process")

    @contextlib.contextmanager
    def _capture_signals(self, install: bool) -> Iterator[None]:
        # As the agent: handle_exit runs on the loop, the previous handlers come back after.
        with capture_signals(self.handle_exit, HANDLED_SIGNALS, install=install):
            yield


def keepalive_options(config: ServerConfig) -> list[tuple[str, int]]:
    """The server's gRPC keepalive channel arguments (names from gRPC's ``doc/keepalive.md``).

    A ping every ``keepalive_time_ms`` on every connection, calls or not, none needing data in
    between; no answer within ``keepalive_timeout_ms`` closes the connection and ends its streams,
    so a dead or unplugged robot PC is noticed within ``keepalive_time_ms + keepalive_timeout_ms``.
    Clients may ping as often as every ``keepalive_min_ping_interval_ms`` (the agent pings every
    2 s) without being sent GOAWAY ``too_many_pings``.
    """
    return [
        ("grpc.keepalive_time_ms", config.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", config.keepalive_min_ping_interval_ms),
        ("grpc.http2.min_sent_ping_interval_without_data_ms", config.keepalive_time_ms),
        ("grpc.http2.ping_timeout_ms", config.keepalive_timeout_ms),
    ]


def transport_security(
    config: ServerConfig, tokens: Sequence[bytes] = ()
) -> tuple[grpc.ServerCredentials | None, list[grpc.aio.ServerInterceptor]]:
    """The gRPC port's credentials (``None``: plaintext) and interceptors (the token check when
    ``config.token_file`` is set or ``tokens`` given), read from the files ``config`` names.

    Raises :class:`ConfigError` naming the field of a file that cannot be used. Blocking (file reads).
    """
    credentials = None
    if config.tls_cert is not None and config.tls_key is not None:
        credentials = server_credentials(config.tls_cert, config.tls_key, config.tls_client_ca)
    interceptors: list[grpc.aio.ServerInterceptor] = []
    from_file = read_tokens(config.token_file) if config.token_file is not None else ()
    if from_file or tokens:
        interceptors.append(TokenInterceptor((*from_file, *tokens)))
        logger.info(
            "Bearer tokens required (%d from %s, %d from the environment; health exempt)",
            len(from_file),
            config.token_file,
            len(tokens),
        )
    return credentials, interceptors


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` listens on this machine only (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _security_words(config: ServerConfig, tokens: Sequence[bytes]) -> str:
    words = ["plaintext"] if config.tls_cert is None else ["TLS" if config.tls_client_ca is None else "mTLS"]
    words.append("tokens" if config.token_file is not None or tokens else "no tokens")
    words.append("reflection" if config.reflection else "no reflection")
    return ", ".join(words)


def _bind_error(what: str, host: str, port: int, detail: str, exc: OSError | None = None) -> OSError:
    """A one-line ``OSError`` naming which port (``what``: gRPC or metrics), on which host, and why.

    ``exc`` is the bind's own error when the library raised one (the metrics server does); gRPC
    raises a bare ``RuntimeError``, so the cause is found by binding a plain socket the same way
    (``SO_REUSEADDR``, as gRPC and ``http.server`` do). ``.errno`` is set when the cause is known.
    """
    if exc is None:
        exc = _probe_bind(host, port)
    code = getattr(exc, "errno", None)
    where = f"{what} port {port} on {host}"
    if code == errno.EADDRINUSE:
        message = f"{where} is already in use (another inference-server? choose another with --{_flag(what)})"
    elif code == errno.EACCES:
        message = f"{where}: permission denied (ports below 1024 need privileges; choose another with --{_flag(what)})"
    elif code == errno.EADDRNOTAVAIL:
        message = f"{where}: {host} is not an address of this machine (--host 0.0.0.0 binds all of them)"
    elif isinstance(exc, socket.gaierror):
        message = f"{where}: host {host!r} does not resolve ({exc.strerror})"
    else:
        message = f"{where}: cannot bind ({exc if exc is not None else detail})"
    error = OSError(message)
    error.errno = code
    return error


def _flag(what: str) -> str:
    return "port" if what == "gRPC" else "metrics-port"


def _probe_bind(host: str, port: int) -> OSError | None:
    """The error binding ``host:port`` gives a plain TCP socket, or ``None`` if it binds."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
        except OSError as exc:
            return exc
    return None


def warm_up(backend: Backend, bundle: Bundle, iters: int, max_batch: int) -> None:
    """Run the model ``iters`` times at batch 1 (and once at ``max_batch``), checking its output.

    A model whose output does not match the manifest fails here, before SERVING, naming the field.
    So does a model that raises on input shaped as the manifest says (a TorchScript file, whose
    inputs cannot be checked at load, or a model with a fixed batch size below ``max_batch``):
    :class:`BundleError` naming the model's field (``BackendError`` naming the entrypoint for a
    python plugin), with the batch and the library's message on one line.
    """
    for _ in range(iters):
        _check_output(_predict(backend, bundle, 1), bundle, 1)
    if max_batch > 1 and iters:
        _check_output(_predict(backend, bundle, max_batch), bundle, max_batch)


def _predict(backend: Backend, bundle: Bundle, size: int) -> Any:
    batch = dummy_batch(bundle, size)
    try:
        return backend.predict(batch)
    except ServerError:
        raise
    except Exception as exc:
        if isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__:
            raise
        shapes = ", ".join(
            [
                *(f"{c.name} [{size}, 3, {c.height}, {c.width}]" for c in bundle.cameras),
                f"state [{size}, {bundle.state_dim}]",
            ]
        )
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        hint = f" (a fixed batch size? max_batch is {size})" if size > 1 else ""
        if bundle.backend == "python":
            raise BackendError(
                f"entrypoint {bundle.entrypoint!r}: predict fails on a warm-up batch of {size}{hint}: {detail}"
            ) from exc
        raise bundle.error(
            f"{bundle.model_field}: the model fails on a warm-up batch of {size}{hint} shaped as the manifest "
            f"says ({shapes}): {detail}",
            field=bundle.model_field,
        ) from exc


def _check_output(out: Any, bundle: Bundle, size: int) -> None:
    """Raise :class:`BundleError` naming the manifest field when the warm-up output's shape is wrong.

    The dtype is left to the requests (each answered ERROR), as it always was: warm-up refuses a
    model only for a shape the manifest contradicts.
    """
    import numpy as np

    problem = check_output(np.asarray(out), bundle, size)
    if problem is not None and problem.kind == "shape":
        raise bundle.error(problem.bundle_message, field=problem.field)

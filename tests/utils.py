"""Helpers shared by the tests: a real server on loopback, polling, bundles and requests.

``run_server(config)`` is uvicorn's ``tests/utils.py`` idea: the real server, bound to
127.0.0.1 on a free port, started in this event loop and stopped on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.util
import inspect
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np

from inference_server import Server, ServerConfig
from vla.codec import encode_image, to_tensor
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc

__all__ = [
    "DEFAULT_STATE_NAMES",
    "PredictStream",
    "connect",
    "make_request",
    "poll_until",
    "run_server",
    "write_python_bundle",
]

DEFAULT_STATE_NAMES = (*(f"joint_{i}" for i in range(7)), "gripper")
DEFAULT_ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")


@contextlib.asynccontextmanager
async def run_server(
    config: ServerConfig, *, wait_started: bool = True, timeout: float = 30.0, **server_kwargs: Any
) -> AsyncIterator[Server]:
    """Run ``Server(config)`` on 127.0.0.1, port 0 (and metrics port 0 unless it is None).

    Yields once ``server.started`` is set, or, with ``wait_started=False``, as soon as the gRPC
    port is bound (health still NOT_SERVING). A startup error is raised here.
    """
    config = dataclasses.replace(
        config, host="127.0.0.1", port=0, metrics_port=None if config.metrics_port is None else 0
    )
    server = Server(config, **server_kwargs)
    task = asyncio.create_task(server.serve(), name="test-server")
    try:
        ready: Callable[[], bool] = (
            (lambda: server.started.is_set()) if wait_started else (lambda: server.port is not None)
        )
        async with asyncio.timeout(timeout):
            while not ready():
                if task.done():
                    task.result()  # raises the startup error
                    raise RuntimeError("the server stopped before it started")
                waiter = asyncio.create_task(server.started.wait())
                await asyncio.wait({task, waiter}, timeout=0.01, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        yield server
    finally:
        server.should_exit.set()
        with contextlib.suppress(asyncio.CancelledError):
            async with asyncio.timeout(timeout):
                await task


async def poll_until(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> Any:
    """Await until ``predicate()`` (sync or async) is truthy and return its value, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"condition {getattr(predicate, '__name__', predicate)!r} not met within {timeout} s"
            )
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def connect(server: Server) -> AsyncIterator[policy_pb2_grpc.PolicyServiceStub]:
    """A ``PolicyService`` stub on a fresh loopback channel to ``server``."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield policy_pb2_grpc.PolicyServiceStub(channel)


class PredictStream:
    """One Predict stream driven step by step: ``send`` a request, ``recv`` the next answer.

    ``recv`` returns ``grpc.aio.EOF`` once the server has ended the stream.
    """

    def __init__(self, stub: policy_pb2_grpc.PolicyServiceStub) -> None:
        self._queue: asyncio.Queue[pb.PredictRequest | None] = asyncio.Queue()
        self.call = stub.Predict(self._requests())

    async def _requests(self) -> AsyncIterator[pb.PredictRequest]:
        while (request := await self._queue.get()) is not None:
            yield request

    def send(self, request: pb.PredictRequest) -> None:
        self._queue.put_nowait(request)

    async def recv(self, timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            return await self.call.read()

    async def close(self) -> None:
        """Half-close: the server answers what it has, then ends the stream."""
        self._queue.put_nowait(None)


def write_python_bundle(
    directory: Path,
    entrypoint: str,
    *,
    cameras: Mapping[str, tuple[int, int]] | None = None,
    state_dim: int = 8,
    action_dim: int = 7,
    chunk_length: int = 16,
    dt_s: float = 0.1,
    action_space: str = "ee_delta",
    state_names: Sequence[str] | None = None,
    action_names: Sequence[str] | None = None,
    name: str = "test-policy",
    source: str | None = None,
    extra_manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write a ``backend = "python"`` bundle to ``directory`` and return it.

    ``cameras`` maps name to ``(height, width)`` (default one 64x64 ``front``). ``source``, if
    given, is written as ``policy.py`` inside the bundle (then ``entrypoint = "policy:Class"``).
    ``extra_manifest`` entries are merged into the manifest (tables as dicts).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cameras = {"front": (64, 64)} if cameras is None else cameras
    if state_names is None and state_dim == len(DEFAULT_STATE_NAMES):
        state_names = DEFAULT_STATE_NAMES
    if action_names is None and action_dim == len(DEFAULT_ACTION_NAMES):
        action_names = DEFAULT_ACTION_NAMES
    manifest: dict[str, Any] = {
        "name": name,
        "version": "0.0.1",
        "backend": "python",
        "entrypoint": entrypoint,
        "precision": "fp32",
        "device": "cpu",
        "chunk_length": chunk_length,
        "dt_s": dt_s,
        "action_space": action_space,
        "action_dim": action_dim,
        "state_dim": state_dim,
    }
    if state_names is not None:
        manifest["state_names"] = list(state_names)
    if action_names is not None:
        manifest["action_names"] = list(action_names)
    manifest["cameras"] = {cam: {"height": h, "width": w} for cam, (h, w) in cameras.items()}
    manifest.update(extra_manifest or {})
    (directory / "policy.toml").write_text(dump_toml(manifest))
    if source is not None:
        (directory / "policy.py").write_text(source)
    return directory


def dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    """A small TOML writer for manifests (scalars, lists, nested tables); tomllib only reads."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f"{prefix}{key}"
        scalars = {k: v for k, v in value.items() if not isinstance(v, Mapping)}
        if scalars or not value:
            out += f"\n[{name}]\n" + dump_toml(scalars)
        out += dump_toml({k: v for k, v in value.items() if isinstance(v, Mapping)}, prefix=f"{name}.")
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def make_request(
    spec: pb.PolicySpec,
    request_id: int,
    *,
    session_id: str = "session",
    encoding: int = pb.Image.RAW_RGB8,
    state: np.ndarray | None = None,
    timeout_ms: int = 0,
    instruction: str = "pick up the cube",
    seed: int | None = None,
) -> pb.PredictRequest:
    """A valid request for ``spec``: random images, a state of ``request_id`` repeated unless given."""
    rng = np.random.default_rng(request_id if seed is None else seed)
    if state is None:
        state = np.full(spec.state_dim, float(request_id), np.float32)
    return pb.PredictRequest(
        session_id=session_id,
        request_id=request_id,
        images={
            c.name: encode_image(rng.integers(0, 256, (c.height, c.width, 3), dtype=np.uint8), encoding)
            for c in spec.cameras
        },
        state=to_tensor(np.asarray(state)),
        instruction=instruction,
        timeout_ms=timeout_ms,
        capture_time_s=float(request_id),
    )


async def wait_for(awaitable: Awaitable[Any], timeout: float = 5.0) -> Any:
    """``await`` with a timeout, for one-liners in tests."""
    async with asyncio.timeout(timeout):
        return await awaitable


BENCH = Path(__file__).resolve().parent.parent / "bench"


@contextlib.contextmanager
def bench_script(name: str) -> Iterator[ModuleType]:
    """``bench/NAME.py`` imported as module ``NAME``, with ``bench/`` on ``sys.path`` (the scripts
    import their siblings, ``_stats``...) and in ``sys.modules`` (dataclasses look their module up
    there) until the block ends."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
        sys.path.remove(str(BENCH))

"""What the server runs: one frozen :class:`ServerConfig`, every default in one place.

``cli.py`` builds it from ``--config FILE.toml`` with flags overriding, through the shared loader
(``safety.config_loader``: unknown keys, types); tests and the demo build it directly, checked by
the same constructor::

    config = ServerConfig(policy=Path("bundles/demo"), port=0, metrics_port=None)
    await Server(config).serve()
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference_server.errors import ConfigError
from safety.config_loader import build, check_keys, check_types, read_toml

__all__ = ["BACKEND_NAMES", "DEVICES", "PRECISIONS", "ServerConfig", "load_config", "machine_cpus"]

PRECISIONS = ("fp32", "fp16", "bf16")
BACKEND_NAMES = ("torch", "onnx", "tensorrt", "torch_tensorrt", "python")
DEVICES = ("cpu", "cuda")  # plus "cuda:N"
# The gRPC limit is 2 * max_request_bytes + 64 MiB (service.transport_limit), a C int32 channel
# option: a larger max_request_bytes ended the server with OverflowError at start.
MAX_REQUEST_BYTES_LIMIT = ((1 << 31) - 1 - (64 << 20)) // 2
_INT32_MAX = (1 << 31) - 1
_UINT32_MAX = (1 << 32) - 1


def machine_cpus() -> int:
    """The logical CPUs of this machine (``os.cpu_count()``, 1 when unknown): the most
    ``cpu_threads`` may ask for. More kernel threads than CPUs only wait at each barrier, and
    onnxruntime creating 999999 of them held the server at load for 7.5 minutes, deaf to Ctrl-C;
    2**63 ended it with an overflow from onnxruntime or torch."""
    return os.cpu_count() or 1



@dataclass(frozen=True)
class ServerConfig:
    """Everything ``Server`` needs; ``None`` overrides mean "as the bundle's manifest says".

    ``port=0`` and ``metrics_port=0`` bind a free port (``server.port``, ``server.metrics_port``
    hold the bound ones); ``metrics_port=None`` (``metrics_port = false`` in a file) serves no
    metrics endpoint.

    Raises :class:`ConfigError` naming the field (``.field``) for a value of the wrong type, checked
    strictly as TOML types it (``true`` is not an integer, ``"8"`` is not a number), or out of range.
    """

    policy: Path
    host: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int | None = 9100
    # Transport security (README "Security"): tls_cert + tls_key make the gRPC port TLS;
    # tls_client_ca also requires client certificates signed by that CA (mTLS). token_file holds
    # bearer tokens, one a line: every RPC but the health service's must carry one.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    token_file: Path | None = None
    reflection: bool = True  # gRPC server reflection (grpcurl without the .proto); False: off
    device: str | None = None
    precision: str | None = None
    backend: str | None = None
    # Threads of the model's CPU kernels (torch intra-op, onnxruntime intra_op_num_threads); 0:
    # every CPU this process may use but one, which is left to the event loop that reads and
    # answers the streams (backends.base.cpu_threads).
    cpu_threads: int = 0
    max_batch: int = 8
    max_queue_delay_ms: float = 0.0
    warmup_iters: int = 3
    max_request_bytes: int = 8 * 1024 * 1024
    graceful_shutdown_s: float = 5.0
    # Limits per client (README "Limits"). Streams and sessions past the maximum are refused with
    # RESOURCE_EXHAUSTED; a session over its rate gets INVALID answers and its stream is read no
    # faster than the rate; a stream with no request for idle_stream_timeout_s (0: never) is ended.
    max_streams: int = 64
    max_sessions: int = 64
    max_request_rate_hz: float = 100.0
    max_request_burst: int = 50
    idle_stream_timeout_s: float = 60.0
    # gRPC keepalive (grpc.keepalive_time_ms, grpc.keepalive_timeout_ms): a ping every
    # keepalive_time_ms, the connection dropped when its answer takes keepalive_timeout_ms, so a
    # dead robot PC is noticed within their sum; clients may ping every keepalive_min_ping_interval_ms.
    keepalive_time_ms: int = 2000
    keepalive_timeout_ms: int = 2000
    keepalive_min_ping_interval_ms: int = 1000

    def __post_init__(self) -> None:
        check_types(self, ConfigError)  # types first: a TOML file can hold any type for any key
        _check(0 <= self.port <= 65535, "port", f"is {self.port}, expected 0..65535")
        if self.metrics_port is not None:
            _check(
                0 <= self.metrics_port <= 65535, "metrics_port", f"is {self.metrics_port}, expected 0..65535"
            )
            _check(  # it failed at bind as 'metrics port ... in use (another inference-server?)'
                self.metrics_port == 0 or self.metrics_port != self.port,
                "metrics_port",
                f"is {self.metrics_port}, the gRPC port too: give /metrics its own port",
            )
        if self.device is not None:
            _check(
                self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:"),
                "device",
                f"is {self.device!r}, expected cpu, cuda or cuda:N",
            )
        if self.precision is not None:
            _check(
                self.precision in PRECISIONS,
                "precision",
                f"is {self.precision!r}, expected one of {PRECISIONS}",
            )
        if self.backend is not None:
            _check(
                self.backend in BACKEND_NAMES,
                "backend",
                f"is {self.backend!r}, expected one of {', '.join(BACKEND_NAMES)}",
            )
        _check(
            (self.tls_cert is None) == (self.tls_key is None),
            "tls_key" if self.tls_key is None else "tls_cert",
            "is not set: TLS needs both tls_cert and tls_key",
        )
        _check(
            self.tls_client_ca is None or self.tls_cert is not None,
            "tls_client_ca",
            "needs TLS: set tls_cert and tls_key too",
        )
        cpus = machine_cpus()
        _check(
            0 <= self.cpu_threads <= cpus,
            "cpu_threads",
            f"is {self.cpu_threads}, expected 0..{cpus}, this machine's CPUs (0: every CPU but one)",
        )
        _check(self.max_batch >= 1, "max_batch", f"is {self.max_batch}, expected >= 1")
        _check(
            self.max_queue_delay_ms >= 0, "max_queue_delay_ms", f"is {self.max_queue_delay_ms}, expected >= 0"
        )
        _check(self.warmup_iters >= 0, "warmup_iters", f"is {self.warmup_iters}, expected >= 0")
        _check(
            1024 <= self.max_request_bytes <= MAX_REQUEST_BYTES_LIMIT,
            "max_request_bytes",
            f"is {self.max_request_bytes}, expected 1024..{MAX_REQUEST_BYTES_LIMIT}",
        )
        _check(
            self.graceful_shutdown_s >= 0,
            "graceful_shutdown_s",
            f"is {self.graceful_shutdown_s}, expected >= 0",
        )
        for name in ("max_streams", "max_sessions", "max_request_burst", "keepalive_time_ms"):
            _check(getattr(self, name) >= 1, name, f"is {getattr(self, name)}, expected >= 1")
        _check(
            self.max_request_rate_hz > 0,
            "max_request_rate_hz",
            f"is {self.max_request_rate_hz}, expected > 0",
        )
        _check(
            self.idle_stream_timeout_s >= 0,
            "idle_stream_timeout_s",
            f"is {self.idle_stream_timeout_s}, expected >= 0 (0: never)",
        )
        _check(
            self.keepalive_timeout_ms >= 1,
            "keepalive_timeout_ms",
            f"is {self.keepalive_timeout_ms}, expected >= 1",
        )
        _check(
            self.keepalive_min_ping_interval_ms >= 0,
            "keepalive_min_ping_interval_ms",
            f"is {self.keepalive_min_ping_interval_ms}, expected >= 0",
        )
        # gRPC channel options are C ints and PolicySpec.max_batch a uint32: larger values ended
        # the server with an unexpected OverflowError / ValueError at start.
        for name, limit in (
            ("keepalive_time_ms", _INT32_MAX),
            ("keepalive_timeout_ms", _INT32_MAX),
            ("keepalive_min_ping_interval_ms", _INT32_MAX),
            ("max_batch", _UINT32_MAX),
        ):
            _check(getattr(self, name) <= limit, name, f"is {getattr(self, name)}, expected at most {limit}")


_FILE_KEYS = ("tls_cert", "tls_key", "tls_client_ca", "token_file")


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{field} {message}", field=field)


def load_config(path: Path | None = None, **overrides: Any) -> ServerConfig:
    """Read ``path`` (keys of ServerConfig, top level or under ``[server]``), then apply overrides.

    Overrides whose value is ``None`` are ignored, so a CLI can pass every flag through. Raises
    :class:`ConfigError` naming the file (``config server.toml: unknown key 'prot'``) and the field.
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        label = f"config {path}"
        error = functools.partial(ConfigError, path=path)
        data = read_toml(path, error, label=label)
        data = data.get("server", data)
        if not isinstance(data, dict):
            raise ConfigError(f"{label}: server is {data!r}, expected a table", path=path, field="server")
        check_keys(ServerConfig, data, error, source=label)
        values = dict(data)
        if "policy" in values and not isinstance(values["policy"], str):
            raise ConfigError(
                f"{label}: policy is {values['policy']!r} ({type(values['policy']).__name__}), "
                "expected a path (string)",
                path=path,
                field="policy",
            )
        if "policy" in values:  # relative to the config file, as a reader of the file expects
            values["policy"] = (
                (path.parent / values["policy"]).resolve()
                if not Path(values["policy"]).is_absolute()
                else Path(values["policy"])
            )
        for key in _FILE_KEYS:  # relative to the config file too
            if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                values[key] = (path.parent / values[key]).resolve()
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "policy" not in values:
        raise ConfigError(
            "no policy given: pass --policy PATH or set policy in the config file", field="policy"
        )
    try:  # TOML has no null: metrics_port = false serves no endpoint, as in the agent's file
        return build(ServerConfig, values, ConfigError)
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"config {path}: {exc}", path=path, field=exc.field) from None
        raise

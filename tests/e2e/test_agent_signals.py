"""The CLI as an operator runs it: a subprocess, stopped by SIGINT or SIGTERM (clean exit 0 with the summary),
e-stopped by SIGUSR1."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e._agent_helpers import bundle, read_jsonl, run_cli_with_signals, server_on


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_sigint_or_sigterm_stops_cleanly_with_exit_0_and_the_summary(tmp_path: Path, sig: int) -> None:
    async with server_on(bundle(tmp_path / "still", "Still", name="sigint")) as server:
        run = await run_cli_with_signals(
            server.port, "--record", str(tmp_path / "episode"), steps=[("First chunk received", [sig])]
        )
    log = run.log
    assert run.returncode == 0, log
    out = run.stdout
    assert out.startswith("Run summary")
    for line in ("ticks", "achieved rate", "control period", "round trip", "deadline misses", "holds",
                 "safety interventions", "reconnects"):  # fmt: skip
        assert f"  {line}" in out, out
    assert "Shutting down" in log and "Traceback" not in log
    assert (tmp_path / "episode" / "summary.json").exists()


async def test_sigusr1_latches_the_estop_and_the_agent_still_exits_cleanly(tmp_path: Path) -> None:
    async with server_on(bundle(tmp_path / "still", "Still", name="usr1")) as server:
        run = await run_cli_with_signals(
            server.port,
            "--record",
            str(tmp_path / "episode"),
            steps=[
                ("First chunk received", [signal.SIGUSR1]),
                ("E-stop latched: operator signal SIGUSR1", [signal.SIGINT]),
            ],
        )
    assert run.returncode == 0
    assert "e-stops                1 (operator signal SIGUSR1)" in run.stdout
    events = read_jsonl(tmp_path / "episode" / "events.jsonl")
    assert [e["reason"] for e in events if e["event"] == "estop"] == ["operator signal SIGUSR1"]

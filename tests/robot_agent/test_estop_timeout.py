"""``robot-agent estop --timeout`` must be a number of seconds >= 0: with NaN the wait for the
latch compared false against every clock reading and never ended (an agent that does not confirm,
e.g. a stopped process, hung the operator's tool for ever)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from robot_agent import cli
from robot_agent.runfile import RunFile


@pytest.fixture
def signalled() -> Iterator[list[int]]:
    """This process stands for the agent: a run file is written for it; SIGUSR1s are listed."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda sig, frame: seen.append(sig))
    yield seen
    signal.signal(signal.SIGUSR1, previous)


@pytest.mark.parametrize("timeout", ["nan", "inf", "-1", "-inf"])
def test_a_timeout_that_is_not_a_duration_is_a_usage_error_and_nothing_is_signalled(
    timeout: str, run_dir: Path, signalled: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    RunFile.for_this_process(run_dir, server="127.0.0.1:50051", robot="sim").write("running")
    with pytest.raises(SystemExit) as info:
        cli.main(["estop", "--run-dir", str(run_dir), "--timeout", timeout])
    assert info.value.code == cli.EXIT_USAGE
    assert "--timeout" in capsys.readouterr().err
    assert signalled == []


def test_a_zero_timeout_signals_and_reports_unconfirmed_at_once(
    run_dir: Path, signalled: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    RunFile.for_this_process(run_dir, server="127.0.0.1:50051", robot="sim").write("running")
    code = cli.main(["estop", "--run-dir", str(run_dir), "--timeout", "0"])
    assert code == cli.EXIT_ESTOP_UNCONFIRMED  # the handler here never writes "estopped"
    assert signalled == [signal.SIGUSR1]
    assert "not confirmed within 0 s" in capsys.readouterr().err

"""``robot-agent estop`` cannot hurt: it signals only a live robot-agent (by its run file), refuses
anything else in one line leaving it untouched, and confirms the latch or says it could not.

The "agent" here is this test process: a real run file for ``os.getpid()`` and a SIGUSR1 handler
that does what the agent's does to the file (the real agent: ``tests/e2e/test_agent_signals.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from robot_agent import cli
from robot_agent.runfile import ProcessIdentity, RunFile, process_identity, run_file_path


@pytest.fixture
def usr1() -> Iterator[Callable[[Callable[[], None]], list[int]]]:
    """Install a SIGUSR1 handler in this process doing ``action``; returns the list of signals seen."""
    previous = signal.getsignal(signal.SIGUSR1)

    def install(action: Callable[[], None]) -> list[int]:
        seen: list[int] = []

        def handler(sig: int, frame: Any) -> None:
            seen.append(sig)
            action()

        signal.signal(signal.SIGUSR1, handler)
        return seen

    yield install
    signal.signal(signal.SIGUSR1, previous)


def this_agent(run_dir: Path) -> RunFile:
    run_file = RunFile.for_this_process(run_dir, server="127.0.0.1:50051", robot="sim")
    run_file.write("running")
    return run_file


def estop(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["estop", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_alive(proc: subprocess.Popen[bytes]) -> None:
    assert proc.poll() is None, f"the process died with {proc.returncode}"


def test_a_sleep_process_is_refused_and_survives(
    sleeper: subprocess.Popen[bytes], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's example: ``sleep 60 & robot-agent estop --pid $!``."""
    code, out, err = estop(capsys, "--pid", str(sleeper.pid), "--run-dir", str(run_dir))
    assert (code, out) == (cli.EXIT_ERROR, "")
    assert (
        err == f"EstopRefused: process {sleeper.pid} (sleep 60) is not a running robot-agent; not signalled\n"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        sleeper.wait(timeout=0.2)  # a SIGUSR1 would have killed it at once
    assert_alive(sleeper)


def test_a_sleep_process_is_refused_even_without_a_run_dir(
    sleeper: subprocess.Popen[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = estop(capsys, "--pid", str(sleeper.pid), "--run-dir", str(tmp_path / "nowhere"))
    assert code == 1 and err.startswith("EstopRefused: ") and err.count("\n") == 1
    assert_alive(sleeper)


def test_a_missing_process_is_refused(
    run_dir: Path, exited_pid: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = estop(capsys, "--pid", str(exited_pid), "--run-dir", str(run_dir))
    assert (code, err) == (1, f"EstopRefused: no process {exited_pid}; nothing signalled\n")


@pytest.mark.parametrize("pid", ["0", "-1"])  # kill(0 or -1) would signal a group or everything
def test_a_pid_that_names_a_group_is_refused(
    run_dir: Path, capsys: pytest.CaptureFixture[str], pid: str
) -> None:
    code, _, err = estop(capsys, f"--pid={pid}", "--run-dir", str(run_dir))
    assert (code, err) == (1, f"EstopRefused: --pid {pid} is not a process id; nothing signalled\n")


def test_a_stale_run_file_of_a_dead_pid_is_refused(
    run_dir: Path, exited_pid: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = run_file_path(run_dir, exited_pid)
    RunFile(
        path, pid=exited_pid, identity=ProcessIdentity("1", ("robot-agent",)), server="s", robot="sim"
    ).write("running")
    code, _, err = estop(capsys, "--pid", str(exited_pid), "--run-dir", str(run_dir))
    assert code == 1
    assert err == f"EstopRefused: run file {path} is stale: process {exited_pid} is gone; not signalled\n"


def test_a_run_file_whose_pid_was_reused_by_another_process_is_refused(
    sleeper: subprocess.Popen[bytes], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An agent died without removing its file and ``sleep`` got its pid."""
    path = run_file_path(run_dir, sleeper.pid)
    agent_then = ProcessIdentity("1", ("python", "-m", "robot_agent"))
    RunFile(path, pid=sleeper.pid, identity=agent_then, server="s", robot="sim").write("running")
    code, _, err = estop(capsys, "--pid", str(sleeper.pid), "--run-dir", str(run_dir))
    assert code == 1
    assert err == (
        f"EstopRefused: run file {path} is stale: process {sleeper.pid} is now 'sleep 60', "
        "not the robot-agent that wrote it; not signalled\n"
    )
    assert_alive(sleeper)
    # Without --pid the stale file is ignored: there is no agent to stop.
    code, _, err = estop(capsys, "--run-dir", str(run_dir))
    assert (code, err) == (
        1,
        f"EstopRefused: no running robot-agent has a run file in {run_dir} (started with another --run-dir?)\n",
    )
    assert_alive(sleeper)


def test_the_only_live_agent_is_latched_and_confirmed(
    run_dir: Path, usr1: Callable[[Callable[[], None]], list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    run_file = this_agent(run_dir)
    seen = usr1(lambda: run_file.write("estopped", "operator signal SIGUSR1"))
    code, out, err = estop(capsys, "--run-dir", str(run_dir))  # no --pid: the only live one
    assert (code, err) == (cli.EXIT_OK, "")
    assert out == f"E-stop latched on robot-agent {os.getpid()}: operator signal SIGUSR1\n"
    assert seen == [signal.SIGUSR1]


def test_an_agent_latched_and_gone_is_still_confirmed(
    run_dir: Path, usr1: Callable[[Callable[[], None]], list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    """The agent keeps its file saying ``estopped`` when it exits; here it latched before the
    first poll, and its file is all that is left to read."""
    run_file = this_agent(run_dir)
    usr1(lambda: run_file.write("estopped", "operator signal SIGUSR1"))
    code, out, _ = estop(capsys, "--pid", str(os.getpid()), "--run-dir", str(run_dir))
    assert code == 0 and out.startswith(f"E-stop latched on robot-agent {os.getpid()}")


def test_a_latch_not_confirmed_in_time_exits_4(
    run_dir: Path, usr1: Callable[[Callable[[], None]], list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    this_agent(run_dir)
    seen = usr1(lambda: None)  # an agent that never latches (a hung control loop)
    code, out, err = estop(capsys, "--pid", str(os.getpid()), "--run-dir", str(run_dir), "--timeout", "0.1")
    assert (code, out) == (cli.EXIT_ESTOP_UNCONFIRMED, "")
    assert err == (
        f"EstopUnconfirmed: SIGUSR1 sent to robot-agent {os.getpid()}, but the latch was not confirmed "
        "within 0.1 s (run file says running); check the arm\n"
    )
    assert seen == [signal.SIGUSR1]


def test_an_agent_that_exits_cleanly_instead_of_latching_exits_4(
    run_dir: Path, usr1: Callable[[Callable[[], None]], list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    run_file = this_agent(run_dir)
    usr1(run_file.remove)  # a clean exit removes the file
    code, _, err = estop(capsys, "--run-dir", str(run_dir))
    assert code == 4
    assert (
        err
        == f"EstopUnconfirmed: robot-agent {os.getpid()} exited without confirming the e-stop; check the arm\n"
    )


def test_an_agent_already_latched_is_not_signalled_again(
    run_dir: Path, usr1: Callable[[Callable[[], None]], list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    this_agent(run_dir).write("estopped", "driver command failed")
    seen = usr1(lambda: None)
    code, out, _ = estop(capsys, "--run-dir", str(run_dir))
    assert (code, out) == (0, f"E-stop already latched on robot-agent {os.getpid()}: driver command failed\n")
    assert seen == []


def test_an_agent_already_stopping_is_not_signalled(
    run_dir: Path, usr1: Callable[[Callable[[], None]], list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    this_agent(run_dir).write("stopped")
    seen = usr1(lambda: None)
    code, _, err = estop(capsys, "--run-dir", str(run_dir))
    assert (code, err) == (1, f"EstopRefused: robot-agent {os.getpid()} is already stopping; not signalled\n")
    assert seen == []


def test_several_live_agents_are_refused_and_listed(
    sleeper: subprocess.Popen[bytes],
    run_dir: Path,
    usr1: Callable[[Callable[[], None]], list[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    this_agent(run_dir)
    identity = process_identity(sleeper.pid)
    assert identity is not None
    other = RunFile(
        run_file_path(run_dir, sleeper.pid), pid=sleeper.pid, identity=identity, server="b:2", robot="xarm"
    )
    other.write("running")
    seen = usr1(lambda: None)
    code, out, err = estop(capsys, "--run-dir", str(run_dir))
    assert (code, out) == (1, "")
    first = min(os.getpid(), sleeper.pid)
    assert err.startswith(f"EstopRefused: 2 robot-agents are running, pick one with --pid: {first} (robot ")
    assert f"{sleeper.pid} (robot xarm, server b:2, started " in err
    assert f"{os.getpid()} (robot sim, server 127.0.0.1:50051, started " in err
    assert err.count("\n") == 1
    assert seen == []
    assert_alive(sleeper)


def test_a_run_dir_others_can_write_to_is_not_trusted(
    run_dir: Path, usr1: Callable[[Callable[[], None]], list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    this_agent(run_dir)
    run_dir.chmod(0o777)
    seen = usr1(lambda: None)
    code, _, err = estop(capsys, "--pid", str(os.getpid()), "--run-dir", str(run_dir))
    assert code == 1
    assert err == f"RunFileError: run dir {run_dir} is writable by others (mode 777); pass --run-dir\n"
    assert seen == []


def test_the_run_dir_defaults_to_xdg_runtime_dir(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    usr1: Callable[[Callable[[], None]], list[int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    run_file = this_agent(tmp_path / "vla-deploy")
    usr1(lambda: run_file.write("estopped", "operator signal SIGUSR1"))
    code, out, _ = estop(capsys)
    assert code == 0 and out == f"E-stop latched on robot-agent {os.getpid()}: operator signal SIGUSR1\n"

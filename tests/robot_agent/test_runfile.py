"""Run files: where they live, what they say, and when they are believed (a live process that is
the one that wrote them)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from robot_agent.errors import RunFileError
from robot_agent.runfile import (
    ProcessIdentity,
    RunFile,
    default_run_dir,
    find_run,
    live_runs,
    looks_like_agent,
    process_identity,
    prune_stale,
    read_run,
    run_file_path,
    stale_reason,
)


def fake_run_file(run_dir: Path, pid: int, identity: ProcessIdentity | None, state: str = "running") -> Path:
    """A run file for ``pid`` as an agent would write it, claiming ``identity``."""
    identity = identity or ProcessIdentity("1", ("python", "-m", "robot_agent"))
    RunFile(run_file_path(run_dir, pid), pid=pid, identity=identity, server="127.0.0.1:1", robot="sim").write(
        state  # type: ignore[arg-type]
    )
    return run_file_path(run_dir, pid)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, Path("/run/user/1000/vla-deploy")),  # per-user tmpfs
        ({}, Path(tempfile.gettempdir()) / f"vla-deploy-{os.getuid()}"),  # no XDG: per-uid temp dir
        (
            {"XDG_RUNTIME_DIR": "relative"},
            Path(tempfile.gettempdir()) / f"vla-deploy-{os.getuid()}",
        ),  # ignored
    ],
)
def test_default_run_dir(environ: dict[str, str], expected: Path) -> None:
    assert default_run_dir(environ) == expected


def test_this_process_writes_reads_back_and_removes_its_run_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "new" / "run"
    run_file = RunFile.for_this_process(run_dir, server="10.0.0.2:50051", robot="franka")
    assert (run_dir.stat().st_mode & 0o777) == 0o700  # created private
    assert run_file.path == run_dir / f"robot-agent-{os.getpid()}.json"
    run_file.write("running")
    record = read_run(run_file.path)
    assert (record.pid, record.server, record.robot, record.state, record.estop_reason) == (
        os.getpid(), "10.0.0.2:50051", "franka", "running", None,
    )  # fmt: skip
    assert record.identity == process_identity(os.getpid())
    assert stale_reason(record) is None
    run_file.write("estopped", "operator signal SIGUSR1")
    record = read_run(run_file.path)
    assert (record.state, record.estop_reason) == ("estopped", "operator signal SIGUSR1")
    assert [p.name for p in run_dir.iterdir()] == [run_file.path.name]  # no temporary file left
    run_file.remove()
    run_file.remove()  # already gone: fine
    assert list(run_dir.iterdir()) == []


def test_the_identity_of_a_process_is_its_start_and_command_line(
    sleeper: subprocess.Popen[bytes], exited_pid: int
) -> None:
    identity = process_identity(sleeper.pid)
    assert identity is not None and identity.cmdline == ("sleep", "60")
    assert identity == process_identity(sleeper.pid)  # stable
    assert process_identity(exited_pid) is None


def test_a_zombie_has_no_identity() -> None:
    proc = subprocess.Popen(["true"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    try:
        assert process_identity(proc.pid) is None
    finally:
        proc.wait()


def test_a_run_file_of_a_dead_pid_is_stale(run_dir: Path, exited_pid: int) -> None:
    record = read_run(fake_run_file(run_dir, exited_pid, None))
    assert stale_reason(record) == f"process {exited_pid} is gone"


def test_a_run_file_of_a_pid_reused_by_another_process_is_stale(
    run_dir: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    record = read_run(fake_run_file(run_dir, sleeper.pid, None))
    assert stale_reason(record) == (
        f"process {sleeper.pid} is now 'sleep 60', not the robot-agent that wrote it"
    )


def test_live_runs_skip_stale_files_and_prune_removes_them(
    run_dir: Path, sleeper: subprocess.Popen[bytes], exited_pid: int
) -> None:
    live = RunFile.for_this_process(run_dir, server="s", robot="sim")
    live.write("running")
    dead = fake_run_file(run_dir, exited_pid, None)
    reused = fake_run_file(run_dir, sleeper.pid, None)
    (run_dir / "robot-agent-garbage.json").write_text("{not json")  # unreadable: skipped, kept
    assert [r.pid for r in live_runs(run_dir)] == [os.getpid()]
    assert sorted(prune_stale(run_dir)) == sorted([dead, reused])
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([live.path.name, "robot-agent-garbage.json"])


def test_starting_prunes_the_stale_files_of_earlier_runs(run_dir: Path, exited_pid: int) -> None:
    dead = fake_run_file(run_dir, exited_pid, None)
    RunFile.for_this_process(run_dir, server="s", robot="sim")
    assert not dead.exists()


def test_a_missing_run_dir_has_no_live_runs(tmp_path: Path) -> None:
    assert live_runs(tmp_path / "nowhere") == []


def test_a_run_dir_others_can_write_to_is_refused(run_dir: Path) -> None:
    run_dir.chmod(0o777)
    with pytest.raises(RunFileError, match=r"writable by others \(mode 777\); pass --run-dir") as info:
        live_runs(run_dir)
    assert info.value.path == run_dir
    with pytest.raises(RunFileError, match="writable by others"):
        RunFile.for_this_process(run_dir, server="s", robot="sim")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to another uid")
def test_a_run_dir_of_another_user_is_refused(run_dir: Path) -> None:
    os.chown(run_dir, 12345, -1)
    with pytest.raises(RunFileError, match="belongs to uid 12345"):
        find_run(run_dir, 1)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read it"),  # torn or foreign file
        (json.dumps({"version": 1}), "not a robot-agent run file: 'state'"),  # fields missing
        (json.dumps({"version": 2, "state": "running"}), "version 2"),  # a newer format
        (json.dumps({"version": 1, "state": "dancing"}), "state 'dancing'"),  # unknown state
    ],
)
def test_a_broken_run_file_is_refused_naming_it(run_dir: Path, content: str, message: str) -> None:
    path = run_file_path(run_dir, 4242)
    path.write_text(content)
    with pytest.raises(RunFileError, match=message) as info:
        find_run(run_dir, 4242)
    assert info.value.path == path


def test_a_run_file_naming_another_pid_is_refused(run_dir: Path, sleeper: subprocess.Popen[bytes]) -> None:
    fake_run_file(run_dir, sleeper.pid, process_identity(sleeper.pid)).rename(run_file_path(run_dir, 4242))
    with pytest.raises(RunFileError, match=f"names pid {sleeper.pid}, not 4242"):
        find_run(run_dir, 4242)


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (("/usr/bin/python3", "/venv/bin/robot-agent", "--server", "x:1"), True),  # console script
        (("python", "-m", "robot_agent", "--robot", "sim"), True),  # module
        (("sleep", "60"), False),
        (("python", "-m", "inference_server"), False),  # the server: never signalled
        (("python", "robot_agent"), False),
        ((), False),  # a kernel thread
    ],
)
def test_looks_like_agent(cmdline: tuple[str, ...], expected: bool) -> None:
    assert looks_like_agent(cmdline) is expected

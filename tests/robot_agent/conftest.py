"""Processes and folders for the operator-tool tests (run files, ``robot-agent estop``)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a robot-agent: the issue's ``sleep 60 &`` (SIGUSR1 would kill it)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def exited_pid() -> int:
    """The pid of a process that exited and was reaped: it names no process (until reused)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """An empty run directory of this user, 0700, as the agent creates it."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    return directory

"""``bench/_children.py``: a bench's children end with it. ``kill PID`` (SIGTERM) ended
``bench/control_loop.py`` and ``bench/batching.py`` without their ``finally`` blocks and left the
server and two CPU hogs spinning under init; SIGKILL did the same."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.utils import BENCH

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (ended, or a zombie its new parent has not reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def _parent(script: str) -> subprocess.Popen[str]:
    """A Python process with ``bench/`` on its path running ``script``, its stdout ours to read."""
    return subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), *sys.path])},
    )  # fmt: skip


def test_a_hog_ends_when_its_bench_is_killed_outright() -> None:
    bench = _parent(
        "import time\nfrom _control_timing import cpu_hogs\n"
        "with cpu_hogs(1) as pids:\n    print(pids[0], flush=True)\n    time.sleep(120)\n"
    )
    with bench:
        assert bench.stdout is not None
        hog = int(bench.stdout.readline())
        try:
            assert not _gone(hog)
            bench.kill()  # no finally runs: only the kernel can end the hog
            bench.wait(10)
            assert _wait_gone(hog), f"CPU hog {hog} still spinning after its bench was killed"
        finally:
            if not _gone(hog):
                os.kill(hog, signal.SIGKILL)


def test_sigterm_runs_the_benchs_finally_blocks(tmp_path: Path) -> None:
    mark = tmp_path / "finally"
    bench = _parent(
        "import time\nfrom _children import exit_on_sigterm\nexit_on_sigterm()\n"
        f"try:\n    print('ready', flush=True)\n    time.sleep(120)\nfinally:\n    open({str(mark)!r}, 'w').close()\n"
    )
    with bench:
        assert bench.stdout is not None
        assert bench.stdout.readline().strip() == "ready"
        bench.terminate()
        assert bench.wait(20) == 128 + signal.SIGTERM
    assert mark.exists()


def test_a_child_whose_parent_is_gone_before_the_call_is_signalled(tmp_path: Path) -> None:
    # The race the preexec closes: the parent died between fork and prctl, so no death signal will
    # come; the child sees another parent and signals itself.
    with_module = str(BENCH)
    sys.path.insert(0, with_module)
    try:
        import _children

        preexec = _children.die_with_parent()
    finally:
        sys.path.remove(with_module)
    assert preexec is not None
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], preexec_fn=preexec)
    assert child.poll() is None  # this process is its parent: it runs
    child.kill()
    child.wait(10)
    orphan = subprocess.run(
        [sys.executable, "-c", "import os, sys, _children; p = _children.die_with_parent(); "
         "os.getppid = lambda: -1; p(); print('alive')"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), *sys.path])},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert orphan.returncode == -signal.SIGTERM and "alive" not in orphan.stdout

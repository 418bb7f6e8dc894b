"""Child processes of a bench (a server, CPU hogs) that end with it, however it ends.

A bench's ``finally`` blocks stop its children and remove its temporary folders, but Python runs
them on Ctrl-C (``KeyboardInterrupt``) only: ``kill PID`` (SIGTERM) ended ``bench/batching.py``
and ``bench/control_loop.py`` at once and left ``inference-server`` and two CPU hogs spinning at
100% with init as their parent. :func:`exit_on_sigterm` turns SIGTERM into ``SystemExit`` so the
same ``finally`` blocks run; :func:`die_with_parent` covers the ends no handler sees (SIGKILL, a
crash): on Linux the child asks the kernel for a signal when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, prctl(2)), elsewhere it is a no-op.

    exit_on_sigterm()
    server = subprocess.Popen([...], preexec_fn=die_with_parent())
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

__all__ = ["PR_SET_PDEATHSIG", "die_with_parent", "exit_on_sigterm"]

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # the shell's status for a process ended by that signal


def exit_on_sigterm() -> None:
    """From now on SIGTERM raises ``SystemExit(143)`` in the main thread, so ``finally`` blocks and
    context managers run as on Ctrl-C. Call it from the main thread (``signal.signal``'s rule)."""
    signal.signal(signal.SIGTERM, _exit)


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when the thread that
    started it dies (Linux: ``PR_SET_PDEATHSIG``, which tracks the creating thread, so start the
    child from a thread that lives as long as the bench, the main one); None elsewhere.

    libc's ``prctl`` is looked up here, in the parent, so the child between fork and exec only
    makes the call. A parent already gone by then (the child's parent is no longer this process)
    gets the child ``sig`` at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()
    number = int(sig)
    args = (ctypes.c_int(PR_SET_PDEATHSIG), *(ctypes.c_ulong(v) for v in (number, 0, 0, 0)))

    def preexec() -> None:
        prctl(*args)  # unsigned long arguments, as prctl(2) reads them
        if os.getppid() != parent:
            os.kill(os.getpid(), number)

    return preexec

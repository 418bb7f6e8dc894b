"""vla.signals: one way to install signal handlers for the server and the agent."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from types import FrameType

from vla.signals import capture_signals


async def test_the_handler_runs_on_the_loop_and_the_previous_one_comes_back() -> None:
    seen: list[tuple[int, bool]] = []
    got = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def handler(signum: int) -> None:
        # A normal callback of the loop (in its thread, the loop running), not a signal frame.
        seen.append((signum, threading.get_ident() == loop_thread and loop.is_running()))
        got.set()

    def previous(signum: int, frame: FrameType | None) -> None:  # pragma: no cover - never called
        raise AssertionError("the previous handler ran while captured")

    old = signal.signal(signal.SIGUSR2, previous)
    try:
        with capture_signals(handler, [signal.SIGUSR2]):
            assert signal.getsignal(signal.SIGUSR2) is not previous
            os.kill(os.getpid(), signal.SIGUSR2)
            async with asyncio.timeout(5):
                await got.wait()
        assert seen == [(signal.SIGUSR2, True)]
        assert signal.getsignal(signal.SIGUSR2) is previous
    finally:
        signal.signal(signal.SIGUSR2, old)


async def test_nothing_is_installed_when_not_asked() -> None:
    before = signal.getsignal(signal.SIGUSR2)
    with capture_signals(lambda signum: None, [signal.SIGUSR2], install=False):
        assert signal.getsignal(signal.SIGUSR2) is before

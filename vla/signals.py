"""Signal handling shared by the inference server and the robot agent.

Both install their handlers the same way: ``signal.signal`` (not ``loop.add_signal_handler``), so
that the previous handlers come back when serving ends (uvicorn's ``capture_signals`` does the
same, for the same reason: a test, ``eval`` running episode after episode, or an embedding
application keeps its own handlers). A Python signal handler runs between two bytecodes of the
main thread, in the middle of whatever the event loop was doing; so the handler installed here
only hands the signal over to the loop (``call_soon_threadsafe``), and the caller's handler runs
there as a normal callback, as ``add_signal_handler`` would run it. Handlers still only record
and flag (a stop event, a force flag, the e-stop latch).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType

__all__ = ["capture_signals"]


@contextlib.contextmanager
def capture_signals(
    handler: Callable[[int], None],
    signals: Iterable[int],
    *,
    install: bool = True,
    loop: asyncio.AbstractEventLoop | None = None,
) -> Iterator[None]:
    """Within the block, each of ``signals`` calls ``handler(signum)`` on ``loop`` (by default the
    running loop); the previous handlers are restored on the way out.

    Does nothing when ``install`` is false or outside the main thread (Python delivers signals
    only there). Raises RuntimeError without a running loop and no ``loop``.
    """
    if not install or threading.current_thread() is not threading.main_thread():
        yield
        return
    target = loop if loop is not None else asyncio.get_running_loop()

    def hand_over(signum: int, frame: FrameType | None) -> None:
        target.call_soon_threadsafe(handler, signum)

    previous = {sig: signal.signal(sig, hand_over) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

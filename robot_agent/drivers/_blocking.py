"""Bounded waits on SDK calls that cannot be cancelled.

libfranka's ``Robot(...)`` and the xArm SDK's ``connect()`` block in C++ or in a socket until the
operating system gives up, which on an unreachable address can take minutes. The agent must say
"no robot at ..." within its configured timeout instead, so such calls run in a daemon thread and
the caller waits on an event with a deadline. A call that finishes after its caller gave up has
its result handed to ``on_late`` (to close a connection nobody will use) and is otherwise dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

__all__ = ["call_with_timeout"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def call_with_timeout(
    fn: Callable[[], T],
    timeout_s: float,
    *,
    name: str,
    on_late: Callable[[T], Any] | None = None,
) -> T:
    """Return ``fn()``, or raise ``TimeoutError`` when it has not returned after ``timeout_s``.

    Exceptions raised by ``fn`` are re-raised in the caller's thread.
    """
    done = threading.Event()
    lock = threading.Lock()
    outcome: dict[str, Any] = {}
    abandoned = False

    def run() -> None:
        try:
            value = fn()
        except BaseException as exc:  # handed to the caller, who decides
            with lock:
                outcome["error"] = exc
            done.set()
            return
        with lock:
            outcome["value"] = value
            late = abandoned
        done.set()
        if late and on_late is not None:
            try:
                on_late(value)
            except Exception:  # the caller is gone; nothing to report to but the log
                logger.warning("Closing the late result of %s failed.", name, exc_info=True)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not done.wait(timeout_s):
        with lock:
            if "value" not in outcome and "error" not in outcome:
                abandoned = True
                raise TimeoutError(f"{name} did not return within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return cast(T, outcome["value"])

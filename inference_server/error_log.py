"""Log each distinct error's traceback once, then only how often it repeats.

A plugin that raises on every request, with an agent retrying at ~100 requests/s, would otherwise
write a traceback per request (3,175 lines in 3 s, issue 10). An error is "the same" when its
exception type, the line that raised it and the log message template agree; the exception's text
is not part of it, since it often carries per-request values. After the first traceback, repeats
are counted and reported at most once per ``window_s`` (uvicorn's ``on_tick`` logs its request
limit once, when it trips; this is the same idea for errors)::

    The model failed on a batch of 1: RuntimeError: boom (repeated 95 times in the last 10 s)

A count is written when the next repeat comes after the window, and by :meth:`ErrorLog.flush` at
shutdown, so no background task is needed. Thread-safe: the model worker and the event loop share
one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ErrorLog"]


@dataclass
class _Seen:
    message: str  # the last occurrence, formatted, for the count line
    window_start: float
    repeats: int = 0  # since the last line written


class ErrorLog:
    """Rate-limited ``logger.exception`` for one logger.

    ``window_s`` is the shortest time between two count lines of one error; at most
    ``max_errors`` distinct errors are remembered (least recently seen forgotten first), so a
    flood of different errors cannot grow memory.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        window_s: float = 10.0,
        max_errors: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._window = window_s
        self._max = max_errors
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str, str], _Seen] = OrderedDict()

    def exception(self, exc: BaseException, msg: str, *args: object) -> None:
        """Log ``msg % args`` with ``exc``'s traceback if this error is new, else count it."""
        key = (type(exc).__qualname__, _site(exc), msg)
        text = f"{msg % args if args else msg}: {type(exc).__name__}: {exc}"
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = _Seen(text, now)
                while len(self._seen) > self._max:
                    self._seen.popitem(last=False)
                report = None
            else:
                self._seen.move_to_end(key)
                seen.repeats += 1
                seen.message = text
                report = self._take(seen, now) if now - seen.window_start >= self._window else None
        if seen is None:
            self._logger.error(msg, *args, exc_info=exc)
        elif report is not None:
            self._logger.error("%s (repeated %d times in the last %.0f s)", *report)

    def flush(self) -> None:
        """Write the count of every error that repeated since its last line (call at shutdown)."""
        now = self._clock()
        with self._lock:
            reports = [self._take(seen, now) for seen in self._seen.values() if seen.repeats]
        for report in reports:
            self._logger.error("%s (repeated %d times in the last %.0f s)", *report)

    @staticmethod
    def _take(seen: _Seen, now: float) -> tuple[str, int, float]:
        report = (seen.message, seen.repeats, now - seen.window_start)
        seen.repeats = 0
        seen.window_start = now
        return report


def _site(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised (the innermost frame), or ``""`` if never raised."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"

"""The latched emergency stop: once triggered, the arm stays stopped until someone resets it.

Three things trigger it: the agent on a driver fault, the shield after too many consecutive
severe interventions, and the operator (the agent wires SIGUSR1 and a CLI command to
:meth:`EStop.trigger`). Only an explicit :meth:`EStop.reset` clears it: a latch that clears
itself would let a flapping fault move the arm again unattended.
"""

from __future__ import annotations

import logging
import threading

__all__ = ["EStop"]

logger = logging.getLogger(__name__)


class EStop:
    """A thread-safe latch; the first reason wins until :meth:`reset`.

    Example::

        estop = EStop()
        estop.trigger("driver fault: joint 4 reflex")
        assert estop.active and estop.reason == "driver fault: joint 4 reflex"
        estop.reset()
    """

    def __init__(self) -> None:
        # A signal handler or a driver thread may trigger while the control task reads.
        self._lock = threading.Lock()
        self._reason: str | None = None

    @property
    def active(self) -> bool:
        return self._reason is not None

    @property
    def reason(self) -> str | None:
        """Why it was first triggered, or None when not active."""
        return self._reason

    def trigger(self, reason: str) -> bool:
        """Latch the e-stop; returns True if this call latched it, False if it was already active."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason or "unspecified"
        logger.warning("E-stop latched: %s", self._reason)
        return True

    def reset(self) -> bool:
        """Clear the latch (an explicit operator action); returns True if it was active."""
        with self._lock:
            was, self._reason = self._reason, None
        if was is not None:
            logger.warning("E-stop reset (was: %s)", was)
        return was is not None

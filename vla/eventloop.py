"""The one way the inference server, the robot agent and ``robot-agent eval`` start their event
loop: uvloop's when installed (the ``server`` and ``agent`` extras install it), else asyncio's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh event loop (uvloop when importable), close the loop
    and return ``main``'s result; its exceptions propagate, as from :func:`asyncio.run`."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)

"""``vla.eventloop.run``: the one place the server, the agent and ``eval`` start their event loop
(issue 12: the uvloop snippet was written three times)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from vla import eventloop

ROOT = Path(__file__).resolve().parents[1]


async def _loop_module_and(value: int) -> tuple[str, int]:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__, value


def test_run_uses_uvloop_when_installed_and_returns_the_result() -> None:
    pytest.importorskip("uvloop")
    module, value = eventloop.run(_loop_module_and(7))
    assert module.startswith("uvloop") and value == 7


def test_run_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    module, value = eventloop.run(_loop_module_and(3))
    assert module.startswith("asyncio") and value == 3


def test_run_propagates_the_coroutine_s_exception() -> None:
    async def fails() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        eventloop.run(fails())


def test_no_other_module_of_the_packages_starts_uvloop_itself() -> None:
    found = [
        str(path.relative_to(ROOT))
        for package in ("vla", "safety", "inference_server", "robot_agent", "vla_demo")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^\s*import uvloop\b", path.read_text(), re.MULTILINE)
    ]
    assert found == ["vla/eventloop.py"]

"""Fixtures for the inference server tests: python bundles and gates the tests own."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inference_server import policies
from tests.utils import write_python_bundle

_gate_ids = itertools.count()


@pytest.fixture
def echo_bundle(tmp_path: Path) -> Path:
    return write_python_bundle(tmp_path / "echo", "tests.inference_server.policies:EchoPolicy")


@pytest.fixture
def gate() -> Iterator[tuple[str, threading.Event]]:
    """A named ``threading.Event`` that :class:`GatedPolicy` waits on; opened at teardown."""
    name = f"gate-{next(_gate_ids)}"
    event = policies.GATES[name] = threading.Event()
    yield name, event
    event.set()
    policies.GATES.pop(name, None)


@pytest.fixture
def entered() -> Iterator[tuple[str, threading.Event]]:
    """Set by :class:`GatedPolicy` when a predict call starts."""
    name = f"entered-{next(_gate_ids)}"
    event = policies.GATES[name] = threading.Event()
    yield name, event
    policies.GATES.pop(name, None)

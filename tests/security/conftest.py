"""Fixtures for the transport security tests: throwaway CAs and certificates made with
``cryptography`` (:func:`inference_server.security.make_certs`), and token files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from inference_server.security import make_certs
from tests.utils import write_python_bundle

TOKEN = "lab-token-0123456789abcdef"  # a test token, never a real one


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A lab CA with a server certificate for localhost and 127.0.0.1, and a client certificate."""
    return make_certs(tmp_path_factory.mktemp("certs"), ["localhost", "127.0.0.1"])


@pytest.fixture(scope="session")
def other_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Another lab's CA and certificates: the same names, signed by a CA the agent does not trust."""
    return make_certs(tmp_path_factory.mktemp("other"), ["localhost", "127.0.0.1"])


@pytest.fixture(scope="session")
def expired_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Certificates valid for one day, ten days ago."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    return make_certs(tmp_path_factory.mktemp("expired"), ["localhost", "127.0.0.1"], days=1, now=then)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# lab tokens\n\n{TOKEN}\nanother-token-abcdefghijkl\n")
    return path


@pytest.fixture
def echo_bundle(tmp_path: Path) -> Path:
    return write_python_bundle(tmp_path / "echo", "tests.inference_server.policies:EchoPolicy")

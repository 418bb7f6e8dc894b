"""The public surface is on purpose: everything in ``__all__`` exists and nothing private leaks."""

from __future__ import annotations

import importlib

import pytest

import inference_server

MODULES = [
    "inference_server.backends",
    "inference_server.backends.base",
    "inference_server.backends.python_backend",
    "inference_server.batcher",
    "inference_server.bundle",
    "inference_server.config",
    "inference_server.errors",
    "inference_server.metrics",
    "inference_server.normalization",
    "inference_server.request_queue",
    "inference_server.result",
    "inference_server.server",
    "inference_server.service",
    "inference_server.validation",
    "inference_server.worker",
]


def test_package_exports() -> None:
    assert set(inference_server.__all__) >= {
        "Server",
        "ServerConfig",
        "PythonPolicy",
        "BundleError",
        "ServerError",
    }
    for name in inference_server.__all__:
        member = getattr(inference_server, name)
        assert not name.startswith("_")
        assert member.__module__.startswith("inference_server"), name


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_declares_what_it_exports(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert hasattr(module, "__all__"), module_name
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.{name}"


def test_importing_the_package_pulls_no_heavy_framework() -> None:
    import subprocess
    import sys

    code = "import sys, inference_server; print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_errors_share_one_base() -> None:
    from inference_server import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ServerError), name

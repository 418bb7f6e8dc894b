"""The inference server: serves one policy bundle over gRPC (``vla.v1.PolicyService``).

Build against :class:`ServerConfig` and :class:`Server` to run it in-process, and against
:class:`PythonPolicy` to serve any Python policy from a bundle.
"""

from __future__ import annotations

from inference_server.backends.python_backend import PythonPolicy
from inference_server.bundle import Bundle, CameraSpec, load_bundle
from inference_server.config import ServerConfig, load_config
from inference_server.errors import (
    BackendError,
    BackendUnavailable,
    BundleError,
    ConfigError,
    ImportFromStringError,
    InvalidRequest,
    ServerError,
)
from inference_server.server import Server

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "Bundle",
    "BundleError",
    "CameraSpec",
    "ConfigError",
    "ImportFromStringError",
    "InvalidRequest",
    "PythonPolicy",
    "Server",
    "ServerConfig",
    "ServerError",
    "load_bundle",
    "load_config",
]

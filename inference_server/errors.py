"""Errors of the inference server, one hierarchy so callers can catch what they can handle.

::

    ServerError
    ├── ConfigError           a server config file or flag is wrong
    ├── BundleError           a policy bundle's manifest or model does not hold together
    ├── BackendError          a backend could not load or run the model
    │   └── BackendUnavailable    its extra (torch, onnxruntime, tensorrt...) is not installed
    ├── ImportFromStringError a "module:Class" string does not resolve
    └── InvalidRequest        one request does not fit the policy spec (answered INVALID on the wire)

Only ``cli.py`` turns these into an exit status; everything below it raises.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "BundleError",
    "ConfigError",
    "ImportFromStringError",
    "InvalidRequest",
    "ServerError",
]


class ServerError(Exception):
    """Base class of every error the inference server raises on purpose."""


class ConfigError(ServerError):
    """Raised when a config file or flag is wrong; ``.path`` and ``.field`` name the culprit."""

    def __init__(self, message: str, *, path: Path | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.field = field


class BundleError(ServerError):
    """Raised when a bundle's manifest or model files are missing, malformed or disagree.

    The message starts with ``bundle <path>:`` and names the field, e.g.
    ``bundle demo/policy.toml: cameras.wrist.height is 240, the model expects 224``.
    """

    def __init__(self, path: Path | str, message: str, *, field: str | None = None) -> None:
        super().__init__(f"bundle {path}: {message}")
        self.path = Path(path)
        self.field = field


class BackendError(ServerError):
    """Raised when a backend fails to load a model, or a model fails to run."""


class BackendUnavailable(BackendError):
    """Raised when the package a backend needs is not installed; the message has the pip line."""


class ImportFromStringError(ServerError):
    """Raised when a ``"module:attr"`` string cannot be imported."""


class InvalidRequest(ServerError):
    """Raised when a request does not fit the spec; ``.field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

"""Read a PEM file for TLS (a certificate, a key, a CA bundle), with one error style on both sides."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["read_pem"]


def read_pem(path: Path, field: str, marker: bytes, error: Callable[..., Exception]) -> bytes:
    """The bytes of ``path``, a PEM file holding a block of ``marker`` (``b"CERTIFICATE"``,
    ``b"PRIVATE KEY"``). Raises ``error(message, field=field)`` (each side's ``ConfigError``)
    naming ``field`` and the path when the file cannot be read or is not such a PEM file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(
            f"{field} {path}: cannot read it ({exc.strerror or type(exc).__name__})", field=field
        ) from None
    if b"-----BEGIN " not in data or marker not in data:
        raise error(f"{field} {path}: not a PEM file with a {marker.decode()}", field=field)
    return data

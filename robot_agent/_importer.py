"""Resolve ``"module:Class"`` strings at load time, as uvicorn's ``importer.py`` does, so that robot
SDKs are imported only when chosen. A missing optional dependency answers with its install line.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from robot_agent.errors import ConfigError, MissingExtra

__all__ = ["resolve"]


def resolve(kind: str, table: Mapping[str, str], extras: Mapping[str, str], *, what: str, field: str) -> type:
    """The class registered as ``kind`` in ``table``; ``extras`` maps kinds to their pip extra."""
    try:
        target = table[kind]
    except KeyError:
        raise ConfigError(
            f"{field} is {kind!r}, expected one of {', '.join(sorted(table))}", field=field
        ) from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        extra = extras.get(kind)
        # Our own module missing is a packaging bug, not a missing extra: let it through.
        if extra is None or (missing.split(".")[0] in ("robot_agent", "safety", "vla")):
            raise
        raise MissingExtra(
            f"{what} {kind!r} needs the package {missing!r}: pip install 'vla-deploy[{extra}]'"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(
            f'{what} {kind!r}: attribute "{attr}" not found in module "{module_name}"', field=field
        ) from None

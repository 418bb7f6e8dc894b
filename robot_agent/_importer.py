"""Pick a driver or camera class by name from a table of ``"module:Class"`` strings, so that robot
SDKs are imported only when chosen. The import itself is :func:`vla.importer.import_from_string`,
shared with the server; this module only turns its answers into the agent's errors: a missing
optional dependency answers with its install line (:class:`MissingExtra`).
"""

from __future__ import annotations

from collections.abc import Mapping

from robot_agent.errors import ConfigError, MissingExtra
from vla.importer import ImportFromStringError, MissingPackage, import_from_string

__all__ = ["resolve"]


def resolve(kind: str, table: Mapping[str, str], extras: Mapping[str, str], *, what: str, field: str) -> type:
    """The class registered as ``kind`` in ``table``; ``extras`` maps kinds to their pip extra.

    Raises :class:`ConfigError` naming ``field`` for an unknown kind or an attribute the module
    lacks, :class:`MissingExtra` with the pip line when the kind's SDK is not installed.
    """
    try:
        target = table[kind]
    except KeyError:
        raise ConfigError(
            f"{field} is {kind!r}, expected one of {', '.join(sorted(table))}", field=field
        ) from None
    try:
        cls: type = import_from_string(target)
    except MissingPackage as exc:
        extra = extras.get(kind)
        if extra is None:
            raise
        raise MissingExtra(
            f"{what} {kind!r} needs the package {exc.name!r}: pip install 'vla-deploy[{extra}]'"
        ) from exc
    except ImportFromStringError as exc:
        raise ConfigError(f"{what} {kind!r}: {exc}", field=field) from exc
    return cls

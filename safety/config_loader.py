"""One small config loader for every side: a TOML file -> nested frozen dataclass sections.

Why in ``safety``: it is the one package at the bottom that all three readers can import.
``safety`` promises to stay pure numpy and to import neither the agent, the server nor ``vla``
(``tests/safety/test_safety_exports.py``), so the loader cannot live in ``vla``; ``robot_agent``
already imports ``safety``, and the inference server may (numpy only, no grpc, no torch). This
module imports only the standard library. Each package keeps its own error class: every function
takes ``error``, the class to raise (called as ``error(message, field=...)``), so callers catch
what they always did.

The work is split the way uvicorn splits ``Config``: this module reads the file and shapes it
(unknown keys, nested sections, tables of sections, lists of tagged sections, TOML's missing
null); the types and values are checked by each section's ``__post_init__``
(:func:`check_types` plus the section's own rules), so a config built in code is checked the
same way as one read from a file. Messages name the key path, and the file where it is known::

    control: unknown key 'rat_hz' (known: blend, ...)       (field control.rat_hz)
    control.rate_hz is 'fast' (str), expected a finite number
    config agent.toml: not valid TOML (Expected '=' after a key ... (at line 3, column 7))

:func:`show_default` formats a dataclass default for ``--help`` (``(default: 100)``), so a
flag's help and the value the config takes cannot disagree.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

__all__ = [
    "ErrorFactory",
    "build",
    "check_keys",
    "check_types",
    "check_value",
    "default_of",
    "read_toml",
    "set_dotted",
    "show_default",
]

T = TypeVar("T")


class ErrorFactory(Protocol):
    """A package's config error class, or anything called the same way."""

    def __call__(self, message: str, *, field: str | None = ...) -> Exception: ...


def read_toml(
    path: str | Path, error: ErrorFactory, *, label: str | None = None, missing: str = "no such file"
) -> dict[str, Any]:
    """The parsed TOML document at ``path``.

    Raises ``error`` when the file is missing (``missing`` says so), unreadable or not TOML; the
    message starts with ``label`` (``"config agent.toml"``) when given, else the caller's error
    class names the file (a bundle's ``BundleError`` does).
    """
    prefix = f"{label}: " if label else ""
    try:
        with Path(path).open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"{prefix}{missing}", field=None) from None
    except IsADirectoryError:
        raise error(f"{prefix}is a folder, expected a TOML file", field=None) from None
    except OSError as exc:
        raise error(f"{prefix}cannot be read ({exc.strerror or exc})", field=None) from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{prefix}not valid TOML ({exc})", field=None) from None


def set_dotted(data: dict[str, Any], key: str, value: Any, error: ErrorFactory) -> None:
    """Set ``data["a"]["b"] = value`` for ``key = "a.b"`` (a flag overriding a file's key)."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise error(f"{key}: {part} is not a table", field=key)
    node[parts[-1]] = value


def check_keys(
    cls: type, data: Mapping[str, Any], error: ErrorFactory, *, section: str = "", source: str | None = None
) -> None:
    """Refuse a key of ``data`` that ``cls`` (or a section below it) does not have.

    ``source`` (``"config agent.toml"``) starts the message, so a typo in a file names the file;
    run it on a file's table before flags are merged in.
    """
    _shape(cls, data, error, section=section, source=source, construct=False)


def build(cls: type[T], data: Mapping[str, Any], error: ErrorFactory, *, section: str = "") -> T:
    """``cls`` built from a parsed TOML table.

    Rules: a key ``cls`` does not have is refused; a field that is a dataclass takes a table
    (a section), which overrides only the keys it names (the rest keep the field's default); a
    ``Mapping[str, Section]`` takes a table of tables (``[cameras.front]``), each given its key as
    ``name`` when the section has that field; a ``tuple[A | B, ...]`` of dataclasses takes a list
    of tables picked by their ``kind``; ``false`` stands for ``None`` in an optional field that is
    not a bool (TOML has no null). Types and values are left to the sections' constructors.
    """
    built: T = _shape(cls, data, error, section=section, source=None, construct=True)
    return built


def _shape(
    cls: type,
    data: Any,
    error: ErrorFactory,
    *,
    section: str,
    source: str | None,
    construct: bool,
    base: Any = None,
) -> Any:
    if not isinstance(data, Mapping):
        raise error(f"{section} must be a table, got {data!r}", field=section or None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            where = _join(section, key)
            message = (
                f"{section + ': ' if section else ''}unknown key {key!r} (known: {', '.join(sorted(fields))})"
            )
            raise error(f"{source}: {message}" if source else message, field=where)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = _join(section, key)
        hint = hints[key]
        nested = _section_type(hint)
        if nested is not None and value is not None:
            default = _default(fields[key])
            kwargs[key] = _shape(
                nested, value, error, section=where, source=source, construct=construct, base=default
            )
        elif (entry := _table_of_sections(hint)) is not None and value is not None:
            kwargs[key] = _sections(entry, value, error, where, source, construct)
        elif (kinds := _tagged_sections(hint)) is not None and value is not None:
            kwargs[key] = _tagged(kinds, value, error, where, source, construct)
        elif value is False and _is_optional(hint) and bool not in _members(hint):
            kwargs[key] = None
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    if not construct:
        return None
    if dataclasses.is_dataclass(base) and not isinstance(base, type):
        return dataclasses.replace(base, **kwargs)
    missing = [
        name
        for name, f in fields.items()
        if f.init and name not in kwargs and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]  # fmt: skip
    if missing:
        where = _join(section, missing[0])
        raise error(f"{where} is missing", field=section or where)
    return cls(**kwargs)


def _sections(
    entry: type, value: Any, error: ErrorFactory, where: str, source: str | None, construct: bool
) -> Any:
    if not isinstance(value, Mapping):
        raise error(f"{where} must be a table of [{where}.NAME] tables, got {value!r}", field=where)
    has_name = any(f.name == "name" for f in dataclasses.fields(entry))
    out = {}
    for name, table in value.items():
        at = f"{where}.{name}"
        if not isinstance(table, Mapping):
            raise error(f"{at} must be a table, got {table!r}", field=at)
        given = {"name": name, **table} if has_name else table
        out[name] = _shape(entry, given, error, section=at, source=source, construct=construct)
    return out


def _tagged(
    kinds: dict[str, type], value: Any, error: ErrorFactory, where: str, source: str | None, construct: bool
) -> Any:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise error(f"{where} must be a list of tables, got {value!r}", field=where)
    out = []
    for i, table in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(table, Mapping) or "kind" not in table:
            raise error(f"{at} must be a table with a kind ({', '.join(kinds)})", field=at)
        kind = table["kind"]
        if kind not in kinds:
            raise error(f"{at}.kind is {kind!r}, expected one of {', '.join(kinds)}", field=f"{at}.kind")
        out.append(_shape(kinds[kind], table, error, section=at, source=source, construct=construct))
    return tuple(out)


def _join(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _is_optional(hint: Any) -> bool:
    return type(None) in _members(hint)


def _section_type(hint: Any) -> type | None:
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _table_of_sections(hint: Any) -> type | None:
    if typing.get_origin(hint) is Mapping or typing.get_origin(hint) is dict:
        args = typing.get_args(hint)
        if len(args) == 2 and _section_type(args[1]) is not None:
            return typing.cast(type, args[1])
    return None


def _tagged_sections(hint: Any) -> dict[str, type] | None:
    """``{kind: class}`` for ``tuple[A | B, ...]`` whose members each have a ``kind: Literal[...]``."""
    if typing.get_origin(hint) is not tuple:
        return None
    args = typing.get_args(hint)
    if len(args) != 2 or args[1] is not Ellipsis:
        return None
    kinds: dict[str, type] = {}
    for member in _members(args[0]):
        if _section_type(member) is None:
            return None
        kind = typing.get_type_hints(member).get("kind")
        if typing.get_origin(kind) is not Literal:
            return None
        kinds[typing.get_args(kind)[0]] = member
    return kinds


# --- types, for the sections' __post_init__ -------------------------------------------------------


def check_types(obj: Any, error: ErrorFactory, *, section: str = "") -> None:
    """Check (and normalise) every field of the frozen dataclass ``obj`` against its annotation.

    Strict as TOML is typed: ``true`` is not an integer, ``"8"`` is not a number, an integer is a
    float (``5`` for ``5.0``, stored as ``5.0``) and a float must be finite; a ``Path`` is given as
    a string; a list is a tuple. Call it first in ``__post_init__``. Raises ``error``::

        control.rate_hz is 'fast' (str), expected a finite number
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        where = _join(section, f.name)
        value = _typed(getattr(obj, f.name), hints[f.name], where, error)
        object.__setattr__(obj, f.name, value)


def check_value(value: Any, hint: Any, where: str, error: ErrorFactory) -> Any:
    """``value`` as annotation ``hint`` takes it (the rules of :func:`check_types`), for a reader
    without a dataclass (a bundle's manifest). Raises ``error`` naming ``where``::

        chunk_length is '16' (str), expected an integer
    """
    return _typed(value, hint, where, error)


class _Mismatch(Exception):
    """A value that is not of the annotated type; ``expected`` says what would be."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _typed(value: Any, hint: Any, where: str, error: ErrorFactory) -> Any:
    try:
        return _convert(value, hint)
    except _Mismatch as exc:
        raise error(
            f"{where} is {value!r} ({type(value).__name__}), expected {exc.expected}", field=where
        ) from None


_KIND = {
    int: "an integer",
    float: "a finite number",
    bool: "true or false",
    str: "a string",
    Path: "a path (string)",
    list: "a list",
    dict: "a table",
}


def _convert(value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(hint) if m is not type(None)]
        if value is None and len(members) < len(typing.get_args(hint)):
            return None
        for member in members:
            try:
                return _convert(value, member)
            except _Mismatch:
                continue
        expected = " or ".join(_describe(m) for m in members)
        raise _Mismatch(f"{expected} (or false for none)" if _is_optional(hint) else expected)
    if hint is Any:
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Mismatch(_KIND[int])
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _Mismatch(_KIND[float])
        return float(value)
    if hint is bool or hint is str:
        if not isinstance(value, hint):
            raise _Mismatch(_KIND[hint])
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise _Mismatch(_KIND[Path])
        return Path(value)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise _Mismatch(_describe(hint))
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise _Mismatch(_describe(hint))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Mismatch(_describe(hint))
        return tuple(_convert(v, a) for v, a in zip(value, args, strict=True))
    if origin is Mapping or hint is Mapping or origin is dict:
        if not isinstance(value, Mapping):
            raise _Mismatch("a table")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is not Any:
            return {k: _convert(v, args[1]) for k, v in value.items()}
        return dict(value)
    if hint is list or hint is dict:
        if not isinstance(value, list if hint is list else Mapping):
            raise _Mismatch(_KIND[hint])
        return hint(value)
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise _Mismatch(_describe(hint))
        return value
    raise TypeError(f"{hint!r}: no type check for this annotation")  # a new field of a new type


def _describe(hint: Any) -> str:
    if hint in _KIND:
        return _KIND[hint]
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return "a list"
        return f"{len(args)} values"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"a {hint.__name__}"
    return str(hint)


# --- defaults, for --help -------------------------------------------------------------------------


def default_of(cls: type, key: str) -> Any:
    """The default of dotted ``key`` (``"control.rate_hz"``) in dataclass ``cls``: inside a section,
    the value of the field's default section (which may differ from the section class's own)."""
    node: Any = cls
    value: Any = None
    for part in key.split("."):
        if node is None or not dataclasses.is_dataclass(node):
            raise KeyError(f"{key}: {part} is inside a value, not a section")
        fields = {f.name: f for f in dataclasses.fields(node)}
        if part not in fields:
            raise KeyError(
                f"{key}: {part} is not a field of {type(node).__name__ if not isinstance(node, type) else node.__name__}"
            )
        value = getattr(node, part) if not isinstance(node, type) else _default(fields[part])
        node = value if dataclasses.is_dataclass(value) else None
    return value


def show_default(value: Any) -> str:
    """A default as ``--help`` shows it: ``none``, ``on``/``off``, ``100`` for 100.0, ``''``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str) and not value:
        return "''"
    return str(value)

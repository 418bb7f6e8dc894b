"""``create_autospec`` that also checks arguments of pybind11 methods.

``unittest.mock.create_autospec`` checks call signatures through ``inspect.signature``, which has
nothing to read on a pybind11 method (panda-python, libfranka, pyrealsense2): a call with wrong
arguments would pass silently. pybind11 writes every overload's signature into ``__doc__``, so this
helper parses those and makes each mocked method refuse a call that fits none of them. Only the
transport is replaced: the classes, method names and parameter lists are the installed SDK's.
"""

from __future__ import annotations

import inspect
from typing import Any
from unittest import mock

__all__ = ["pybind_signatures", "strict_autospec", "strict_class"]

_OPEN = "([{<"
_CLOSE = ")]}>"


def _split_top_level(text: str) -> list[str]:
    """Split ``text`` on commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    tail = "".join(current).strip()
    if tail:
        parts.append(tail)
    return parts


def _param_list(line: str, name: str) -> str | None:
    """The text between the parentheses of ``name(...) -> ...`` on a pybind11 doc line."""
    start = line.find(f"{name}(")
    if start < 0:
        return None
    i = start + len(name) + 1
    depth = 1
    quote = ""
    for j in range(i, len(line)):
        ch = line[j]
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                return line[i:j]
    return None


def pybind_signatures(name: str, doc: str | None) -> list[inspect.Signature]:
    """Every overload signature of pybind11 method ``name``, without ``self``."""
    if not doc:
        return []
    signatures = []
    for raw in doc.splitlines():
        line = raw.strip()
        # "name(...)" for one overload, "1. name(...)" for several
        if line[:1].isdigit() and ". " in line:
            line = line.split(". ", 1)[1]
        if not line.startswith(f"{name}("):
            continue
        params_text = _param_list(line, name)
        if params_text is None:
            continue
        items = _split_top_level(params_text)
        if "*args" in items or "**kwargs" in items:
            continue  # the header of an overloaded function; the overloads follow
        params = []
        for i, item in enumerate(items):
            pname = item.split(":", 1)[0].split("=", 1)[0].strip()
            has_default = "=" in item.split(":", 1)[-1] or ("=" in item and ":" not in item)
            if i == 0 and pname == "self":
                continue
            kind = (
                inspect.Parameter.POSITIONAL_ONLY
                if pname.startswith("arg") and pname[3:].isdigit()
                else inspect.Parameter.POSITIONAL_OR_KEYWORD
            )
            params.append(
                inspect.Parameter(pname, kind, default=None if has_default else inspect.Parameter.empty)
            )
        try:
            signatures.append(inspect.Signature(params))
        except ValueError:
            continue
    return signatures


def _checker(owner: str, name: str, signatures: list[inspect.Signature]) -> Any:
    def check(*args: Any, **kwargs: Any) -> Any:
        for signature in signatures:
            try:
                signature.bind(*args, **kwargs)
            except TypeError:
                continue
            return mock.DEFAULT
        raise TypeError(
            f"{owner}.{name}{tuple(args)!r} {kwargs!r} fits none of its signatures: "
            + " | ".join(str(s) for s in signatures)
        )

    return check


def strict_autospec(cls: type, **kwargs: Any) -> Any:
    """An instance autospec of ``cls`` whose pybind11 methods check their arguments too."""
    instance = mock.create_autospec(cls, instance=True, **kwargs)
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name)
        if isinstance(attr, property) or not callable(attr):
            continue
        signatures = pybind_signatures(name, getattr(attr, "__doc__", None))
        if signatures:
            getattr(instance, name).side_effect = _checker(cls.__name__, name, signatures)
    return instance


def strict_class(cls: type) -> Any:
    """A stand-in for pybind11 class ``cls``: calling it checks the constructor's arguments and
    returns a fresh :func:`strict_autospec` instance; ``.instances`` lists them in order."""
    signatures = pybind_signatures("__init__", cls.__init__.__doc__)
    check = _checker(cls.__name__, "__init__", signatures)
    instances: list[Any] = []

    def construct(*args: Any, **kwargs: Any) -> Any:
        if signatures:
            check(*args, **kwargs)
        instance = strict_autospec(cls)
        instances.append(instance)
        return instance

    factory = mock.Mock(side_effect=construct)
    factory.instances = instances
    return factory

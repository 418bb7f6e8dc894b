"""Resolve ``"module:attr"`` strings, so backends and plugin policies load only when chosen.

Tables of such strings (``backends.BACKENDS``) keep torch, onnxruntime and TensorRT out of
``import inference_server``; the same function loads a bundle's ``entrypoint``.
"""

from __future__ import annotations

import importlib
from typing import Any

from inference_server.errors import ImportFromStringError

__all__ = ["import_from_string"]


def import_from_string(import_str: str) -> Any:
    """Import ``"package.module:Attr.sub"`` and return the attribute."""
    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(f'Import string "{import_str}" must be in format "<module>:<attribute>".')
    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name != module_str and not module_str.startswith(f"{exc.name}."):
            raise  # a dependency of the module is missing: let the caller name the extra
        raise ImportFromStringError(f'Could not import module "{module_str}".') from exc
    instance: Any = module
    try:
        for attr in attrs_str.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise ImportFromStringError(f'Attribute "{attrs_str}" not found in module "{module_str}".') from None
    return instance

"""Resolve ``"module:attr"`` strings, so heavy or optional packages load only when chosen.

Both sides pick implementations by name from tables of such strings, as uvicorn's ``importer.py``
does: the server's backends (torch, onnxruntime, TensorRT) and python plugin entrypoints, the
agent's drivers and cameras (robot SDKs). This one function decides, for both, what a failed
import means, so that each side only translates the answer into its own errors:

- the string is malformed, the module itself does not exist, or the attribute is not in it:
  :class:`ImportFromStringError`, with uvicorn's wording;
- the module exists but imports a package that is not installed: :class:`MissingPackage`, naming
  it (``.name``) and its top-level distribution module (``.package``), so the caller can answer
  with the install line of the extra that brings it;
- the missing module is one of ours (``vla``, ``safety``, ``inference_server``, ``robot_agent``,
  ``vla_demo``): a packaging bug, not a missing extra; the ``ModuleNotFoundError`` goes through.

Only the standard library is imported here: ``vla`` stays importable without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["OWN_PACKAGES", "ImportFromStringError", "MissingPackage", "import_from_string"]

#: Top-level packages of this project: one of them missing is a packaging bug, never an extra.
OWN_PACKAGES = frozenset({"vla", "safety", "inference_server", "robot_agent", "vla_demo"})


class ImportFromStringError(Exception):
    """Raised when a ``"module:attr"`` string is malformed, or its module or attribute does not exist."""


class MissingPackage(ImportError):
    """Raised when the module named by a ``"module:attr"`` string needs a package that is not installed.

    ``.name`` is the module that was not found (``"torch"``, ``"pyrealsense2.pyrealsense2"``),
    ``.package`` its top-level name (``"torch"``), ``.module`` the module that needed it.
    """

    def __init__(self, message: str, *, name: str, module: str) -> None:
        super().__init__(message, name=name)
        self.package = name.split(".")[0]
        self.module = module


def import_from_string(import_str: str) -> Any:
    """Import ``"package.module:Attr.sub"`` and return the attribute.

    Raises :class:`ImportFromStringError` or :class:`MissingPackage` as the module docstring says;
    any other error raised while the module runs its top level goes through unchanged.
    """
    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(f'Import string "{import_str}" must be in format "<module>:<attribute>".')
    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_str or module_str.startswith(f"{missing}."):
            raise ImportFromStringError(f'Could not import module "{module_str}".') from exc
        if not missing or missing.split(".")[0] in OWN_PACKAGES:
            raise  # our own module missing: a packaging bug, not an optional dependency
        raise MissingPackage(
            f'module "{module_str}" needs the package "{missing}", which is not installed',
            name=missing,
            module=module_str,
        ) from exc
    instance: Any = module
    try:
        for attr in attrs_str.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        raise ImportFromStringError(f'Attribute "{attrs_str}" not found in module "{module_str}".') from None
    return instance

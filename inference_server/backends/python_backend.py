"""Serve any policy written in Python: the bundle names a class, the server calls it.

This is how a LeRobot or openpi model is served without exporting it. The bundle folder goes on
``sys.path`` so ``entrypoint = "policy:MyPolicy"`` can point at ``policy.py`` inside the bundle.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from typing_extensions import override

from inference_server.backends.base import Backend, Batch
from inference_server.errors import BackendError
from vla.importer import ImportFromStringError, MissingPackage, import_from_string

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["PythonBackend", "PythonPolicy"]

logger = logging.getLogger(__name__)


@runtime_checkable
class PythonPolicy(Protocol):
    """The plugin interface: built once as ``Class(bundle_dir, manifest)``, then called per batch.

    ``manifest`` is the bundle's ``policy.toml`` as a plain ``dict`` (every key, ``[extra]``
    included); ``bundle_dir`` is the bundle folder (also on ``sys.path``). For ``backend =
    "python"`` the manifest's ``model`` is optional: the class loads what it needs itself.

    ``predict(batch)`` gets ``{"images": {camera: uint8 [B, H, W, 3] RGB}, "state": float32
    [B, S], "instruction": list[str], "prev_actions": list[float32 [n, action_dim] | None],
    "inference_delay_steps": list[int | None]}`` and returns float ``[B, chunk_length,
    action_dim]``. With a manifest ``[normalization]`` section the server normalises ``state``
    (``[normalization.state]``) and ``prev_actions`` (``[normalization.actions]``) on the way in
    and un-normalises the returned actions, so ``prev_actions`` are in the space the policy
    answers in; without it all three are in physical units. ``predict`` is always called from
    the same thread, one batch at a time.

    Warm-up (``warmup_iters`` times at batch 1, then once at ``max_batch``, before SERVING) calls
    ``predict`` with random images, a zero state, instruction ``"warm up"`` and ``None`` for
    ``prev_actions`` and ``inference_delay_steps`` (:func:`~inference_server.backends.base.dummy_batch`).

    An optional ``close()`` is called once when the server shuts down (after the last batch), on
    the same thread. ``reset()`` is never called by the server: it serves many sessions in one
    batch, so a policy keeps no per-episode state (what it needs rides in each request).
    """

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None: ...

    def predict(self, batch: dict[str, Any]) -> np.ndarray: ...


class PythonBackend(Backend):
    """Adapts a :class:`PythonPolicy` to the backend interface."""

    def __init__(self, bundle: Bundle) -> None:
        assert bundle.entrypoint is not None
        self._policy = _load_policy(bundle)

    @override
    def predict(self, batch: Batch) -> np.ndarray:
        out = self._policy.predict(
            {
                "images": batch.images,
                "state": batch.state,
                "instruction": batch.instruction,
                "prev_actions": batch.prev_actions,
                "inference_delay_steps": batch.inference_delay_steps,
            }
        )
        return np.asarray(out)

    @override
    def close(self) -> None:
        close = getattr(self._policy, "close", None)
        if callable(close):
            close()


def _load_policy(bundle: Bundle) -> Any:
    bundle_dir = bundle.path.resolve()
    entrypoint = bundle.entrypoint or ""
    if str(bundle_dir) not in sys.path:
        sys.path.insert(0, str(bundle_dir))
    _forget_shadowed_module(entrypoint.partition(":")[0].split(".")[0], bundle_dir)
    try:
        cls = import_from_string(entrypoint)
    except ImportFromStringError as exc:
        raise bundle.error(f"entrypoint is {entrypoint!r}: {exc}", field="entrypoint") from exc
    except (MissingPackage, ModuleNotFoundError) as exc:  # ModuleNotFoundError: a module named like ours
        raise BackendError(
            f"entrypoint {entrypoint!r} needs the module {exc.name!r}, which is not installed"
        ) from exc
    except (SyntaxError, UnicodeDecodeError) as exc:  # random bytes, truncated, NUL bytes, not UTF-8
        module = entrypoint.partition(":")[0]
        file = _module_file(module) or getattr(exc, "filename", None) or module
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise bundle.error(
            f"entrypoint is {entrypoint!r}: {file} is not valid Python{where}: {type(exc).__name__}: "
            f"{getattr(exc, 'msg', None) or exc}; expected the module defining the policy class",
            field="entrypoint",
        ) from exc
    except Exception as exc:  # the module's own code raised while importing
        module = entrypoint.partition(":")[0]
        raise BackendError(
            f"entrypoint {entrypoint!r}: importing {_module_file(module) or module} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    logger.info("Loading Python policy %s from %s", entrypoint, bundle_dir)
    try:
        return cls(bundle_dir, dict(bundle.manifest))
    except Exception as exc:
        raise BackendError(f"{entrypoint}({bundle_dir}) failed: {type(exc).__name__}: {exc}") from exc


def _module_file(module: str) -> str | None:
    """The source file of ``module``, without executing it (``None`` if it cannot be found)."""
    try:
        spec = importlib.util.find_spec(module)
    except Exception:  # a parent package that fails to import: no file to name
        return None
    return spec.origin if spec is not None and spec.has_location else None


def _forget_shadowed_module(top: str, bundle_dir: Path) -> None:
    """Drop a same-named module imported from another bundle, so this bundle's file is the one used."""
    if not ((bundle_dir / f"{top}.py").exists() or (bundle_dir / top).is_dir()):
        return
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None)
    if module is None or (file is not None and Path(file).resolve().is_relative_to(bundle_dir)):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
        del sys.modules[name]

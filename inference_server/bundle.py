"""Load and check a policy bundle: a folder with ``policy.toml`` and the model files.

Every problem is found here, at load, and named by file and field, so a wrong bundle fails before
the server says SERVING rather than on the first request. Example manifest::

    name = "example"
    version = "0.1.0"
    backend = "onnx"              # torch | onnx | tensorrt | torch_tensorrt | python
    model = "model.onnx"          # or a table per backend: [model] torch = "model.pt2" ...
    # entrypoint = "policy:MyPolicy"   (backend = "python": built as MyPolicy(bundle_dir, manifest))
    precision = "fp32"            # fp32 | fp16 | bf16
    device = "cpu"                # cpu | cuda | cuda:N
    chunk_length = 16
    dt_s = 0.1
    action_space = "ee_delta"     # ee_delta | ee_absolute | joint_absolute | joint_delta
    action_names = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
    state_names = ["joint_0", ..., "joint_6", "gripper"]

    [cameras.front]
    height = 224
    width = 224
    encodings = ["RAW_RGB8", "JPEG", "PNG"]   # optional; the first is the preferred one

    [normalization.state]        # optional, per state entry
    mean = [...]
    std = [...]
    [normalization.actions]      # optional, per action entry
    mean = [...]
    std = [...]

Tensor models (torch, onnx, tensorrt) take one float image ``[B, 3, H, W]`` in ``[0, 1]`` per
camera, in manifest order and named as the camera, then ``state`` ``[B, S]`` (normalised), and
return ``actions`` ``[B, chunk_length, action_dim]`` (normalised).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType
from typing import Any, TypeVar, overload

import numpy as np

from inference_server.backends._model_file import check_model_file
from inference_server.config import BACKEND_NAMES, PRECISIONS
from inference_server.errors import BundleError
from inference_server.normalization import Normalizer, Stats
from safety.config_loader import check_value, read_toml
from vla import vocabulary
from vla.vocabulary import ACTION_SPACES, STATE_NAMES

__all__ = [
    "BACKEND_NAMES",
    "ENCODINGS",
    "MANIFEST",
    "Bundle",
    "CameraSpec",
    "load_bundle",
]

MANIFEST = "policy.toml"
ENCODINGS = ("RAW_RGB8", "JPEG", "PNG")
_KNOWN_KEYS = {
    "name", "version", "backend", "model", "entrypoint", "precision", "device", "chunk_length", "dt_s",
    "action_space", "action_names", "action_dim", "state_names", "state_dim", "cameras", "normalization",
    "description", "extra",
}  # fmt: skip


@dataclass(frozen=True)
class CameraSpec:
    """One input camera: its name, image size and the encodings the server accepts for it."""

    name: str
    height: int
    width: int
    encodings: tuple[str, ...] = ENCODINGS


@dataclass(frozen=True, eq=False)
class Bundle:
    """A checked manifest, with ``device``/``precision``/``backend`` overrides already applied.

    ``cpu_threads`` is not in the manifest: the server's setting for the model's CPU kernels
    (0: every CPU but one, :func:`~inference_server.backends.base.cpu_threads`).
    """

    path: Path
    name: str
    version: str
    backend: str
    precision: str
    device: str
    cameras: tuple[CameraSpec, ...]
    state_dim: int
    action_dim: int
    action_space: str
    action_names: tuple[str, ...]
    state_names: tuple[str, ...]
    chunk_length: int
    dt_s: float
    normalizer: Normalizer = field(default_factory=Normalizer)
    model_path: Path | None = None
    entrypoint: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    cpu_threads: int = 0

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def model_field(self) -> str:
        """The manifest key that names the model file: ``model``, or ``model.<backend>`` in a table."""
        return f"model.{self.backend}" if isinstance(self.manifest.get("model"), dict) else "model"

    def error(self, message: str, *, field: str | None = None) -> BundleError:
        """A :class:`BundleError` naming this bundle's manifest, for backends checking the model."""
        return BundleError(self.manifest_path, message, field=field)


def load_bundle(
    path: Path | str,
    *,
    backend: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    cpu_threads: int = 0,
) -> Bundle:
    """Read and check ``path/policy.toml`` (``path`` may also be the manifest itself); ``backend``,
    ``device`` and ``precision`` override the manifest's, ``cpu_threads`` is the server's.

    Raises :class:`BundleError` naming the manifest and the field for anything wrong, including a
    model file that is missing, empty, truncated or not its backend's format.
    """
    path = Path(path)
    if path.name == MANIFEST:
        path = path.parent
    manifest_path = path / MANIFEST
    raw = read_toml(
        manifest_path,
        functools.partial(BundleError, manifest_path),
        missing="no such file (a bundle is a folder with policy.toml)",
    )
    bundle = _Reader(manifest_path, raw).read(backend=backend, device=device, precision=precision)
    bundle = dataclasses.replace(bundle, cpu_threads=cpu_threads)
    check_model_file(bundle)  # a corrupt model fails here, before the server binds a port
    return bundle


_T = TypeVar("_T")


class _Reader:
    def __init__(self, manifest_path: Path, raw: dict[str, Any]) -> None:
        self.path = manifest_path
        self.raw = raw

    def fail(self, field: str, message: str) -> BundleError:
        return BundleError(self.path, f"{field} {message}", field=field)

    @overload
    def get(
        self,
        key: str,
        kind: type[_T],
        default: _T | EllipsisType = ...,
        table: dict[str, Any] | None = None,
        prefix: str = "",
    ) -> _T: ...

    @overload
    def get(
        self,
        key: str,
        kind: tuple[type, ...],
        default: object = ...,
        table: dict[str, Any] | None = None,
        prefix: str = "",
    ) -> object: ...

    def get(
        self,
        key: str,
        kind: type | tuple[type, ...],
        default: object = ...,
        table: dict[str, Any] | None = None,
        prefix: str = "",
    ) -> Any:
        """``key`` of ``table`` (the manifest's top level by default) checked to be of ``kind``
        (the shared loader's rules); ``default`` when absent, or :class:`BundleError` naming
        ``prefix + key`` when there is none (``...``)."""
        src = self.raw if table is None else table
        name = f"{prefix}{key}"
        if key not in src:
            if default is ...:
                raise self.fail(name, "is missing")
            return default
        # the shared loader's type rules and messages: 'chunk_length is '16' (str), expected an integer'
        hint = functools.reduce(operator.or_, kind) if isinstance(kind, tuple) else kind
        return check_value(src[key], hint, name, functools.partial(BundleError, self.path))

    def read(self, *, backend: str | None, device: str | None, precision: str | None) -> Bundle:
        unknown = sorted(set(self.raw) - _KNOWN_KEYS)
        if unknown:
            raise self.fail(unknown[0], f"is not a manifest key (known: {', '.join(sorted(_KNOWN_KEYS))})")
        bundle_dir = self.path.parent
        entrypoint = self.get("entrypoint", str, None)
        manifest_backend = self.get("backend", str)
        if manifest_backend.startswith("python:"):  # the DESIGN's shorthand "python:module:Class"
            manifest_backend, entrypoint = "python", manifest_backend.removeprefix("python:")
        backend = backend or manifest_backend
        if backend not in BACKEND_NAMES:
            raise self.fail("backend", f"is {backend!r}, expected one of {', '.join(BACKEND_NAMES)}")
        if backend == "python" and not entrypoint:
            raise self.fail("entrypoint", 'is missing (backend "python" needs entrypoint = "module:Class")')

        precision = precision or self.get("precision", str, "fp32")
        if precision not in PRECISIONS:
            raise self.fail("precision", f"is {precision!r}, expected one of {', '.join(PRECISIONS)}")
        device = device or self.get("device", str, "cpu")
        if not (device in ("cpu", "cuda") or device.startswith("cuda:")):
            raise self.fail("device", f"is {device!r}, expected cpu, cuda or cuda:N")

        model_path = self._model_path(bundle_dir, backend)
        cameras = self._cameras()
        state_names, state_dim = self._state()
        action_space = self.get("action_space", str)
        if action_space not in ACTION_SPACES:
            raise self.fail(
                "action_space", f"is {action_space!r}, expected one of {', '.join(ACTION_SPACES)}"
            )
        action_names, action_dim = self._actions()
        if not action_names:
            action_names = vocabulary.action_names(action_space, action_dim)
        chunk_length = self.get("chunk_length", int)
        if chunk_length < 1:
            raise self.fail("chunk_length", f"is {chunk_length}, expected >= 1")
        dt_s = self.get("dt_s", float)
        if not (math.isfinite(dt_s) and dt_s > 0):
            raise self.fail("dt_s", f"is {dt_s}, expected a positive number of seconds")
        normalizer = self._normalizer(state_dim, action_dim)
        return Bundle(
            path=bundle_dir,
            name=self.get("name", str, bundle_dir.resolve().name),
            version=str(self.get("version", (str, int, float), "0")),
            backend=backend,
            precision=precision,
            device=device,
            cameras=cameras,
            state_dim=state_dim,
            action_dim=action_dim,
            action_space=action_space,
            action_names=action_names,
            state_names=state_names,
            chunk_length=chunk_length,
            dt_s=dt_s,
            normalizer=normalizer,
            model_path=model_path,
            entrypoint=entrypoint,
            manifest=self.raw,
        )

    def _model_path(self, bundle_dir: Path, backend: str) -> Path | None:
        model = self.raw.get("model")
        name = "model"
        if isinstance(model, dict):
            name = f"model.{backend}"
            model = model.get(backend)
        if model is None:
            if backend == "python":
                return None
            raise self.fail(name, f"is missing (backend {backend!r} needs a model file)")
        if not isinstance(model, str):
            raise self.fail(name, f"is {model!r}, expected a file name")
        model_path = bundle_dir / model
        if not model_path.exists():
            raise self.fail(name, f"is {model!r}, no such file in {bundle_dir}")
        return model_path

    def _cameras(self) -> tuple[CameraSpec, ...]:
        table = self.get("cameras", dict, {})
        cameras = []
        for name, cam in table.items():
            prefix = f"cameras.{name}."
            if not isinstance(cam, dict):
                raise self.fail(f"cameras.{name}", f"is {cam!r}, expected a table with height and width")
            height = self.get("height", int, table=cam, prefix=prefix)
            width = self.get("width", int, table=cam, prefix=prefix)
            for key, value in (("height", height), ("width", width)):
                if not 1 <= value <= 8192:
                    raise self.fail(f"{prefix}{key}", f"is {value}, expected 1..8192")
            encodings = tuple(self.get("encodings", list, list(ENCODINGS), table=cam, prefix=prefix))
            for enc in encodings:
                if enc not in ENCODINGS:
                    raise self.fail(
                        f"{prefix}encodings", f"has {enc!r}, expected some of {', '.join(ENCODINGS)}"
                    )
            if not encodings:
                raise self.fail(f"{prefix}encodings", "is empty")
            unknown = sorted(set(cam) - {"height", "width", "encodings"})
            if unknown:
                raise self.fail(
                    f"{prefix}{unknown[0]}", "is not a camera key (known: height, width, encodings)"
                )
            cameras.append(CameraSpec(name=name, height=height, width=width, encodings=encodings))
        return tuple(cameras)

    def _state(self) -> tuple[tuple[str, ...], int]:
        names = tuple(self.get("state_names", list, []))
        for i, name in enumerate(names):
            if name not in STATE_NAMES:
                raise self.fail(f"state_names[{i}]", f"is {name!r}, expected one of {', '.join(STATE_NAMES)}")
        if len(set(names)) != len(names):
            raise self.fail("state_names", f"has duplicates: {list(names)}")
        dim = self.get("state_dim", int, len(names) if names else ...)
        if names and dim != len(names):
            raise self.fail("state_dim", f"is {dim}, but state_names has {len(names)} entries")
        if dim < 0:
            raise self.fail("state_dim", f"is {dim}, expected >= 0")
        return names, dim

    def _actions(self) -> tuple[tuple[str, ...], int]:
        names = tuple(self.get("action_names", list, []))
        for i, name in enumerate(names):
            if not isinstance(name, str):
                raise self.fail(f"action_names[{i}]", f"is {name!r}, expected a string")
        dim = self.get("action_dim", int, len(names) if names else ...)
        if names and dim != len(names):
            raise self.fail("action_dim", f"is {dim}, but action_names has {len(names)} entries")
        if dim < 1:
            raise self.fail("action_dim", f"is {dim}, expected >= 1")
        return names, dim

    def _normalizer(self, state_dim: int, action_dim: int) -> Normalizer:
        table = self.get("normalization", dict, {})
        stats: dict[str, Stats | None] = {"state": None, "actions": None}
        for key, dim in (("state", state_dim), ("actions", action_dim)):
            if key not in table:
                continue
            prefix = f"normalization.{key}."
            section = self.get(key, dict, table=table, prefix="normalization.")
            arrays = {}
            for part in ("mean", "std"):
                values = self.get(part, list, table=section, prefix=prefix)
                try:
                    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
                        raise TypeError  # true is not 1.0, "1" is not a number
                    arr = np.asarray(values, dtype=np.float32)
                except (TypeError, ValueError):
                    raise self.fail(f"{prefix}{part}", f"is {values!r}, expected a list of numbers") from None
                if arr.shape != (dim,):
                    raise self.fail(f"{prefix}{part}", f"has {arr.size} entries, expected {dim}")
                bad = np.flatnonzero(~np.isfinite(arr) | ((arr <= 0) if part == "std" else False))
                if bad.size:
                    raise self.fail(
                        f"{prefix}{part}[{bad[0]}]",
                        f"is {arr[bad[0]]}, expected a finite{' positive' if part == 'std' else ''} number",
                    )
                arrays[part] = arr
            stats[key] = Stats(mean=arrays["mean"], std=arrays["std"])
        return Normalizer(state=stats["state"], actions=stats["actions"])


def with_overrides(bundle: Bundle, **changes: Any) -> Bundle:
    """A copy of ``bundle`` with some fields replaced (used by tests and ``bench``)."""
    return dataclasses.replace(bundle, **changes)

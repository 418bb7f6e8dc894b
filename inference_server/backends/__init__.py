"""Backends: one file per way of running a model, chosen by name from a table.

The table holds ``"module:Class"`` strings so that torch, onnxruntime and TensorRT are imported
only when their backend is chosen; a missing package answers with the pip line that installs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference_server.backends._model_file import check_model_file
from inference_server.backends.base import Backend, Batch, dummy_batch
from inference_server.errors import BackendUnavailable, ImportFromStringError
from vla.importer import ImportFromStringError as _BadImportString
from vla.importer import MissingPackage, import_from_string

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["BACKENDS", "Backend", "Batch", "create_backend", "dummy_batch"]

BACKENDS: dict[str, str] = {
    "torch": "inference_server.backends.torch_backend:TorchBackend",
    "onnx": "inference_server.backends.onnx_backend:OnnxBackend",
    "tensorrt": "inference_server.backends.tensorrt_backend:TensorRTBackend",
    "torch_tensorrt": "inference_server.backends.torch_tensorrt_backend:TorchTensorRTBackend",
    "python": "inference_server.backends.python_backend:PythonBackend",
}

# The distribution that provides each top-level module a backend imports, and its install line.
_EXTRAS: dict[str, str] = {
    "torch": "pip install 'vla-deploy[server]'",
    "onnxruntime": "pip install 'vla-deploy[server]'",
    "onnx": "pip install 'vla-deploy[server]'",
    "tensorrt": "pip install 'vla-deploy[tensorrt]'",
    "torch_tensorrt": "pip install 'vla-deploy[tensorrt]'",
}


def backend_class(name: str) -> type[Backend]:
    """The class behind backend ``name``, importing its module now.

    Raises :class:`BackendUnavailable` with the pip line when the package the backend needs is
    not installed (:func:`vla.importer.import_from_string` tells a missing package from our own
    module missing), :class:`ImportFromStringError` when the table's entry does not resolve.
    """
    try:
        cls: type[Backend] = import_from_string(BACKENDS[name])
    except MissingPackage as exc:
        hint = _EXTRAS.get(exc.package, f"pip install {exc.package}")
        raise BackendUnavailable(
            f"backend {name!r} needs {exc.package!r}, which is not installed: {hint}"
        ) from exc
    except _BadImportString as exc:
        raise ImportFromStringError(f"backend {name!r}: {exc}") from exc
    return cls


def create_backend(bundle: Bundle) -> Backend:
    """Load ``bundle``'s model with its backend. Call it on the thread that will run the model.

    Raises :class:`BundleError` when the model file is not what the backend reads (checked before
    the backend's library is imported), :class:`BackendUnavailable` when that library is missing.
    """
    check_model_file(bundle)
    return backend_class(bundle.backend)(bundle)

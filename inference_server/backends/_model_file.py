"""Is a bundle's model file what its backend reads? Checked before the library is called.

A corrupt, empty or truncated file, or one of another format, otherwise surfaces as the library's
own error (``BadZipFile``, onnxruntime's ``InvalidProtobuf``, TensorRT's ``None`` engine), after
a page of torch warnings. Here it is a :class:`BundleError` naming the manifest, the field, the
file and what it should be::

    bundle b/policy.toml: model.torch: b/model.pt2 is not a zip archive (corrupt or truncated),
    expected a torch.export program (.pt2, a zip archive written by torch.export.save)

Two steps: :func:`check_model_file` looks at the bytes without importing any backend library
(so it runs, and is tested, without a GPU or TensorRT); :func:`reading_model` wraps the library's
load, turning what it raises into the same kind of message and keeping torch's loader quiet.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import warnings
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from inference_server.errors import BackendUnavailable, BundleError

if TYPE_CHECKING:
    from pathlib import Path

    from inference_server.bundle import Bundle

__all__ = ["check_model_file", "expected_format", "model_error", "reading_model"]

EXPORTED_SUFFIXES = (".pt2", ".ep")
_PT2 = "a torch.export program (.pt2, a zip archive written by torch.export.save)"
_TORCH_TRT_EP = "a Torch-TensorRT program (.ep, a zip archive written by torch_tensorrt.save)"
_TORCHSCRIPT = "a TorchScript module (a zip archive written by torch.jit.save)"
_ONNX = "an ONNX model (a protobuf file written by torch.onnx.export or onnx.save)"
_ENGINE = "a serialized TensorRT engine (written by `inference-server build-engine`)"
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local header, or an empty zip's end record
# Loggers that report a failed load at WARNING with a traceback before raising anyway.
_NOISY_LOADERS = ("torch.export", "torch._export", "torch.jit")
_TORCH_MODULES = r"torch(_tensorrt)?(\.|$)"
_DETAIL_CHARS = 200


def expected_format(bundle: Bundle) -> str:
    """What ``bundle.model_path`` should be for ``bundle.backend``, in words."""
    assert bundle.model_path is not None
    suffix = bundle.model_path.suffix
    if bundle.backend == "torch":
        return _PT2 if suffix in EXPORTED_SUFFIXES else _TORCHSCRIPT
    if bundle.backend == "torch_tensorrt":
        return _TORCH_TRT_EP if suffix == ".ep" else _PT2
    if bundle.backend == "onnx":
        return _ONNX
    if bundle.backend == "tensorrt":
        return _ENGINE
    return "the file the plugin reads"


def check_model_file(bundle: Bundle) -> None:
    """Raise :class:`BundleError` unless ``bundle.model_path`` looks like its backend's format.

    Reads the file's first bytes, and for zip formats the central directory at its end (which a
    truncated file has lost); never the whole file. A ``python`` bundle's file is the plugin's.
    """
    path = bundle.model_path
    if path is None or bundle.backend == "python":
        return
    expected = expected_format(bundle)
    if not path.is_file():
        raise _error(bundle, path, "not a file", expected)
    size = path.stat().st_size
    if size == 0:
        raise _error(bundle, path, "empty (0 bytes)", expected)
    with path.open("rb") as f:
        head = f.read(4)
    is_zip = head in _ZIP_MAGIC
    if expected in (_PT2, _TORCH_TRT_EP, _TORCHSCRIPT):
        if not is_zip:
            raise _error(bundle, path, "not a zip archive (corrupt, or another format)", expected)
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _error(bundle, path, f"a truncated or damaged zip archive ({exc})", expected) from None
    elif is_zip:
        raise _error(bundle, path, "a zip archive (a torch file?)", expected)


@contextlib.contextmanager
def reading_model(bundle: Bundle, reader: str) -> Iterator[None]:
    """Around the library call that reads the model: its failures become :class:`BundleError`.

    ``reader`` names the call (``torch.export.load``). Torch's loaders log a traceback at
    WARNING before raising; those records, from this thread only, are dropped meanwhile, and the
    exception they carry is the cause named. Python warnings raised inside torch's own modules
    (``torch.jit.load is deprecated``) are ignored meanwhile; ``warnings.catch_warnings`` is
    process-wide, but this runs once, at start-up, on the model thread. Out-of-memory errors and
    our own errors pass through unchanged.
    """
    assert bundle.model_path is not None
    quiet = _ThisThreadBelowError()
    loggers = [logging.getLogger(name) for name in _NOISY_LOADERS]
    for log in loggers:
        log.addFilter(quiet)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_TORCH_MODULES)
            yield
    except (BundleError, BackendUnavailable, MemoryError):
        raise
    except Exception as exc:
        if "OutOfMemory" in type(exc).__name__:  # torch.OutOfMemoryError is a RuntimeError
            raise
        # torch.export.load raises "check the warnings above": the cause is in the dropped record
        cause = quiet.cause or exc
        problem = f"not readable by {reader} ({type(cause).__name__}: {_one_line(str(cause))})"
        raise _error(bundle, bundle.model_path, problem, expected_format(bundle)) from exc
    finally:
        for log in loggers:
            log.removeFilter(quiet)


def model_error(bundle: Bundle, problem: str) -> BundleError:
    """A :class:`BundleError` about the model file: ``<field>: <file> is <problem>, expected ...``."""
    assert bundle.model_path is not None
    return _error(bundle, bundle.model_path, problem, expected_format(bundle))


def _error(bundle: Bundle, path: Path, problem: str, expected: str) -> BundleError:
    field = bundle.model_field
    return bundle.error(f"{field}: {path} is {problem}, expected {expected}", field=field)


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


class _ThisThreadBelowError(logging.Filter):
    """Drops this thread's records below ERROR, keeping the last exception they carried."""

    def __init__(self) -> None:
        super().__init__()
        self._thread = threading.get_ident()
        self.cause: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self._thread or record.levelno >= logging.ERROR:
            return True
        if record.exc_info and record.exc_info[1] is not None:
            self.cause = record.exc_info[1]
        return False

"""Run a ``torch.export`` program (``.pt2``) or a TorchScript file, on CPU or CUDA.

Precision: fp32 anywhere; fp16 and bf16 only on CUDA. Asking for half precision on CPU is an
error, not a silent fallback: CPU half kernels are slow and round differently, so a policy
validated in fp16 on a GPU would quietly run as something else. Use ``--precision fp32`` on CPU.
On CUDA the backend runs on its own stream, created and used on the worker thread only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from typing_extensions import override

from inference_server.backends._model_file import EXPORTED_SUFFIXES, reading_model
from inference_server.backends._tensor_io import check_input_dtypes, check_input_shapes
from inference_server.backends.base import Backend, Batch, cpu_threads

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["FLOAT_DTYPE_NAMES", "TORCH_DTYPES", "TorchBackend", "resolve_device"]

logger = logging.getLogger(__name__)

TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# What a program's inputs may be declared as: the backend casts its inputs to the run precision.
FLOAT_DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")


def resolve_device(bundle: Bundle) -> torch.device:
    """The torch device for ``bundle``, refusing CUDA without a GPU and half precision on CPU."""
    device = torch.device(bundle.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise bundle.error(
            f'device is {bundle.device!r}, but torch sees no CUDA device (use device = "cpu")', field="device"
        )
    if device.type == "cpu" and bundle.precision != "fp32":
        raise bundle.error(
            f'precision is {bundle.precision!r}, which needs CUDA; on CPU use precision = "fp32" (--precision fp32)',
            field="precision",
        )
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class TorchBackend(Backend):
    """A torch module on one device and dtype; inputs converted on that device."""

    def __init__(self, bundle: Bundle) -> None:
        assert bundle.model_path is not None
        self._bundle = bundle
        self.device = resolve_device(bundle)
        self.dtype = TORCH_DTYPES[bundle.precision]
        path = bundle.model_path
        if path.suffix in EXPORTED_SUFFIXES:
            with reading_model(bundle, "torch.export.load"):
                program = torch.export.load(str(path))
            check_input_shapes(bundle, _program_input_shapes(program))
            check_input_dtypes(bundle, _program_input_dtypes(program), FLOAT_DTYPE_NAMES)
            with reading_model(bundle, "torch.export"):
                module: Any = program.module()
        else:
            with reading_model(bundle, "torch.jit.load"):
                module = torch.jit.load(str(path), map_location=self.device)  # type: ignore[no-untyped-call]
        self._module = module.to(device=self.device, dtype=self.dtype)
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None  # type: ignore[no-untyped-call]
        # On the worker thread, which runs every batch: OpenMP keeps the team size per thread.
        torch.set_num_threads(threads := cpu_threads(bundle))
        logger.info(
            "Loaded %s on %s in %s, %d CPU threads", path.name, self.device, bundle.precision, threads
        )

    @override
    def predict(self, batch: Batch) -> np.ndarray:
        with torch.inference_mode(), _on_stream(self._stream):
            images = [self._image(batch.images[c.name]) for c in self._bundle.cameras]
            state = torch.from_numpy(batch.state).to(self.device, self.dtype, non_blocking=True)
            actions = self._module(*images, state)
            out: np.ndarray = actions.float().cpu().numpy()  # .cpu() waits for the stream
            return out

    def _image(self, array: np.ndarray) -> torch.Tensor:
        # uint8 crosses to the device (4x fewer bytes than float), then converts there.
        tensor = torch.from_numpy(array).to(self.device, non_blocking=True)
        return tensor.permute(0, 3, 1, 2).to(self.dtype).div_(255.0)

    @override
    def close(self) -> None:
        del self._module
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()


def _program_input_shapes(program: Any) -> list[list[int | str]]:
    """Static dims as ints and symbolic ones as strings, for the user inputs of an ExportedProgram."""
    user_inputs = set(program.graph_signature.user_inputs)
    shapes = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            val = node.meta.get("val")
            shape = getattr(val, "shape", ())
            shapes.append([int(d) if isinstance(d, int) else str(d) for d in shape])
    return shapes


def _program_input_dtypes(program: Any) -> list[str | None]:
    """The element type of each user input of an ExportedProgram (``float32``), ``None`` if unknown."""
    user_inputs = set(program.graph_signature.user_inputs)
    dtypes: list[str | None] = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            dtype = getattr(node.meta.get("val"), "dtype", None)
            dtypes.append(None if dtype is None else str(dtype).removeprefix("torch."))
    return dtypes


class _NoStream:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _on_stream(stream: torch.cuda.Stream | None) -> Any:
    return torch.cuda.stream(stream) if stream is not None else _NoStream()

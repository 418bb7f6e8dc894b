"""Compile an exported program with Torch-TensorRT at load, or load a saved compiled ``.ep``.

A ``.pt2`` is compiled on the worker thread at start-up (which can take a minute; health stays
NOT_SERVING meanwhile) for batch 1 (optimal) up to ``MAX_BATCH``. A ``.ep`` saved by
``torch_tensorrt.save`` is loaded as it is. ``precision`` sets the
engine's dtype: the program is re-exported in it and compiled explicitly typed.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch_tensorrt
from typing_extensions import override

from inference_server.backends._model_file import reading_model
from inference_server.backends._tensor_io import check_input_dtypes, check_input_shapes
from inference_server.backends.base import Backend, Batch
from inference_server.backends.torch_backend import (
    FLOAT_DTYPE_NAMES,
    TORCH_DTYPES,
    _program_input_dtypes,
    _program_input_shapes,
)

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["MAX_BATCH", "TorchTensorRTBackend"]

logger = logging.getLogger(__name__)

MAX_BATCH = 32


def _first_input_dtype(program: Any) -> Any:
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in set(program.graph_signature.user_inputs):
            return getattr(node.meta.get("val"), "dtype", None)
    return None


class TorchTensorRTBackend(Backend):
    def __init__(self, bundle: Bundle) -> None:
        assert bundle.model_path is not None
        if not bundle.device.startswith("cuda") or not torch.cuda.is_available():
            raise bundle.error(
                f"device is {bundle.device!r}; backend 'torch_tensorrt' needs a CUDA device", field="device"
            )
        self._bundle = bundle
        self.device = torch.device(bundle.device if ":" in bundle.device else "cuda:0")
        path = bundle.model_path
        with reading_model(bundle, "torch.export.load"):
            program = torch.export.load(str(path))
        check_input_shapes(bundle, _program_input_shapes(program))
        check_input_dtypes(bundle, _program_input_dtypes(program), FLOAT_DTYPE_NAMES)
        self.dtype = TORCH_DTYPES[bundle.precision]
        if path.suffix == ".ep":
            self._module: Any = program.module()
            self.dtype = torch.float32 if _first_input_dtype(program) is None else _first_input_dtype(program)
        else:
            self._module = self._compile(program, bundle)
        self._stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]

    def _compile(self, program: Any, bundle: Bundle) -> Any:
        # Re-export in the target dtype, so the engine is typed by its weights and inputs: newer
        # Torch-TensorRT compiles "explicitly typed" and deprecates enabled_precisions.
        module = program.module().to(device=self.device, dtype=self.dtype)
        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        example = [
            torch.zeros(2, 3, c.height, c.width, device=self.device, dtype=self.dtype) for c in bundle.cameras
        ]
        example.append(torch.zeros(2, bundle.state_dim, device=self.device, dtype=self.dtype))
        names = [*(c.name for c in bundle.cameras), "state"]
        typed = torch.export.export(module, tuple(example), dynamic_shapes={n: {0: batch} for n in names})
        inputs = [
            torch_tensorrt.Input(
                min_shape=(1, *t.shape[1:]),
                opt_shape=(1, *t.shape[1:]),
                max_shape=(MAX_BATCH, *t.shape[1:]),
                dtype=self.dtype,
            )
            for t in example
        ]
        options: dict[str, Any] = {"device": self.device}
        if "use_explicit_typing" in inspect.signature(torch_tensorrt.dynamo.compile).parameters:
            options["use_explicit_typing"] = True
        else:
            options["enabled_precisions"] = {self.dtype}
        logger.info(
            "Compiling %s with Torch-TensorRT (%s); this takes a while", bundle.model_path, bundle.precision
        )
        return torch_tensorrt.dynamo.compile(typed, inputs=inputs, **options)

    @override
    def predict(self, batch: Batch) -> np.ndarray:
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            images = [
                torch.from_numpy(batch.images[c.name])
                .to(self.device)
                .permute(0, 3, 1, 2)
                .to(self.dtype)
                .div_(255.0)
                for c in self._bundle.cameras
            ]
            state = torch.from_numpy(batch.state).to(self.device, self.dtype)
            out: np.ndarray = self._module(*images, state).float().cpu().numpy()
            return out

    @override
    def close(self) -> None:
        self._stream.synchronize()
        del self._module
        torch.cuda.empty_cache()

"""Run a serialized TensorRT engine through the TensorRT 10 API, and build one from ONNX.

Execution follows the TensorRT 10 tensor API: I/O tensors are looked up by name, each bound with
``set_tensor_address`` to a torch CUDA tensor (torch owns the memory, so no pycuda), shapes set
with ``set_input_shape``, and ``execute_async_v3`` enqueues on the backend's own CUDA stream.

Version pin: ``tensorrt>=10,<11`` (the ``[tensorrt]`` extra). ``build_engine`` makes an fp16
engine with ``BuilderFlag.FP16`` (weakly typed), which TensorRT 11 removed; moving to 11 means
exporting the ONNX file in fp16 and building with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
instead. The engine's I/O dtypes are read from the engine, so either kind of engine runs here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorrt as trt
import torch
from typing_extensions import override

from inference_server.backends._model_file import model_error, reading_model
from inference_server.backends._tensor_io import check_input_dtypes, check_input_shapes, expected_input_names
from inference_server.backends.base import Backend, Batch
from inference_server.errors import BackendError

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["TensorRTBackend", "build_engine"]

logger = logging.getLogger(__name__)

_TORCH_BY_TRT = {
    trt.DataType.FLOAT: torch.float32,
    trt.DataType.HALF: torch.float16,
    trt.DataType.BF16: torch.bfloat16,
    trt.DataType.INT32: torch.int32,
    trt.DataType.INT64: torch.int64,
    trt.DataType.UINT8: torch.uint8,
    trt.DataType.BOOL: torch.bool,
}


_FLOAT_TRT = (trt.DataType.FLOAT, trt.DataType.HALF, trt.DataType.BF16)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("DataType.")


class _TrtLogger(trt.ILogger):  # type: ignore[misc]  # tensorrt ships no stubs
    """Routes TensorRT's messages to Python logging instead of stdout."""

    def __init__(self) -> None:
        trt.ILogger.__init__(self)

    def log(self, severity: Any, msg: str) -> None:
        level = {
            trt.ILogger.INTERNAL_ERROR: logging.ERROR,
            trt.ILogger.ERROR: logging.ERROR,
            trt.ILogger.WARNING: logging.WARNING,
            trt.ILogger.INFO: logging.DEBUG,
        }.get(severity, logging.DEBUG)
        logger.log(level, "TensorRT: %s", msg)


class TensorRTBackend(Backend):
    """One engine, one execution context, one CUDA stream; all on the worker thread."""

    def __init__(self, bundle: Bundle) -> None:
        assert bundle.model_path is not None
        if not bundle.device.startswith("cuda"):
            raise bundle.error(
                f"device is {bundle.device!r}; backend 'tensorrt' runs on cuda only", field="device"
            )
        if not torch.cuda.is_available():
            raise bundle.error("backend 'tensorrt' needs a CUDA device, and torch sees none", field="device")
        self._bundle = bundle
        self.device = torch.device(bundle.device if ":" in bundle.device else "cuda:0")
        torch.cuda.set_device(self.device)
        self._trt_logger = _TrtLogger()
        self._runtime = trt.Runtime(self._trt_logger)
        with reading_model(bundle, f"TensorRT {trt.__version__}"):
            self._engine = self._runtime.deserialize_cuda_engine(bundle.model_path.read_bytes())
        if self._engine is None:  # TensorRT logs why (see the ERROR lines above)
            raise model_error(
                bundle,
                f"not a TensorRT {trt.__version__} engine for this GPU (corrupt, truncated or built elsewhere)",
            )
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if self._inputs != expected_input_names(bundle) or len(self._outputs) != 1:
            raise bundle.error(
                f"the engine's inputs are {self._inputs} and outputs {self._outputs}; the manifest implies inputs "
                f"{expected_input_names(bundle)} and one output",
                field="cameras",
            )
        check_input_shapes(
            bundle, [[d if d >= 0 else None for d in self._engine.get_tensor_shape(n)] for n in self._inputs]
        )
        dtypes = {n: self._engine.get_tensor_dtype(n) for n in names}
        check_input_dtypes(
            bundle, [_dtype_name(dtypes[n]) for n in self._inputs], tuple(_dtype_name(d) for d in _FLOAT_TRT)
        )
        if dtypes[self._outputs[0]] not in _TORCH_BY_TRT:
            raise model_error(bundle, f"an engine whose output is {_dtype_name(dtypes[self._outputs[0]])}")
        self._dtypes = {n: _TORCH_BY_TRT[d] for n, d in dtypes.items()}
        self._max_batch = int(self._engine.get_tensor_profile_shape(self._inputs[0], 0)[2][0])
        self._stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        logger.info(
            "Loaded engine %s (TensorRT %s, max batch %d)",
            bundle.model_path.name,
            trt.__version__,
            self._max_batch,
        )

    @override
    def predict(self, batch: Batch) -> np.ndarray:
        if batch.size > self._max_batch:
            raise BackendError(
                f"batch of {batch.size} exceeds the engine's profile maximum {self._max_batch} (rebuild with --max-batch)"
            )
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            feeds = {}
            for cam in self._bundle.cameras:
                image = torch.from_numpy(batch.images[cam.name]).to(self.device, non_blocking=True)
                feeds[cam.name] = (
                    image.permute(0, 3, 1, 2).to(self._dtypes[cam.name]).div_(255.0).contiguous()
                )
            feeds["state"] = torch.from_numpy(batch.state).to(self.device, self._dtypes["state"]).contiguous()
            for name, tensor in feeds.items():  # the tensors stay referenced until the stream is done
                self._context.set_input_shape(name, tuple(tensor.shape))
                self._context.set_tensor_address(name, tensor.data_ptr())
            out_name = self._outputs[0]
            output = torch.empty(
                tuple(self._context.get_tensor_shape(out_name)),
                dtype=self._dtypes[out_name],
                device=self.device,
            )
            self._context.set_tensor_address(out_name, output.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            return output.float().cpu().numpy()  # .cpu() waits for the stream

    @override
    def close(self) -> None:
        self._stream.synchronize()
        del self._context, self._engine, self._runtime


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    precision: str = "fp16",
    max_batch: int = 8,
    workspace_mib: int = 2048,
) -> None:
    """Build and serialize an engine; dynamic (batch) dims get a profile of 1 (opt) .. ``max_batch``.

    ``opt`` is batch 1 because one robot is the common case and must get the lowest latency.
    """
    trt_logger = _TrtLogger()
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            logger.warning("This GPU has no fast fp16; building fp16 anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = list(tensor.shape)
        low = [1 if d < 0 else d for d in shape]
        high = [max_batch if d < 0 else d for d in shape]
        profile.set_shape(tensor.name, low, low, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the log)")
    Path(engine_path).write_bytes(bytes(serialized))

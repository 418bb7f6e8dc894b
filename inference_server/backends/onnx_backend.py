"""Run an ONNX model with onnxruntime: TensorRT or CUDA execution provider when present, else CPU.

Each input's declared dtype decides what it is fed (an fp16 ONNX file gets fp16 inputs); an
input that is not float, float16 or double is refused at load. Precision
rules match the torch backend: fp16/bf16 need CUDA; on CUDA an fp32 file runs in fp16 only
through the TensorRT provider (``trt_fp16_enable``), the CUDA provider runs the file as it is.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
from typing_extensions import override

from inference_server.backends._model_file import reading_model
from inference_server.backends._tensor_io import check_input_dtypes, check_input_shapes, expected_input_names
from inference_server.backends.base import Backend, Batch, cpu_threads

if TYPE_CHECKING:
    from inference_server.bundle import Bundle

__all__ = ["OnnxBackend", "providers_for"]

logger = logging.getLogger(__name__)

_NUMPY_BY_ONNX = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def providers_for(bundle: Bundle, model_input_dtype: Any, available: list[str] | None = None) -> list[Any]:
    """Execution providers in preference order for ``bundle``'s device and precision."""
    available = ort.get_available_providers() if available is None else available
    if bundle.device == "cpu":
        if bundle.precision != "fp32":
            raise bundle.error(
                f'precision is {bundle.precision!r}, which needs CUDA; on CPU use precision = "fp32" (--precision fp32)',
                field="precision",
            )
        return ["CPUExecutionProvider"]
    device_id = int(bundle.device.partition(":")[2] or 0)
    providers: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        providers.append(
            (
                "TensorrtExecutionProvider",
                {
                    "device_id": device_id,
                    "trt_fp16_enable": bundle.precision == "fp16",
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(bundle.path / ".trt_cache"),
                },
            )
        )
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", {"device_id": device_id}))
    if not providers:
        raise bundle.error(
            f"device is {bundle.device!r}, but onnxruntime has no CUDA or TensorRT provider "
            '(pip install onnxruntime-gpu, or use device = "cpu")',
            field="device",
        )
    wants_half = bundle.precision != "fp32" and model_input_dtype == np.float32
    if wants_half and "TensorrtExecutionProvider" not in available:
        raise bundle.error(
            f"precision is {bundle.precision!r} but the ONNX file is fp32 and only the TensorRT provider can "
            'lower it; export the model in that precision or use precision = "fp32"',
            field="precision",
        )
    return [*providers, "CPUExecutionProvider"]


class OnnxBackend(Backend):
    """An onnxruntime session; images go in as float ``[B, 3, H, W]`` in [0, 1]."""

    def __init__(self, bundle: Bundle) -> None:
        assert bundle.model_path is not None
        self._bundle = bundle
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = cpu_threads(bundle)
        with reading_model(bundle, "onnxruntime"):
            probe = ort.InferenceSession(str(bundle.model_path), options, providers=["CPUExecutionProvider"])
        inputs = probe.get_inputs()
        names = [i.name for i in inputs]
        if names != expected_input_names(bundle):
            raise bundle.error(
                f"the model's inputs are {names}, the manifest implies {expected_input_names(bundle)} "
                "(one per camera, in order, then state)",
                field="cameras",
            )
        check_input_shapes(bundle, [[d if isinstance(d, int) else None for d in i.shape] for i in inputs])
        check_input_dtypes(bundle, [i.type for i in inputs], tuple(_NUMPY_BY_ONNX))
        self._dtypes = {i.name: _NUMPY_BY_ONNX[i.type] for i in inputs}  # each input fed as declared
        providers = providers_for(bundle, self._dtypes[inputs[0].name])
        self._session = (
            probe
            if providers == ["CPUExecutionProvider"]
            else ort.InferenceSession(str(bundle.model_path), options, providers=providers)
        )
        self._output = self._session.get_outputs()[0].name
        logger.info(
            "Loaded %s with %s, %d CPU threads",
            bundle.model_path.name,
            self._session.get_providers(),
            options.intra_op_num_threads,
        )

    @override
    def predict(self, batch: Batch) -> np.ndarray:
        feeds = {}
        for c in self._bundle.cameras:
            dtype = self._dtypes[c.name]
            feeds[c.name] = batch.images[c.name].transpose(0, 3, 1, 2).astype(dtype) * dtype(1 / 255.0)
        feeds["state"] = batch.state.astype(self._dtypes["state"], copy=False)
        return np.asarray(self._session.run([self._output], feeds)[0])

    @override
    def close(self) -> None:
        del self._session

"""Backends: torch (.pt2, TorchScript), onnx and python agree and serve; GPU ones skip here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from inference_server import BackendUnavailable, BundleError, ServerConfig, load_bundle
from inference_server.backends import backend_class, create_backend, dummy_batch
from inference_server.new_bundle import write_example_bundle
from tests.utils import PredictStream, connect, dump_toml, make_request, run_server
from vla.codec import from_tensor
from vla.v1 import policy_pb2 as pb

torch = pytest.importorskip("torch", reason="the torch backend needs torch (the [server] extra)")
pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime (the [server] extra)")


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An example bundle carrying both model.onnx and model.pt2 (same weights)."""
    return write_example_bundle(tmp_path_factory.mktemp("bundles") / "onnx", backend="onnx", seed=0)


@pytest.fixture(scope="module")
def python_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_bundle(tmp_path_factory.mktemp("bundles") / "python", backend="python", seed=0)


def predict(bundle_dir: Path, batch_size: int = 3, **overrides: str) -> np.ndarray:
    bundle = load_bundle(bundle_dir, **overrides)
    backend = create_backend(bundle)
    try:
        return bundle.normalizer.unnormalize_actions(
            np.asarray(backend.predict(dummy_batch(bundle, batch_size)))
        )
    finally:
        backend.close()


def test_torch_pt2_and_onnx_give_the_same_actions(onnx_bundle: Path) -> None:
    exported = predict(onnx_bundle, backend="torch")
    onnx = predict(onnx_bundle, backend="onnx")
    assert exported.shape == onnx.shape == (3, 16, 7)
    np.testing.assert_allclose(exported, onnx, rtol=1e-4, atol=1e-6)
    assert not np.allclose(exported[0], exported[1])  # different inputs, different actions


def test_python_plugin_wrapping_the_same_network_agrees(onnx_bundle: Path, python_bundle: Path) -> None:
    np.testing.assert_allclose(
        predict(python_bundle), predict(onnx_bundle, backend="torch"), rtol=1e-5, atol=1e-7
    )


@pytest.mark.filterwarnings(
    "ignore:`torch.jit.*` is deprecated:DeprecationWarning"
)  # TorchScript still loads in 2.x
def test_torchscript_file_runs_on_the_torch_backend(onnx_bundle: Path, tmp_path: Path) -> None:
    import tomllib

    from inference_server.new_bundle import build_model, example_inputs

    torch.jit.trace(build_model(0), example_inputs()).save(str(tmp_path / "model.ts"))
    manifest = tomllib.loads((onnx_bundle / "policy.toml").read_text())
    manifest.update(backend="torch", model="model.ts")
    (tmp_path / "policy.toml").write_text(dump_toml(manifest))
    np.testing.assert_allclose(predict(tmp_path), predict(onnx_bundle, backend="torch"), rtol=1e-4, atol=1e-6)


def test_example_actions_are_small(onnx_bundle: Path) -> None:
    actions = predict(onnx_bundle, batch_size=4)
    assert np.abs(actions[..., :3]).max() <= 0.002 + 1e-6  # at most 2 mm per step
    assert np.abs(actions[..., 3:6]).max() <= 0.005 + 1e-6  # at most 0.005 rad per step
    assert actions[..., 6].min() >= 0.0 and actions[..., 6].max() <= 1.0  # gripper open fraction


@pytest.mark.parametrize("backend", ["onnx", "torch", "python"])
async def test_example_bundle_serves_jpeg_and_raw(
    backend: str, onnx_bundle: Path, python_bundle: Path
) -> None:
    path = python_bundle if backend == "python" else onnx_bundle
    config = ServerConfig(policy=path, backend=backend, metrics_port=None, warmup_iters=1, max_batch=2)
    async with run_server(config) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        assert [(c.name, c.height, c.width) for c in spec.cameras] == [
            ("front", 224, 224),
            ("wrist", 224, 224),
        ]
        assert (spec.state_dim, spec.chunk_length, spec.action_dim, spec.action_space) == (
            8,
            16,
            7,
            "ee_delta",
        )
        assert list(spec.state_names) == [*(f"joint_{i}" for i in range(7)), "gripper"]
        stream, answers = PredictStream(stub), []
        for request in (make_request(spec, 1, encoding=pb.Image.JPEG), make_request(spec, 2)):
            stream.send(request)
            answers.append(await stream.recv(timeout=30))
        await stream.close()
    assert [(a.request_id, a.status) for a in answers] == [
        (1, pb.PredictResponse.OK),
        (2, pb.PredictResponse.OK),
    ]
    assert all(from_tensor(a.actions).shape == (16, 7) for a in answers)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_on_cpu_is_an_error_naming_the_field(
    onnx_bundle: Path, backend: str, precision: str
) -> None:
    with pytest.raises(
        BundleError, match=rf"precision is '{precision}', which needs CUDA; on CPU use precision = \"fp32\""
    ):
        create_backend(load_bundle(onnx_bundle, backend=backend, precision=precision))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_an_error_naming_the_device(onnx_bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"device is 'cuda', but torch sees no CUDA device"):
        create_backend(load_bundle(onnx_bundle, backend="torch", device="cuda"))


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_manifest_that_disagrees_with_the_model_names_the_field(
    onnx_bundle: Path, tmp_path: Path, backend: str
) -> None:
    import tomllib

    manifest = tomllib.loads((onnx_bundle / "policy.toml").read_text())
    manifest["cameras"]["wrist"]["height"] = 240
    manifest["model"] = {k: str(onnx_bundle / v) for k, v in manifest["model"].items()}
    (tmp_path / "policy.toml").write_text(dump_toml(manifest))
    with pytest.raises(
        BundleError, match=r"policy\.toml: cameras\.wrist\.height is 240, the model expects 224"
    ):
        create_backend(load_bundle(tmp_path, backend=backend))


async def test_model_output_that_disagrees_with_the_manifest_fails_before_serving(
    onnx_bundle: Path, tmp_path: Path
) -> None:
    import tomllib

    manifest = tomllib.loads((onnx_bundle / "policy.toml").read_text())
    manifest["chunk_length"] = 8
    manifest["model"] = {k: str(onnx_bundle / v) for k, v in manifest["model"].items()}
    (tmp_path / "policy.toml").write_text(dump_toml(manifest))
    with pytest.raises(BundleError, match=r"chunk_length is 8, the model returns 16"):
        async with run_server(ServerConfig(policy=tmp_path, metrics_port=None, warmup_iters=1)):
            pass


def test_a_missing_extra_answers_with_its_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "inference_server.backends.onnx_backend", raising=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(
        BackendUnavailable,
        match=r"backend 'onnx' needs 'onnxruntime', which is not installed: pip install 'vla-deploy\[server\]'",
    ):
        backend_class("onnx")


@pytest.mark.parametrize("name", ["tensorrt", "torch_tensorrt"])
def test_gpu_backends_name_their_extra_when_missing(name: str) -> None:
    pytest.importorskip("torch")
    try:
        __import__(name)
    except ImportError:
        with pytest.raises(BackendUnavailable, match=r"pip install 'vla-deploy\[tensorrt\]'"):
            backend_class(name)
    else:
        assert backend_class(name).__name__.endswith("Backend")


# -- GPU group: runs on a machine with an NVIDIA GPU (pytest -m gpu) -------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_torch_half_precision_on_cuda_is_close_to_fp32(onnx_bundle: Path, precision: str) -> None:
    reference = predict(onnx_bundle, backend="torch")
    half = predict(onnx_bundle, backend="torch", device="cuda", precision=precision)
    np.testing.assert_allclose(half, reference, atol=0.05 * np.asarray([0.002] * 3 + [0.005] * 3 + [0.5]))


@pytest.mark.gpu
def test_onnx_on_cuda_matches_cpu(onnx_bundle: Path) -> None:
    np.testing.assert_allclose(
        predict(onnx_bundle, backend="onnx", device="cuda"), predict(onnx_bundle), rtol=1e-3, atol=1e-5
    )


@pytest.mark.gpu
def test_tensorrt_engine_built_from_onnx_matches_onnx(onnx_bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="needs the [tensorrt] extra")
    from inference_server.backends.tensorrt_backend import build_engine

    build_engine(onnx_bundle / "model.onnx", tmp_path / "model.engine", precision="fp16", max_batch=4)
    text = (
        (onnx_bundle / "policy.toml")
        .read_text()
        .replace('onnx = "model.onnx"', f'tensorrt = "{tmp_path / "model.engine"}"')
    )
    (tmp_path / "policy.toml").write_text(
        text.replace('torch = "model.pt2"', f'torch = "{onnx_bundle / "model.pt2"}"')
    )
    engine = predict(tmp_path, backend="tensorrt", device="cuda", precision="fp16")
    np.testing.assert_allclose(
        engine, predict(onnx_bundle), atol=0.05 * np.asarray([0.002] * 3 + [0.005] * 3 + [0.5])
    )


@pytest.mark.gpu
def test_torch_tensorrt_compiles_the_exported_program(onnx_bundle: Path) -> None:
    pytest.importorskip("torch_tensorrt", reason="needs the [tensorrt] extra")
    compiled = predict(onnx_bundle, backend="torch_tensorrt", device="cuda", precision="fp16")
    np.testing.assert_allclose(
        compiled, predict(onnx_bundle), atol=0.05 * np.asarray([0.002] * 3 + [0.005] * 3 + [0.5])
    )

"""A model file that is not what its backend reads is a BundleError naming the bundle, the field,
the file and what it should be: random bytes, empty, truncated, or another format, for every
backend; and so is a model input the server will not feed (an integer state, say)."""

from __future__ import annotations

import importlib.util
import logging
import random
import re
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from inference_server import BackendError, BundleError, ServerConfig, cli, load_bundle
from inference_server.backends import create_backend, dummy_batch
from inference_server.new_bundle import write_example_bundle
from inference_server.server import warm_up
from tests.utils import dump_toml, run_server, write_python_bundle

torch = pytest.importorskip("torch", reason="the torch backend needs torch (the [server] extra)")
pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime (the [server] extra)")

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
PT2 = "expected a torch.export program (.pt2, a zip archive written by torch.export.save)"
TORCHSCRIPT = "expected a TorchScript module (a zip archive written by torch.jit.save)"
ONNX = "expected an ONNX model (a protobuf file written by torch.onnx.export or onnx.save)"
ENGINE = "expected a serialized TensorRT engine (written by `inference-server build-engine`)"
NOT_ZIP = "is not a zip archive (corrupt, or another format)"
EMPTY = "is empty (0 bytes)"
TRUNCATED_ZIP = "is a truncated or damaged zip archive (File is not a zip file)"
# as regular expressions, for the parametrized test
NOT_ZIP_RE, EMPTY_RE, TRUNCATED_ZIP_RE = (re.escape(p) for p in (NOT_ZIP, EMPTY, TRUNCATED_ZIP))
NOT_ONNX = r"is not readable by onnxruntime \((InvalidProtobuf|InvalidArgument|Fail): .+\)"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An example bundle with model.onnx and model.pt2 (same weights): the good files to spoil."""
    return write_example_bundle(tmp_path_factory.mktemp("bundles") / "good", backend="onnx", seed=0)


def bundle_with(example: Path, tmp_path: Path, backend: str, file: str, content: bytes) -> Path:
    """The example's manifest, serving ``file`` (holding ``content``) with ``backend``."""
    manifest = tomllib.loads((example / "policy.toml").read_text())
    manifest["backend"] = backend
    manifest["model"] = {backend: file}
    (tmp_path / "policy.toml").write_text(dump_toml(manifest))
    (tmp_path / file).write_bytes(content)
    return tmp_path


def spoiled(good: bytes, how: str) -> bytes:
    if how == "random":
        return random.Random(0).randbytes(5000)
    if how == "empty":
        return b""
    return good[: len(good) // 2]  # truncated


# (backend, file, the good file it spoils, how, what the message says it is, what it should be)
CASES = [
    ("torch", "model.pt2", "model.pt2", "random", NOT_ZIP_RE, PT2),  # the issue's example
    ("torch", "model.pt2", "model.pt2", "empty", EMPTY_RE, PT2),
    ("torch", "model.pt2", "model.pt2", "truncated", TRUNCATED_ZIP_RE, PT2),
    ("torch", "model.pt", "model.pt2", "random", NOT_ZIP_RE, TORCHSCRIPT),
    ("torch", "model.pt", "model.pt2", "empty", EMPTY_RE, TORCHSCRIPT),
    ("torch", "model.pt", "model.pt2", "truncated", TRUNCATED_ZIP_RE, TORCHSCRIPT),
    ("onnx", "model.onnx", "model.onnx", "random", NOT_ONNX, ONNX),
    ("onnx", "model.onnx", "model.onnx", "empty", EMPTY_RE, ONNX),
    ("onnx", "model.onnx", "model.onnx", "truncated", NOT_ONNX, ONNX),  # the issue's example
    # checked before torch_tensorrt / tensorrt are imported: these run without a GPU
    ("torch_tensorrt", "model.pt2", "model.pt2", "random", NOT_ZIP_RE, PT2),
    ("torch_tensorrt", "model.pt2", "model.pt2", "empty", EMPTY_RE, PT2),
    ("torch_tensorrt", "model.pt2", "model.pt2", "truncated", TRUNCATED_ZIP_RE, PT2),
    ("tensorrt", "model.engine", "model.onnx", "empty", EMPTY_RE, ENGINE),
]


@pytest.mark.parametrize(("backend", "file", "source", "how", "problem", "expected"), CASES)
def test_a_spoiled_model_file_names_the_bundle_the_file_and_its_format(
    example: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    backend: str,
    file: str,
    source: str,
    how: str,
    problem: str,
    expected: str,
) -> None:
    path = bundle_with(example, tmp_path, backend, file, spoiled((example / source).read_bytes(), how))
    with pytest.raises(BundleError) as exc_info:
        create_backend(load_bundle(path))
    message = str(exc_info.value)
    pattern = rf"bundle {re.escape(str(path / 'policy.toml'))}: model\.{backend}: {re.escape(str(path / file))} {problem}, {re.escape(expected)}"
    assert re.fullmatch(pattern, message), message
    assert exc_info.value.field == f"model.{backend}"
    assert "\n" not in message
    assert capfd.readouterr().err == ""  # no torch warnings on the way


def test_a_zip_engine_is_named_as_another_format(example: Path, tmp_path: Path) -> None:
    path = bundle_with(example, tmp_path, "tensorrt", "model.engine", (example / "model.pt2").read_bytes())
    with pytest.raises(BundleError, match=re.escape(f"is a zip archive (a torch file?), {ENGINE}")):
        create_backend(load_bundle(path))


@pytest.mark.skipif(not HAS_TENSORRT, reason="TensorRT reads the engine: needs tensorrt and a CUDA GPU")
@pytest.mark.parametrize("how", ["random", "truncated"])
def test_a_spoiled_engine_is_named_by_tensorrt(example: Path, tmp_path: Path, how: str) -> None:
    path = bundle_with(example, tmp_path, "tensorrt", "model.engine", spoiled(b"x" * 10000, how))
    manifest = tomllib.loads((path / "policy.toml").read_text())
    manifest["device"] = "cuda"
    (path / "policy.toml").write_text(dump_toml(manifest))
    with pytest.raises(
        BundleError,
        match=r"model\.tensorrt: .*model\.engine is not (a TensorRT .* engine|readable by TensorRT)",
    ):
        create_backend(load_bundle(path))


def test_the_issue_example_is_one_line_from_the_cli(
    example: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = bundle_with(example, tmp_path, "torch", "model.pt2", spoiled(b"", "random"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--policy", str(path), "--port", "0", "--no-metrics", "--log-level", "error"])
    assert exit_info.value.code == 1
    err = capfd.readouterr().err
    assert (
        err
        == f"BundleError: bundle {path / 'policy.toml'}: model.torch: {path / 'model.pt2'} {NOT_ZIP}, {PT2}\n"
    )


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(("file", "reader", "cause", "expected"), [
    # torch.export.load logs the cause with a traceback at WARNING, then raises "see the warnings above"
    ("model.pt2", "torch.export.load", "RuntimeError: [enforce fail at inline_container.cc:180] . file in archive is not in a subdirectory: notes.txt", PT2),
    ("model.pt", "torch.jit.load", "RuntimeError: ", TORCHSCRIPT),
])  # fmt: skip
def test_a_zip_that_torch_cannot_read_is_named_quietly(
    example: Path, tmp_path: Path, file: str, reader: str, cause: str, expected: str
) -> None:
    path = bundle_with(example, tmp_path, "torch", file, b"")
    with zipfile.ZipFile(path / file, "w") as archive:
        archive.writestr("notes.txt", "not a model")
    records = Records()
    torch_export = logging.getLogger("torch.export")
    torch_export.addHandler(records)
    try:
        with pytest.raises(BundleError) as exc_info:
            create_backend(load_bundle(path))
    finally:
        torch_export.removeHandler(records)
    message = str(exc_info.value)
    assert message.startswith(
        f"bundle {path / 'policy.toml'}: model.torch: {path / file} is not readable by {reader} ({cause}"
    ), message
    assert message.endswith(f"), {expected}") and "\n" not in message
    assert records.records == []  # the warning with its traceback was dropped


# -- the python plugin's module ------------------------------------------------------------------


@pytest.mark.parametrize(("content", "problem"), [
    (random.Random(0).randbytes(3000), r"is not valid Python: SyntaxError: source code string cannot contain null bytes"),
    (b"class MyPolicy:\n    def predict(self, batch", r"is not valid Python \(line 2\): SyntaxError: .+"),
])  # fmt: skip
def test_a_spoiled_plugin_module_names_the_file(tmp_path: Path, content: bytes, problem: str) -> None:
    path = write_python_bundle(tmp_path / "plugin", "spoiled_plugin:MyPolicy")
    (path / "spoiled_plugin.py").write_bytes(content)
    with pytest.raises(BundleError) as exc_info:
        create_backend(load_bundle(path))
    message = str(exc_info.value)
    assert re.fullmatch(
        rf"bundle .+policy\.toml: entrypoint is 'spoiled_plugin:MyPolicy': {re.escape(str(path.resolve() / 'spoiled_plugin.py'))} "
        rf"{problem}; expected the module defining the policy class",
        message,
    ), message
    assert exc_info.value.field == "entrypoint"


def test_an_empty_plugin_module_names_the_missing_class(tmp_path: Path) -> None:
    path = write_python_bundle(tmp_path / "plugin", "empty_plugin:MyPolicy")
    (path / "empty_plugin.py").write_bytes(b"")
    with pytest.raises(BundleError, match=r"entrypoint is 'empty_plugin:MyPolicy': .*\"MyPolicy\" not found"):
        create_backend(load_bundle(path))


def test_a_plugin_module_that_raises_on_import_names_the_file(tmp_path: Path) -> None:
    path = write_python_bundle(tmp_path / "plugin", "raising_plugin:MyPolicy")
    (path / "raising_plugin.py").write_text("raise RuntimeError('no weights here')\n")
    with pytest.raises(BackendError) as exc_info:
        create_backend(load_bundle(path))
    assert str(exc_info.value) == (
        f"entrypoint 'raising_plugin:MyPolicy': importing {path.resolve() / 'raising_plugin.py'} failed: "
        "RuntimeError: no weights here"
    )


# -- inputs the server will not feed -------------------------------------------------------------


def tiny_onnx(path: Path, state_type: int, batch: int | str = "N") -> None:
    """front [N, 3, 8, 8] float and state [N, 8] of ``state_type`` -> actions [N, 16, 7] float:
    ``actions = reshape((float(state) + mean(front)) @ W)`` with ``W[i, j] = (i + 1) / (j + 1)``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.fromfunction(lambda i, j: (i + 1) / (j + 1), (8, 16 * 7)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["state"], ["state_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["front"], ["front_mean"], axes=[1, 2, 3], keepdims=1),
            helper.make_node("Reshape", ["front_mean", "col"], ["front_col"]),
            helper.make_node("Add", ["state_f", "front_col"], ["x"]),
            helper.make_node("MatMul", ["x", "w"], ["flat"]),
            helper.make_node("Reshape", ["flat", "chunk"], ["actions"]),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("front", TensorProto.FLOAT, [batch, 3, 8, 8]),
            helper.make_tensor_value_info("state", state_type, [batch, 8]),
        ],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [batch, 16, 7])],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([-1, 1], np.int64), "col"),
            numpy_helper.from_array(np.array([-1, 16, 7], np.int64), "chunk"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def tiny_bundle(tmp_path: Path, backend: str, file: str) -> Path:
    return write_python_bundle(
        tmp_path / "tiny", "unused:Unused", cameras={"front": (8, 8)},
        extra_manifest={"backend": backend, "model": file},
    )  # fmt: skip


def test_an_onnx_integer_state_is_refused_at_load(tmp_path: Path) -> None:
    from onnx import TensorProto

    path = tiny_bundle(tmp_path, "onnx", "tiny.onnx")
    tiny_onnx(path / "tiny.onnx", TensorProto.INT64)
    with pytest.raises(BundleError) as exc_info:
        create_backend(load_bundle(path))
    assert str(exc_info.value).endswith(
        "policy.toml: model: the model's input 'state' is tensor(int64); this backend feeds state [B, S] "
        "as tensor(float), tensor(float16), tensor(double)"
    )
    assert exc_info.value.field == "model"


def test_each_onnx_input_is_fed_its_declared_dtype(tmp_path: Path) -> None:
    from onnx import TensorProto

    path = tiny_bundle(tmp_path, "onnx", "tiny.onnx")
    tiny_onnx(path / "tiny.onnx", TensorProto.DOUBLE)  # images float, state double
    bundle = load_bundle(path)
    backend = create_backend(bundle)
    batch = dummy_batch(bundle, 2)
    batch.state[:] = np.arange(16, dtype=np.float32).reshape(2, 8)
    try:
        actions = backend.predict(batch)
    finally:
        backend.close()
    w = np.fromfunction(lambda i, j: (i + 1) / (j + 1), (8, 16 * 7))
    front_mean = (batch.images["front"].astype(np.float64) / 255.0).mean(axis=(1, 2, 3))[:, None]
    expected = ((batch.state.astype(np.float64) + front_mean) @ w).reshape(2, 16, 7)
    np.testing.assert_allclose(actions, expected, rtol=1e-5)


def test_a_torch_program_with_an_integer_state_is_refused_at_load(tmp_path: Path) -> None:
    class Tiny(torch.nn.Module):
        def forward(self, front: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            return (front.mean() + state.float()).repeat(1, 14).reshape(-1, 16, 7)

    path = tiny_bundle(tmp_path, "torch", "tiny.pt2")
    program = torch.export.export(Tiny(), (torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, dtype=torch.int64)))
    torch.export.save(program, str(path / "tiny.pt2"))
    with pytest.raises(BundleError) as exc_info:
        create_backend(load_bundle(path))
    assert str(exc_info.value).endswith(
        "policy.toml: model: the model's input 'state' is int64; this backend feeds state [B, S] "
        "as float32, float16, bfloat16, float64"
    )


# -- a model that fails on input shaped as the manifest says: found in warm-up, before SERVING ------


def test_a_fixed_batch_model_fails_warm_up_naming_max_batch(tmp_path: Path) -> None:
    from onnx import TensorProto

    path = tiny_bundle(tmp_path, "onnx", "tiny.onnx")
    tiny_onnx(path / "tiny.onnx", TensorProto.FLOAT, batch=1)
    bundle = load_bundle(path)
    backend = create_backend(bundle)
    try:
        warm_up(backend, bundle, iters=1, max_batch=1)  # batch 1 is what it takes
        with pytest.raises(BundleError) as exc_info:
            warm_up(backend, bundle, iters=1, max_batch=4)
    finally:
        backend.close()
    message = str(exc_info.value)
    assert message.startswith(
        f"bundle {path / 'policy.toml'}: model: the model fails on a warm-up batch of 4 (a fixed batch size? "
        "max_batch is 4) shaped as the manifest says (front [4, 3, 8, 8], state [4, 8]): InvalidArgument: "
    ), message
    assert "\n" not in message and exc_info.value.field == "model"


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_a_torchscript_model_that_wants_another_state_fails_warm_up(tmp_path: Path) -> None:
    class WantsNine(torch.nn.Module):
        def forward(self, front: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            return (state @ torch.ones(9, 16 * 7)).reshape(-1, 16, 7) + front.mean()

    path = tiny_bundle(tmp_path, "torch", "tiny.ts")
    torch.jit.trace(WantsNine(), (torch.zeros(2, 3, 8, 8), torch.zeros(2, 9))).save(str(path / "tiny.ts"))
    bundle = load_bundle(path)
    backend = create_backend(bundle)  # TorchScript declares no input shapes: nothing to check at load
    try:
        with pytest.raises(BundleError) as exc_info:
            warm_up(backend, bundle, iters=1, max_batch=1)
    finally:
        backend.close()
    message = str(exc_info.value)
    assert message.startswith(
        f"bundle {path / 'policy.toml'}: model: the model fails on a warm-up batch of 1 shaped as the "
        "manifest says (front [1, 3, 8, 8], state [1, 8]): RuntimeError: "
    ), message
    assert "\n" not in message


async def test_a_plugin_that_fails_warm_up_names_the_entrypoint(tmp_path: Path) -> None:
    path = write_python_bundle(tmp_path / "plugin", "failing_plugin:Failing")
    (path / "failing_plugin.py").write_text(
        "class Failing:\n"
        "    def __init__(self, bundle_dir, manifest): pass\n"
        "    def predict(self, batch): raise KeyError('wrist')\n"
    )
    with pytest.raises(BackendError) as exc_info:
        async with run_server(ServerConfig(policy=path, metrics_port=None, warmup_iters=1)):
            pass
    assert str(exc_info.value) == (
        "entrypoint 'failing_plugin:Failing': predict fails on a warm-up batch of 1: KeyError: 'wrist'"
    )

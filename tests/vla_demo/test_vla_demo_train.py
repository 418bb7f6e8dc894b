"""The bundle command works end to end: a short training run exports a bundle that the server's
own loader and backend serve, with the torch (.pt2) and ONNX runtimes agreeing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_server.backends import Batch, create_backend
from inference_server.bundle import load_bundle
from vla_demo.cli import main
from vla_demo.data import Dataset, generate
from vla_demo.task import CHUNK_LENGTH, IMAGE_SIZE, STATE_NAMES

pytest.importorskip("torch", reason="training needs the server extra (torch)")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.npz"
    dataset = generate(2, seed=7, progress=False, workers=1)
    assert len(dataset) > 30
    assert dataset.images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert dataset.actions.shape[1:] == (CHUNK_LENGTH, 7)
    assert dataset.state.shape[1:] == (len(STATE_NAMES),)
    assert set(np.unique(dataset.actions[..., 6])) == {0.0, 1.0}  # the expert opens and closes
    dataset.save(path)
    return path


def test_train_command_writes_a_bundle_the_server_loads(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    rc = main(["train", "--data", str(data), "--out", str(out), "--max-steps", "3", "--epochs", "1"])
    assert rc == 0
    assert {p.name for p in out.iterdir()} >= {"policy.toml", "model.pt2", "model.onnx", "demo_policy.py"}
    bundle = load_bundle(out)
    assert bundle.action_space == "ee_delta" and bundle.chunk_length == CHUNK_LENGTH
    assert [c.name for c in bundle.cameras] == ["front"] and bundle.cameras[0].height == IMAGE_SIZE
    assert bundle.normalizer.state is not None and bundle.normalizer.actions is not None
    rng = np.random.default_rng(0)
    batch = Batch(
        images={"front": rng.integers(0, 256, (2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)},
        state=np.zeros((2, len(STATE_NAMES)), np.float32),
        instruction=["put the red cube on the pad", "place the blue block on the yellow pad"],
        prev_actions=[None, None],
        inference_delay_steps=[None, None],
    )
    outputs = {}
    for runtime in ("torch", "onnx"):
        bundle.manifest["extra"]["runtime"] = runtime
        backend = create_backend(bundle)
        outputs[runtime] = np.asarray(backend.predict(batch))
        backend.close()
        assert outputs[runtime].shape == (2, CHUNK_LENGTH, 7) and np.all(np.isfinite(outputs[runtime]))
        # The gripper leaves the bundle as an absolute opening in [0, 1].
        opening = bundle.normalizer.unnormalize_actions(outputs[runtime])[..., 6]
        assert np.all((opening >= 0) & (opening <= 1))
    np.testing.assert_allclose(outputs["torch"], outputs["onnx"], atol=1e-4)
    # The instruction reaches the model: different words, different chunks.
    assert not np.allclose(outputs["torch"][0], outputs["torch"][1])


def test_dataset_round_trips_through_npz(data: Path) -> None:
    loaded = Dataset.load(data)
    assert loaded.images.dtype == np.uint8 and loaded.tokens.dtype == np.int64
    assert len(np.unique(loaded.episode)) == 2

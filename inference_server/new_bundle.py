"""``inference-server new-bundle``: write a small, randomly initialised example bundle.

Two 224x224 cameras (``front``, ``wrist``), an 8-value joint state, chunks of 16 end-effector
delta actions of 7 values. The network ends in ``tanh`` and the manifest's action statistics scale
it to at most 2 mm and 0.005 rad per step, so an agent may execute it on the simulated arm. Tests,
smoke checks and the demo serve it; the same seed gives the same weights for every backend.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from inference_server.errors import ServerError

__all__ = ["CAMERAS", "write_example_bundle"]

logger = logging.getLogger(__name__)

CAMERAS = ("front", "wrist")
IMAGE_SIZE = 224
STATE_NAMES = (*(f"joint_{i}" for i in range(7)), "gripper")
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")
CHUNK_LENGTH = 16
DT_S = 0.1
# Panda "ready" pose and an open gripper: normalising around it keeps the state near zero.
STATE_MEAN = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 1.0)
STATE_STD = (1.0,) * 8
ACTION_MEAN = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5)
ACTION_STD = (0.002, 0.002, 0.002, 0.005, 0.005, 0.005, 0.5)  # 2 mm, 0.005 rad; gripper 0..1
MAX_BATCH = 64

_PYTHON_POLICY = '''\
"""Example Python policy: wraps the exported network, as a LeRobot or openpi policy would be wrapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


class ExamplePolicy:
    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        self.cameras = list(manifest["cameras"])
        self.model = torch.export.load(bundle_dir / "model.pt2").module()

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        with torch.inference_mode():
            images = [
                torch.from_numpy(batch["images"][name]).permute(0, 3, 1, 2).float().div(255.0)
                for name in self.cameras
            ]
            actions = self.model(*images, torch.from_numpy(batch["state"]))
        return actions.numpy()

    def close(self) -> None:
        """Called once at shutdown, after the last batch (the server never calls a reset())."""
        del self.model
'''


def build_model(seed: int) -> Any:
    """The example network: a shared conv encoder per camera, state concatenated, MLP head."""
    import torch
    from torch import nn

    class ExampleNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Conv2d(3, 16, kernel_size=8, stride=4),
                nn.ReLU(),
                nn.Conv2d(16, 32, kernel_size=4, stride=2),
                nn.ReLU(),
                nn.Conv2d(32, 32, kernel_size=3, stride=2),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
            )
            self.head = nn.Sequential(
                nn.Linear(32 * len(CAMERAS) + len(STATE_NAMES), 256),
                nn.ReLU(),
                nn.Linear(256, CHUNK_LENGTH * len(ACTION_NAMES)),
            )

        def forward(self, front: torch.Tensor, wrist: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            features = torch.cat([self.encoder(front), self.encoder(wrist), state], dim=-1)
            return torch.tanh(self.head(features)).reshape(-1, CHUNK_LENGTH, len(ACTION_NAMES))

    torch.manual_seed(seed)
    return ExampleNet().eval()


def example_inputs(batch: int = 2) -> tuple[Any, ...]:
    import torch

    gen = torch.Generator().manual_seed(1)
    images = tuple(torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=gen) for _ in CAMERAS)
    return (*images, torch.randn(batch, len(STATE_NAMES), generator=gen))


def export_pt2(model: Any, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    dynamic = {name: {0: batch} for name in (*CAMERAS, "state")}
    program = torch.export.export(model, example_inputs(), dynamic_shapes=dynamic)
    torch.export.save(program, path)


def export_onnx(model: Any, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with warnings.catch_warnings():  # the exporter's own deprecation notices, nothing about our model
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        _torch_onnx_export(model, path, batch)


def _torch_onnx_export(model: Any, path: Path, batch: Any) -> None:
    import torch

    torch.onnx.export(
        model,
        example_inputs(),
        path,
        input_names=[*CAMERAS, "state"],
        output_names=["actions"],
        dynamic_shapes={name: {0: batch} for name in (*CAMERAS, "state")},
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def manifest_text(name: str, backend: str, model: str | dict[str, str] | None) -> str:
    def arr(values: tuple[Any, ...]) -> str:
        return "[" + ", ".join(repr(v) if not isinstance(v, str) else f'"{v}"' for v in values) + "]"

    lines = [
        "# Example bundle written by `inference-server new-bundle`: random weights, small actions.",
        f'name = "{name}"',
        'version = "0.1.0"',
        f'backend = "{backend}"',
    ]
    if isinstance(model, str):
        lines.append(f'model = "{model}"')
    if backend == "python":
        lines.append('entrypoint = "example_policy:ExamplePolicy"')
    lines += [
        'precision = "fp32"',
        'device = "cpu"',
        f"chunk_length = {CHUNK_LENGTH}",
        f"dt_s = {DT_S}",
        'action_space = "ee_delta"',
        f"action_names = {arr(ACTION_NAMES)}",
        f"state_names = {arr(STATE_NAMES)}",
    ]
    if isinstance(model, dict):
        lines += ["", "[model]", *(f'{k} = "{v}"' for k, v in model.items())]
    for cam in CAMERAS:
        lines += [
            "",
            f"[cameras.{cam}]",
            f"height = {IMAGE_SIZE}",
            f"width = {IMAGE_SIZE}",
            'encodings = ["RAW_RGB8", "JPEG", "PNG"]',
        ]
    lines += ["", "[normalization.state]", f"mean = {arr(STATE_MEAN)}", f"std = {arr(STATE_STD)}"]
    lines += ["", "[normalization.actions]", f"mean = {arr(ACTION_MEAN)}", f"std = {arr(ACTION_STD)}", ""]
    return "\n".join(lines)


def write_example_bundle(
    directory: Path, *, backend: str = "torch", seed: int = 0, name: str = "example"
) -> Path:
    """Write the bundle; ``onnx`` bundles carry the ``.pt2`` too (``--backend torch`` then works)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ServerError(f"new-bundle: {directory} exists and is not a folder")
    if directory.exists() and any(directory.iterdir()):
        raise ServerError(f"new-bundle: {directory} exists and is not empty")
    if backend not in ("torch", "onnx", "python"):
        raise ServerError(f"new-bundle: backend {backend!r} is not one of torch, onnx, python")
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ServerError("new-bundle needs torch: pip install 'vla-deploy[server]'") from None
    directory.mkdir(parents=True, exist_ok=True)
    model = build_model(seed)
    logger.info("Exporting the example network to %s", directory / "model.pt2")
    export_pt2(model, directory / "model.pt2")
    entry: str | dict[str, str] | None = "model.pt2"
    if backend == "onnx":
        logger.info("Exporting the example network to %s", directory / "model.onnx")
        export_onnx(model, directory / "model.onnx")
        entry = {"onnx": "model.onnx", "torch": "model.pt2"}
    elif backend == "python":
        (directory / "example_policy.py").write_text(_PYTHON_POLICY)
        entry = None
    (directory / "policy.toml").write_text(manifest_text(name, backend, entry))
    return directory

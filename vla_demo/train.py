"""Behaviour cloning of the tiny VLA on the expert's demonstrations, then export as a bundle.

``python -m vla_demo train --out policies/demo`` runs all of it: generate (or reuse) the data,
train on the CPU with a progress bar, write ``policy.toml``, ``model.pt2`` (torch.export),
``model.onnx`` and the plugin ``demo_policy.py``. Seeds are fixed; torch on a different CPU may
still give slightly different weights.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vla_demo.data import Dataset
from vla_demo.model import TinyVLA
from vla_demo.task import (
    ACTION_DIM,
    ACTION_NAMES,
    CAMERA,
    CHUNK_LENGTH,
    DT_S,
    MAX_TOKENS,
    STATE_NAMES,
    VOCAB,
    front_pixels,
)

__all__ = ["REPRODUCE", "TrainConfig", "export_bundle", "train"]

#: The command that made the committed bundle (policies/demo).
#: Base behaviour cloning (800 expert episodes, 4 epochs, bundle A), then DAgger rounds: A ->
#: B (120 episodes, seed 1, expert share 0.3, 2 epochs on base data), B -> C (120, seed 2, 0.1,
#: base + round-1 data).
REPRODUCE = (
    "python -m vla_demo train --out build/vla_demo/A --episodes 800 --epochs 4; "
    "python -m vla_demo.dagger build/vla_demo/A build/vla_demo/B 120 2 1 0.3 build/vla_demo/data-800-s0.npz; "
    "python -m vla_demo.dagger build/vla_demo/B policies/demo 120 2 2 0.1 build/vla_demo/data-800-s0.npz "
    "build/vla_demo/dagger-A-120.npz"
)

logger = logging.getLogger(__name__)

_STD_FLOOR = 0.01  # entries that never vary (rotation, gripper) keep a small, harmless scale
# Loss weight per action entry: positions matter; the constant rotation just stays put. The
# gripper (absolute, 0 or 1 in the labels) has its own loss: binary cross-entropy on its logit.
_LOSS_WEIGHTS = torch.tensor([1.0, 1.0, 1.0, 0.05, 0.05, 0.05, 0.0])
_GRIPPER_LOSS_WEIGHT = 0.2
#: The token ids of red, green and blue: the model's fixed colour pathway looks for these.
COLOUR_IDS = (VOCAB.index("red"), VOCAB.index("green"), VOCAB.index("blue"))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    val_fraction: float = 0.05
    max_steps: int | None = None  # cut training short (tests)
    target_loss_weight: float = 1.0  # auxiliary: where the named cube is
    augment: bool = False  # photometric jitter; off: the renderer is what the policy will see


@dataclass(frozen=True)
class Stats:
    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    @classmethod
    def of(cls, data: Dataset) -> Stats:
        flat = data.actions.reshape(-1, ACTION_DIM)
        return cls(
            state_mean=data.state.mean(0).astype(np.float32),
            state_std=np.maximum(data.state.std(0), _STD_FLOOR).astype(np.float32),
            # The gripper leaves the model as an opening in [0, 1] (a sigmoid): identity scaling.
            action_mean=np.append(flat[:, :-1].mean(0), 0.0).astype(np.float32),
            action_std=np.append(np.maximum(flat[:, :-1].std(0), _STD_FLOOR), 1.0).astype(np.float32),
        )

    def target_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std for the auxiliary targets (cube x, y, z, pad x, y): the state's, so the
        model's estimates and the tool position are in the same units."""
        mean = np.concatenate([self.state_mean[:3], self.state_mean[:2]])
        std = np.concatenate([self.state_std[:3], self.state_std[:2]])
        return mean, std


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mild photometric jitter: brightness, contrast, pixel noise. No shifts: the fixed camera's
    geometry is what tells the policy where things are."""
    b = images.shape[0]
    brightness = 1 + 0.15 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 2
    contrast = 1 + 0.15 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 2
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    out = (images - mean) * contrast + mean * brightness
    out = out + 0.01 * torch.randn(images.shape, generator=generator)
    return out.clamp(0, 1)


def train(
    data: Dataset,
    config: TrainConfig = TrainConfig(),
    *,
    progress: bool = True,
    init: tuple[TinyVLA, Stats] | None = None,
) -> tuple[TinyVLA, Stats, dict[str, Any]]:
    """Train on ``data``; returns the model (eval mode), the normalisation stats and a report.
    ``init``: continue from this model with its statistics (fine-tuning on aggregated data)."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    generator = torch.Generator().manual_seed(config.seed)
    image_size = data.images.shape[1]
    if init is not None:
        model, stats = init
    else:
        stats = Stats.of(data)
        model = TinyVLA(vocab_size=len(VOCAB), image_size=image_size, state_dim=len(STATE_NAMES),
                        chunk_length=CHUNK_LENGTH, action_dim=ACTION_DIM, colour_ids=COLOUR_IDS)  # fmt: skip
    episodes = np.unique(data.episode)
    rng = np.random.default_rng(config.seed)
    val_episodes = rng.choice(episodes, max(1, int(len(episodes) * config.val_fraction)), replace=False)
    is_val = np.isin(data.episode, val_episodes)
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if len(train_idx) == 0:
        train_idx = val_idx
    images = torch.from_numpy(data.images)  # uint8, converted per batch to keep memory small
    state = torch.from_numpy((data.state - stats.state_mean) / stats.state_std)
    tokens = torch.from_numpy(data.tokens)
    actions = torch.from_numpy((data.actions - stats.action_mean) / stats.action_std)
    target_mean, target_std = stats.target_scale()
    targets = torch.from_numpy(((data.target - target_mean) / target_std).astype(np.float32))
    gripper_labels = torch.from_numpy(data.actions[..., -1].astype(np.float32))
    # Where the named cube is in the image: the colour pathway's soft-argmax is pulled there
    # directly, so it locks onto a 5-pixel cube long before the action loss alone would find it.
    pixels = torch.from_numpy(front_pixels(data.target[:, :3], image_size).astype(np.float32))

    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # Constant rate, then a tenth of it for the last fifth (a one-cycle warm start from a tiny rate
    # left the image pathway stuck on the average move).
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0 if i < 0.8 * total else 0.1)
    weights = _LOSS_WEIGHTS.view(1, 1, -1)

    def batch_loss(idx: np.ndarray, augment: bool) -> torch.Tensor:
        index = torch.from_numpy(idx)
        x = images[index].permute(0, 3, 1, 2).float() / 255.0
        if augment and config.augment:
            x = _augment(x, generator)
        pred, target, seen = model.forward_with_target(x, state[index], tokens[index])
        action_loss = nn.functional.smooth_l1_loss(pred, actions[index], reduction="none", beta=0.1)
        gripper_loss = nn.functional.binary_cross_entropy_with_logits(pred[..., -1], gripper_labels[index])
        target_loss = nn.functional.smooth_l1_loss(target, targets[index], beta=0.05)
        pixel_loss = nn.functional.smooth_l1_loss(seen, pixels[index], beta=0.02)
        return (
            (action_loss * weights).mean()
            + _GRIPPER_LOSS_WEIGHT * gripper_loss
            + config.target_loss_weight * (target_loss + pixel_loss)
        )

    start = time.perf_counter()
    step = 0
    bar = tqdm(total=total, desc="training", unit="step", disable=not progress)
    model.train()
    while step < total:
        order = rng.permutation(train_idx)
        for i in range(0, len(order), config.batch_size):
            if step >= total:
                break
            loss = batch_loss(order[i : i + config.batch_size], augment=True)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        val = [batch_loss(val_idx[i : i + 256], augment=False).item() for i in range(0, len(val_idx), 256)]
        # Position error of the whole chunk in metres, the number that decides success.
        idx = torch.from_numpy(val_idx[:1024])
        pred = model(images[idx].permute(0, 3, 1, 2).float() / 255.0, state[idx], tokens[idx]).numpy()
        err = (pred - actions[idx].numpy())[..., :3] * stats.action_std[:3]
        _, target, _ = model.forward_with_target(
            images[idx].permute(0, 3, 1, 2).float() / 255.0, state[idx], tokens[idx]
        )
        target_err = (target.numpy() - targets[idx].numpy())[:, :3] * target_std[:3]
        gripper_err = np.abs(pred[..., -1] - gripper_labels[idx].numpy()) > 0.5
    report = {
        "samples": len(data),
        "episodes": len(episodes),
        "steps": step,
        "train_seconds": round(time.perf_counter() - start, 1),
        "final_train_loss": round(float(loss.item()), 5),
        "val_loss": round(float(np.mean(val)), 5) if val else None,
        "val_chunk_position_error_m_mean": round(float(np.linalg.norm(err, axis=-1).mean()), 4),
        "val_first_step_position_error_m_mean": round(float(np.linalg.norm(err[:, 1], axis=-1).mean()), 4),
        "val_target_position_error_m_mean": round(float(np.linalg.norm(target_err, axis=-1).mean()), 4),
        "val_gripper_error_rate": round(float(gripper_err.mean()), 4),
        "config": asdict(config),
    }
    return model, stats, report


class _Exportable(nn.Module):
    """The model with the server's input names, for torch.export and ONNX."""

    def __init__(self, model: TinyVLA) -> None:
        super().__init__()
        self.model = model

    def forward(self, front: torch.Tensor, state: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        return self.model(front, state, instruction)


def export_bundle(
    model: TinyVLA,
    stats: Stats,
    out: Path,
    *,
    report: dict[str, Any] | None = None,
    name: str = "demo-cubes",
    version: str = "1",
) -> Path:
    """Write the bundle folder ``out``: manifest, ``model.pt2``, ``model.onnx``, plugin."""
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    wrapped = _Exportable(model).eval()
    size = model.coords.shape[-1]
    example = (
        torch.rand(2, 3, size, size),
        torch.zeros(2, len(STATE_NAMES)),
        torch.zeros(2, MAX_TOKENS, dtype=torch.int64),
    )
    batch = torch.export.Dim("batch", min=1, max=64)
    dynamic = {"front": {0: batch}, "state": {0: batch}, "instruction": {0: batch}}
    with torch.no_grad():
        program = torch.export.export(wrapped, example, dynamic_shapes=dynamic)
    torch.export.save(program, str(out / "model.pt2"))
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter's own deprecation notices (torch internals), nothing about this model.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        onnx_program = torch.onnx.export(
            wrapped,
            example,
            input_names=["front", "state", "instruction"],
            output_names=["actions"],
            dynamic_shapes=dynamic,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    assert onnx_program is not None
    onnx_program.save(str(out / "model.onnx"))
    shutil.copyfile(Path(__file__).with_name("bundle_policy.py"), out / "demo_policy.py")
    (out / "policy.toml").write_text(_manifest(stats, size, name, version, report))
    return out


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):.6g}" for v in values) + "]"


def _manifest(stats: Stats, size: int, name: str, version: str, report: dict[str, Any] | None) -> str:
    lines = [
        "# The demo policy: pick up the named cube and put it on the pad (vla_demo, MuJoCo).",
        f"# Reproduce: {REPRODUCE}",
        "# backend python: the plugin tokenises the instruction, which the tensor backends do not feed,",
        "# then runs model.pt2 (torch.export) or model.onnx (onnxruntime) as [extra] runtime says.",
        f'name = "{name}"',
        f'version = "{version}"',
        'backend = "python"',
        'entrypoint = "demo_policy:DemoPolicy"',
        'precision = "fp32"',
        'device = "cpu"',
        f"chunk_length = {CHUNK_LENGTH}",
        f"dt_s = {DT_S}",
        'action_space = "ee_delta"',
        "action_names = [" + ", ".join(f'"{n}"' for n in ACTION_NAMES) + "]",
        "state_names = [" + ", ".join(f'"{n}"' for n in STATE_NAMES) + "]",
        'description = "Tiny VLA (CNN + word embeddings + state MLP, chunk head), behaviour-cloned from a scripted pick-and-place expert in the MuJoCo Panda sim (static and conveyor)."',
        "",
        f"[cameras.{CAMERA}]",
        f"height = {size}",
        f"width = {size}",
        'encodings = ["RAW_RGB8", "JPEG", "PNG"]',
        "",
        "[normalization.state]",
        f"mean = {_fmt(stats.state_mean)}",
        f"std = {_fmt(stats.state_std)}",
        "",
        "[normalization.actions]",
        f"mean = {_fmt(stats.action_mean)}",
        f"std = {_fmt(stats.action_std)}",
        "",
        "[extra]",
        'runtime = "torch"  # or "onnx"',
        "threads = 1  # CPU threads for the model",
        f"max_tokens = {MAX_TOKENS}",
        "vocab = [" + ", ".join(f'"{w}"' for w in VOCAB) + "]",
        "",
        "[extra.models]",
        'torch = "model.pt2"',
        'onnx = "model.onnx"',
    ]
    if report:
        lines += ["", "[extra.training]"]
        for key in ("samples", "episodes", "steps", "train_seconds", "val_chunk_position_error_m_mean",
                    "val_target_position_error_m_mean", "val_gripper_error_rate"):  # fmt: skip
            if report.get(key) is not None:
                lines.append(f"{key} = {report[key]}")
    return "\n".join(lines) + "\n"


def load_trained(bundle: Path) -> tuple[TinyVLA, Stats]:
    """The model and statistics of a bundle written by :func:`export_bundle`, to train further
    (the weights from ``model.pt2``, the statistics from ``policy.toml``). Raises ``KeyError``
    when the weights do not fit a :class:`TinyVLA` of this task."""
    import tomllib

    manifest = tomllib.loads((bundle / "policy.toml").read_text())
    norm = manifest["normalization"]
    stats = Stats(
        state_mean=np.array(norm["state"]["mean"], dtype=np.float32),
        state_std=np.array(norm["state"]["std"], dtype=np.float32),
        action_mean=np.array(norm["actions"]["mean"], dtype=np.float32),
        action_std=np.array(norm["actions"]["std"], dtype=np.float32),
    )
    size = int(manifest["cameras"][CAMERA]["height"])
    model = TinyVLA(vocab_size=len(VOCAB), image_size=size, state_dim=len(STATE_NAMES),
                    chunk_length=CHUNK_LENGTH, action_dim=ACTION_DIM, colour_ids=COLOUR_IDS)  # fmt: skip
    program = torch.export.load(str(bundle / "model.pt2"))
    weights = {k.removeprefix("model."): v for k, v in program.state_dict.items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if not k.endswith(("xs", "ys", "coords"))]:
        raise KeyError(f"{bundle}/model.pt2 does not fit TinyVLA: missing {missing}, unexpected {unexpected}")
    return model, stats

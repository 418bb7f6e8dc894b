"""The demo bundle's plugin: ``entrypoint = "demo_policy:DemoPolicy"``. Copied into the bundle as
``demo_policy.py`` so the bundle is self-contained (numpy plus torch or onnxruntime; no vla_demo).

Why a plugin around the exported model: the server's tensor backends feed images and state, but
a VLA also needs its instruction. This class turns the instruction into token ids with the
vocabulary in the manifest (``[extra]``), then runs the exported program (``model.pt2``, torch)
or the ONNX graph (``model.onnx``, onnxruntime), as ``[extra] runtime`` says. The server still
normalises the state and un-normalises the actions from the manifest's statistics.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DemoPolicy"]


class DemoPolicy:
    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        extra = manifest.get("extra", {})
        self.vocab = {w: i for i, w in enumerate(extra["vocab"])}
        self.max_tokens = int(extra["max_tokens"])
        self.cameras = list(manifest["cameras"])
        self.runtime = str(extra.get("runtime", "torch"))
        models = manifest.get("extra", {}).get("models", {})
        if self.runtime == "torch":
            import torch

            self._torch = torch
            # A tiny model: one thread is fastest, and several spin against each other (and
            # against the robot's processes) on a small shared CPU.
            torch.set_num_threads(int(extra.get("threads", 1)))
            self._module = torch.export.load(
                str(Path(bundle_dir) / models.get("torch", "model.pt2"))
            ).module()
        elif self.runtime == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = int(extra.get("threads", 1))
            self._session = ort.InferenceSession(
                str(Path(bundle_dir) / models.get("onnx", "model.onnx")),
                options,
                providers=["CPUExecutionProvider"],
            )
        else:
            raise ValueError(f"extra.runtime is {self.runtime!r}, expected 'torch' or 'onnx'")

    def tokenize(self, text: str) -> np.ndarray:
        ids = [self.vocab.get(w, 1) for w in re.findall(r"[a-z]+", text.lower())][: self.max_tokens]
        return np.array(ids + [0] * (self.max_tokens - len(ids)), dtype=np.int64)

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        images = [
            np.ascontiguousarray(np.asarray(batch["images"][name]).transpose(0, 3, 1, 2), dtype=np.float32)
            / 255.0
            for name in self.cameras
        ]
        state = np.asarray(batch["state"], dtype=np.float32)
        tokens = np.stack([self.tokenize(t) for t in batch["instruction"]])
        if self.runtime == "torch":
            torch = self._torch
            with torch.inference_mode():
                out = self._module(
                    *(torch.from_numpy(i) for i in images), torch.from_numpy(state), torch.from_numpy(tokens)
                )
            return out.numpy().astype(np.float32)
        feeds = {name: image for name, image in zip(self.cameras, images, strict=True)}
        feeds.update(state=state, instruction=tokens)
        return np.asarray(self._session.run(["actions"], feeds)[0], dtype=np.float32)

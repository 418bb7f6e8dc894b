"""Python test policies, served through the python backend by entrypoint strings.

A policy that must block or misbehave reads what to do from its manifest's ``[extra]`` table, so
each test owns its own gate: ``GATES[name]`` is a ``threading.Event`` the test releases.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

GATES: dict[str, threading.Event] = {}
CALLS: dict[str, list[dict[str, Any]]] = {}


class EchoPolicy:
    """Actions ``[b, h, a] = state[b, 0] + 0.001 * h``: each answer shows which request it came from."""

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        self.chunk_length = int(manifest["chunk_length"])
        self.action_dim = int(manifest["action_dim"])
        self.name = manifest.get("extra", {}).get("name", "")

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        if self.name:
            CALLS.setdefault(self.name, []).append(batch)
        state = batch["state"]
        steps = 0.001 * np.arange(self.chunk_length, dtype=np.float32)
        out = state[:, :1, None] + steps[None, :, None]
        return np.broadcast_to(out, (state.shape[0], self.chunk_length, self.action_dim)).astype(np.float32)


class GatedPolicy(EchoPolicy):
    """Like :class:`EchoPolicy`, but each ``predict`` waits for ``GATES[extra.gate]``.

    ``extra.entered`` names an event set when a predict call starts, so a test knows the request
    is being computed (not waiting) before it sends the next one.
    """

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        super().__init__(bundle_dir, manifest)
        extra = manifest.get("extra", {})
        self.gate = GATES[extra["gate"]]
        self.entered = GATES.get(extra.get("entered", ""), threading.Event())
        if extra.get("gate_init"):
            self.gate.wait(30)

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        self.entered.set()
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        return super().predict(batch)


class RoguePolicy(EchoPolicy):
    """Misbehaves on request: instruction ``nan`` gives a NaN, ``shape`` a chunk too short, ``raise`` fails."""

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        out = np.array(super().predict(batch))
        for i, text in enumerate(batch["instruction"]):
            if text == "nan":
                out[i, 3, 2] = np.nan
            elif text == "raise":
                raise RuntimeError("rogue policy failed on purpose")
        if "shape" in batch["instruction"]:
            return out[:, :-1]
        return out


class ClosingPolicy(EchoPolicy):
    """Records ``reset`` and ``close`` calls in ``LIFECYCLE[extra.name]``."""

    def reset(self) -> None:
        LIFECYCLE.setdefault(self.name, []).append("reset")

    def close(self) -> None:
        LIFECYCLE.setdefault(self.name, []).append("close")


LIFECYCLE: dict[str, list[str]] = {}

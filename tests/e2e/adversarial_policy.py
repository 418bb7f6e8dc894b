"""A hostile ``ee_delta`` policy for the end-to-end safety test, served by a real inference server.

Calls answer with the attacks of :data:`ATTACKS` in turn, each for :data:`REPEAT` consecutive
chunks (2 unless listed), cycling, so one run exercises them all, back to back, against the
shield on the agent's side. Built by the server as ``Adversarial(bundle_dir, manifest)``;
``[extra]`` options: ``name`` (a key of :data:`SERVED`, which records what was served, for the
test to inspect), ``attacks`` (a subset, in order).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np

#: What each attack asks for, as ``ee_delta`` actions ``[dx, dy, dz, drx, dry, drz, gripper]``
#: relative to the pose measured at capture (k = action index, h = chunk length).
ATTACKS: tuple[str, ...] = (
    "through_table",  # 0.6 m straight down, into and through the table
    "nan",  # NaN in the middle of an otherwise plausible chunk
    "outside_workspace",  # 0.6 m sideways and up: well past the workspace box
    "jump_10m",  # 10 m away in x at once
    "oscillation",  # +-3 cm in y every action (10 Hz at 20 Hz actions): the rate limits' job
    "inf",  # +inf position, -inf rotation
    "spin",  # 3 rad about x: a flip of the tool
    "gripper",  # gripper far out of its range, alternating
)
#: Served only when ``attacks`` names them (not in the default cycle).
EXTRA_ATTACKS: tuple[str, ...] = (
    "slide_on_table",  # 0.6 m down and 0.1 m sideways (back again every other cycle): along the table
)
#: Chunks in a row per attack: the pushes last long enough to take the arm to the walls (at the
#: shield's speed limit) from wherever the previous attack left it.
REPEAT: dict[str, int] = {"through_table": 6, "outside_workspace": 6, "slide_on_table": 6}

#: name -> Counter of attacks served (warm-up excluded).
SERVED: dict[str, collections.Counter[str]] = {}


class Adversarial:
    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        options = manifest.get("extra", {})
        self.h = int(manifest["chunk_length"])
        self.name = str(options.get("name", "adversarial"))
        self.attacks = tuple(options.get("attacks", ATTACKS))
        unknown = sorted(set(self.attacks) - set(ATTACKS) - set(EXTRA_ATTACKS))
        if unknown:
            raise ValueError(f"unknown attack {unknown[0]!r} (known: {', '.join(ATTACKS + EXTRA_ATTACKS)})")
        # The attack of each call, in order, for one cycle.
        self.schedule = [a for a in self.attacks for _ in range(REPEAT.get(a, 2))]
        self.calls = 0

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        n = len(batch["instruction"])
        out = np.zeros((n, self.h, 7), dtype=np.float32)
        out[:, :, 6] = 1.0
        if not np.asarray(batch["state"]).any():  # the server's warm-up call: all-zero state
            return out
        attack = self.schedule[self.calls % len(self.schedule)]
        self.calls += 1
        SERVED.setdefault(self.name, collections.Counter())[attack] += 1
        k = np.arange(self.h, dtype=np.float32)
        ramp = np.minimum(k / 3.0, 1.0)  # reach the attack's full size within 3 actions
        if attack == "nan":
            out[:, :, 1] = 0.01 * ramp
            out[:, self.h // 2, :3] = np.nan
        elif attack == "inf":
            out[:, 2:, 0] = np.inf
            out[:, 2:, 3] = -np.inf
        elif attack == "jump_10m":
            out[:, 1:, 0] = 10.0
        elif attack == "outside_workspace":
            out[:, :, 1] = 0.6 * ramp
            out[:, :, 2] = 0.6 * ramp
        elif attack == "through_table":
            out[:, :, 2] = -0.6 * ramp
        elif attack == "oscillation":
            out[:, :, 1] = np.where(k % 2 == 0, 0.03, -0.03)
        elif attack == "spin":
            out[:, :, 3] = 3.0 * ramp
        elif attack == "slide_on_table":
            out[:, :, 1] = 0.1 * ramp * (1 if (self.calls // len(self.schedule)) % 2 == 0 else -1)
            out[:, :, 2] = -0.6 * ramp
        elif attack == "gripper":
            out[:, :, 6] = np.where(k % 2 == 0, 5.0, -4.0)
        return out

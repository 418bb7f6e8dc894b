"""A policy that turns the tool about its own (vertical) axis past half a turn, for kind 5.

Served by a real inference server as ``Class(bundle_dir, manifest)``; options come from the
manifest's ``[extra]`` table. It speaks ``ee_absolute`` with base-frame rotation vectors as
``quat_to_rotvec`` gives them (angle in [0, pi]): for a tool pointing down every one of them
sits on the pi wrap, so the agent has to keep them continuous on its side.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from safety.rotations import quat_conjugate, quat_multiply, quat_to_rotvec, rotvec_to_quat

#: name -> (time.monotonic(), ee_r* state) of every observation received, in order.
STATES: dict[str, list[tuple[float, np.ndarray]]] = {}


class TurnTool:
    """ee_absolute: hold the start position and turn the tool about the base z axis at
    ``rate`` rad/s, up to ``turn`` rad from the orientation of the first observation.

    Closed loop, like a learned policy: action k is the measured turn so far plus
    ``rate * k * dt`` (the policy cannot know when the state was captured, so a clock of its
    own would run ahead of the agent's by the round trip). The turn so far is accumulated from
    one observation to the next (it passes pi, where a single reading cannot tell which way).
    """

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        options = manifest.get("extra", {})
        self.h = int(manifest["chunk_length"])
        self.dt = float(manifest["dt_s"])
        self.rate = float(options.get("rate", 0.7))
        self.turn = float(options.get("turn", 3.3))
        self.name = str(options.get("name", "turn"))
        self.names = list(manifest["state_names"])
        self.start: tuple[np.ndarray, np.ndarray] | None = None  # position, quaternion
        self.last: np.ndarray | None = None
        self.turned = 0.0

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        states = np.asarray(batch["state"], dtype=np.float64)  # [B, state_dim]
        out = np.zeros((states.shape[0], self.h, 7), dtype=np.float32)
        out[:, :, 6] = 1.0
        pos = states[0, [self.names.index(n) for n in ("ee_x", "ee_y", "ee_z")]]
        rot = states[0, [self.names.index(n) for n in ("ee_rx", "ee_ry", "ee_rz")]]
        if not pos.any():  # the server's warm-up call: all-zero state
            return out
        STATES.setdefault(self.name, []).append((time.monotonic(), rot.copy()))
        quat = rotvec_to_quat(rot)
        if self.start is None or self.last is None:
            self.start = (pos.copy(), quat)
        else:
            step = quat_multiply(quat, quat_conjugate(self.last))
            self.turned += float(quat_to_rotvec(step)[2])  # about base z; small between calls
        self.last = quat
        start_pos, start_quat = self.start
        for k in range(self.h):
            angle = min(self.turned + self.rate * (k + 1) * self.dt, self.turn)
            target = quat_multiply(rotvec_to_quat(np.array([0.0, 0.0, angle])), start_quat)
            out[:, k, :3] = start_pos
            out[:, k, 3:6] = quat_to_rotvec(target)
        return out

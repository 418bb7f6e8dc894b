"""Python policies for the agent's end-to-end tests, served by a real inference server.

Built by the server as ``Class(bundle_dir, manifest)``; options come from the manifest's
``[extra]`` table. ``GATES`` lets a test hold a policy inside ``predict`` on a
``threading.Event`` it owns (the server and the test share the process).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

#: name -> Event; a ``Gated`` policy waits on GATES[name] (if present) before answering.
GATES: dict[str, threading.Event] = {}
#: name -> list of (time.monotonic(), batch state) for each call, for the tests to inspect.
CALLS: dict[str, list[tuple[float, np.ndarray]]] = {}


class Circle:
    """ee_delta: follow a slow horizontal circle around the start pose, closed-loop on ee_x/ee_y/ee_z.

    Action k is the displacement from the measured pose to the circle's point at ``now + k*dt``.
    """

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        options = manifest.get("extra", {})
        self.h = int(manifest["chunk_length"])
        self.dt = float(manifest["dt_s"])
        self.radius = float(options.get("radius", 0.03))
        self.period = float(options.get("period_s", 4.0))
        self.delay_s = float(options.get("delay_s", 0.0))
        self.name = str(options.get("name", "circle"))
        self.center: np.ndarray | None = None
        self.names = list(manifest["state_names"])

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        now = time.monotonic()
        CALLS.setdefault(self.name, []).append((now, np.array(batch["state"])))
        gate = GATES.get(self.name)
        if gate is not None:
            gate.wait(30.0)
        if self.delay_s:
            time.sleep(self.delay_s)
        state = np.asarray(batch["state"], dtype=np.float64)
        ix = [self.names.index(n) for n in ("ee_x", "ee_y", "ee_z")]
        pos = state[:, ix]
        if not pos.any():  # the server's warm-up call: all-zero state
            return np.zeros((state.shape[0], self.h, 7), dtype=np.float32)
        if self.center is None:
            self.center = pos[0] - np.array([self.radius, 0.0, 0.0])
        out = np.zeros((state.shape[0], self.h, 7), dtype=np.float32)
        for k in range(self.h):
            phase = 2 * np.pi * (now + k * self.dt) / self.period
            point = self.center + self.radius * np.array([np.cos(phase), np.sin(phase), 0.0])
            out[:, k, :3] = point - pos
        out[:, :, 6] = 1.0
        return out


class Still:
    """ee_delta: stay where you are (zeros), gripper open. Optionally slow (``delay_s``)."""

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        options = manifest.get("extra", {})
        self.h = int(manifest["chunk_length"])
        self.delay_s = float(options.get("delay_s", 0.0))
        self.name = str(options.get("name", "still"))

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        CALLS.setdefault(self.name, []).append((time.monotonic(), np.array(batch["state"])))
        gate = GATES.get(self.name)
        if gate is not None:
            gate.wait(30.0)
        if self.delay_s:
            time.sleep(self.delay_s)
        out = np.zeros((len(batch["instruction"]), self.h, 7), dtype=np.float32)
        out[:, :, 6] = 1.0
        return out


#: name -> SimWorld; an ``Oracle`` policy reads the true scene from it (tests own the world).
WORLDS: dict[str, Any] = {}


class Oracle:
    """ee_delta: the demo's scripted expert, reading the true scene of ``WORLDS[name]``: a policy
    that solves the task, to test the evaluation without training anything."""

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        options = manifest.get("extra", {})
        self.h = int(manifest["chunk_length"])
        self.dt = float(manifest["dt_s"])
        self.name = str(options.get("name", "oracle"))

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        from vla_demo.expert import expert_chunk

        batch_size = len(batch["instruction"])
        world = WORLDS.get(self.name)
        if world is None or getattr(world, "tip", None) is None:  # warm-up, before the test binds it
            out = np.zeros((batch_size, self.h, 7), dtype=np.float32)
            out[:, :, 6] = 1.0
            return out
        chunk = expert_chunk(world.tip, world.target_cube.top, self.h, self.dt)
        return np.repeat(chunk[None], batch_size, axis=0)


class Drift:
    """ee_delta: move at a constant ``speed`` (m/s) along +y from wherever the arm is."""

    def __init__(self, bundle_dir: Path, manifest: dict[str, Any]) -> None:
        options = manifest.get("extra", {})
        self.h = int(manifest["chunk_length"])
        self.dt = float(manifest["dt_s"])
        self.speed = float(options.get("speed", 0.03))

    def predict(self, batch: dict[str, Any]) -> np.ndarray:
        out = np.zeros((len(batch["instruction"]), self.h, 7), dtype=np.float32)
        out[:, :, 1] = self.speed * self.dt * np.arange(self.h)
        out[:, :, 6] = 1.0
        return out

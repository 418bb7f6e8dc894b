"""The scripted expert: reads the true cube positions and moves the tip over the named cube,
then down onto it.

Its plan follows a smooth velocity field of the tip position alone: towards the cube at up to
0.3 m/s horizontally, at hover height (8 cm above the top, clear of the other cubes) while far,
sinking to 1 cm above the top as it comes within a few centimetres. Being a smooth function of
the state, it gives consistent labels from any state the noisy data collection visits (that is
what teaches recoveries), and a learned copy has no switching point to hesitate at. The chunk
label k steps ahead is where the field carries the tip in k*dt.
"""

from __future__ import annotations

import math

import numpy as np

from robot_agent.sim.world import SimWorld
from vla_demo.task import ACTION_DIM, CHUNK_LENGTH, DT_S

__all__ = ["GOAL_ABOVE_M", "HOVER_ABOVE_M", "expert_chunk", "plan_positions"]

HOVER_ABOVE_M = 0.08  # travel height above the cube top: clear of the other cubes
GOAL_ABOVE_M = 0.01  # final tip height above the top (success needs within 3 cm)
ALIGN_INNER_M = 0.01  # horizontally this close: go all the way down
ALIGN_OUTER_M = 0.04  # farther than this: stay at hover height
TRAVEL_SPEED = 0.30  # m/s, horizontal
DESCENT_SPEED = 0.15  # m/s, vertical
GAIN = 4.0  # 1/s: the last centimetres are approached exponentially (no overshoot)
_SUBSTEP_S = 0.01


def _integrate(tip: np.ndarray, top: np.ndarray, duration: float) -> np.ndarray:
    """Tip positions every ``_SUBSTEP_S`` from 0 to ``duration`` (inclusive), ``[n, 3]``."""
    x, y, z = (float(v) for v in tip)
    tx, ty, tz = (float(v) for v in top)
    steps = math.ceil(duration / _SUBSTEP_S - 1e-9)
    out = [(x, y, z)]
    for _ in range(steps):
        dx, dy = tx - x, ty - y
        d = math.hypot(dx, dy)
        if d > 1e-9:
            speed = min(TRAVEL_SPEED, GAIN * d)
            x += dx / d * speed * _SUBSTEP_S
            y += dy / d * speed * _SUBSTEP_S
        s = min(1.0, max(0.0, (d - ALIGN_INNER_M) / (ALIGN_OUTER_M - ALIGN_INNER_M)))
        s = s * s * (3 - 2 * s)
        z_goal = tz + GOAL_ABOVE_M + s * (HOVER_ABOVE_M - GOAL_ABOVE_M)
        z += min(DESCENT_SPEED, max(-DESCENT_SPEED, GAIN * (z_goal - z))) * _SUBSTEP_S
        out.append((x, y, z))
    return np.array(out)


def plan_positions(tip: np.ndarray, cube_top: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Where the plan puts the tip at each of ``times`` (seconds from now): ``[len(times), 3]``."""
    times = np.asarray(times, dtype=float)
    path = _integrate(
        np.asarray(tip, dtype=float), np.asarray(cube_top, dtype=float), float(times.max(initial=0.0))
    )
    grid = np.arange(len(path)) * _SUBSTEP_S
    return np.column_stack([np.interp(times, grid, path[:, i]) for i in range(3)])


def expert_chunk(
    tip: np.ndarray, cube_top: np.ndarray, chunk_length: int = CHUNK_LENGTH, dt_s: float = DT_S
) -> np.ndarray:
    """The expert's action chunk ``[chunk_length, 7]`` in ``ee_delta``: displacement from ``tip``
    at 0, dt, 2 dt, ...; no rotation; gripper open."""
    positions = plan_positions(tip, cube_top, np.arange(chunk_length) * dt_s)
    out = np.zeros((chunk_length, ACTION_DIM), dtype=np.float32)
    out[:, :3] = positions - np.asarray(tip, dtype=float)
    out[:, -1] = 1.0
    return out


def world_expert_chunk(world: SimWorld, tip: np.ndarray) -> np.ndarray:
    """The expert's chunk for the world's current instruction."""
    return expert_chunk(tip, world.target_cube.top)

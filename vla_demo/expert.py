"""The scripted expert: reads the true cube positions and plans a path above the named cube,
then down onto it.

Its plan is a pure function of the tip position and the target, so a chunk label can be
computed from any state the noisy data collection visits (that is what teaches recoveries), and
the chunk k steps ahead is where the plan puts the tip k*dt from now.
"""

from __future__ import annotations

import numpy as np

from robot_agent.sim.world import SimWorld
from vla_demo.task import ACTION_DIM, CHUNK_LENGTH, DT_S

__all__ = ["GOAL_ABOVE_M", "HOVER_ABOVE_M", "expert_chunk", "plan_positions"]

HOVER_ABOVE_M = 0.08  # approach height above the cube top: clear of the other cubes
GOAL_ABOVE_M = 0.01  # final tip height above the top (success needs within 3 cm)
ALIGNED_M = 0.012  # horizontally this close: go straight down
TRAVEL_SPEED = 0.30  # m/s towards the hover point
DESCENT_SPEED = 0.15  # m/s on the way down


def plan_positions(tip: np.ndarray, cube_top: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Where the plan puts the tip at each of ``times`` (seconds from now): ``[len(times), 3]``."""
    tip = np.asarray(tip, dtype=float)
    top = np.asarray(cube_top, dtype=float)
    hover = top + np.array([0.0, 0.0, HOVER_ABOVE_M])
    goal = top + np.array([0.0, 0.0, GOAL_ABOVE_M])
    if np.hypot(*(tip[:2] - top[:2])) > ALIGNED_M:
        points, speeds = [tip, hover, goal], [TRAVEL_SPEED, DESCENT_SPEED]
    else:
        points, speeds = [tip, goal], [DESCENT_SPEED]
    # Time at which the plan reaches each point, then linear interpolation per axis.
    knots = [0.0]
    for a, b, v in zip(points[:-1], points[1:], speeds, strict=True):
        knots.append(knots[-1] + float(np.linalg.norm(b - a)) / v)
    pts = np.array(points)
    t = np.clip(np.asarray(times, dtype=float), 0.0, knots[-1])
    return np.column_stack([np.interp(t, knots, pts[:, i]) for i in range(3)])


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

"""The simulator, all of it: a Franka Panda on a table with three cubes and an instruction.

- ``world.py``: ``SimWorld`` holds the scene and judges an episode.
- ``arm.py``: ``SimArm``, the simulated Panda's tracking dynamics, latency, noise and e-stop;
  ``kinematics.py``: its forward and inverse kinematics (panda-python's).
- ``render.py``: draws the scene from a fixed or a wrist view; ``clock.py``: wall or manual time.

Nothing here knows the agent: ``robot_agent.drivers.sim.SimRobot`` adapts a ``SimArm`` to the
``Robot`` interface and ``robot_agent.cameras.sim.SimCamera`` adapts the renderer to ``Camera``.
Pure numpy and OpenCV (and panda-python for the kinematics), so it runs on any laptop and in CI.
``arm`` and ``kinematics`` are imported by name (``robot_agent.sim.arm``), not from here, so the
world and the clock load without panda-python.
"""

from __future__ import annotations

from robot_agent.sim.clock import Clock, ManualClock, WallClock
from robot_agent.sim.world import (
    COLOURS,
    CUBE_SIZE_M,
    Cube,
    EpisodeResult,
    SimWorld,
)

__all__ = [
    "COLOURS",
    "CUBE_SIZE_M",
    "Clock",
    "Cube",
    "EpisodeResult",
    "ManualClock",
    "SimWorld",
    "WallClock",
]

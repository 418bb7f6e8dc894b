"""The simulated world behind the simulated arm and camera: a table, three cubes, an instruction.

``SimWorld`` holds the scene and judges an episode; ``robot_agent.drivers.sim.SimRobot`` moves a
Panda in it and ``robot_agent.cameras.sim.SimCamera`` renders it. Pure numpy and OpenCV, so it
runs on any laptop and in CI.
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

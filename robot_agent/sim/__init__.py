"""The simulators, all of them: a Franka Panda on a table with three cubes and an instruction.

Two engines, picked by the ``sim`` robot's ``[robot.options] engine``:

- **MuJoCo** (``engine = "mujoco"``, the default; the demo, ``robot-agent eval`` and the safety
  tests run on it): ``mujoco_scene.py`` builds the scene (the Panda and Franka Hand from the
  installed ``dm-robotics-panda``, table, cubes, pad, optional conveyor, front and wrist cameras);
  ``mujoco_arm.py``: ``MujocoArm``, the torque-driven arm under Franka's Cartesian or joint
  impedance laws, latency, noise, e-stop brake, contact-force watch; ``mujoco_task.py``:
  ``PickPlaceWorld``, the pick-and-place scenes (static or on the conveyor) and their judge;
  ``mujoco_render.py``: offscreen rendering on demand, headless (EGL).
- **Kinematic** (``engine = "kinematic"``; fast, no contact, for the loop's unit tests):
  ``arm.py``: ``SimArm``, joint targets tracked first-order under velocity and acceleration limits;
  ``world.py``: ``SimWorld``, the touch-a-cube task and its judge (and ``EpisodeResult``, which
  both worlds return); ``render.py``: draws that scene with OpenCV.

Shared: ``kinematics.py`` and ``panda_chain.py`` (panda-python's FK/IK, which both arms report
and the joint mode uses), ``clock.py`` (wall or manual time: manual runs faster than real time).

Nothing here knows the agent: ``robot_agent.drivers.sim.SimRobot`` adapts either arm to the
``Robot`` interface and ``robot_agent.cameras.sim.SimCamera`` renders either scene as a
``Camera``. The arms and the MuJoCo modules are imported by name (``robot_agent.sim.arm``,
``robot_agent.sim.mujoco_arm``), not from here, so the world and the clock load without
panda-python or MuJoCo.
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

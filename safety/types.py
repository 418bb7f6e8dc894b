"""The values the shield reasons about: poses, targets, measured state and decisions.

Pure numpy, so the shield can be used and tested without the agent, the server or torch.
Orientation is a unit quaternion in (x, y, z, w) order throughout vla-deploy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Decision", "Measured", "Pose", "Target"]


@dataclass(frozen=True)
class Pose:
    """An end-effector pose in the robot base frame: metres and a unit quaternion (x, y, z, w)."""

    position: np.ndarray
    quaternion: np.ndarray


@dataclass(frozen=True)
class Target:
    """What the agent wants the arm to do at one control tick.

    Exactly one of ``ee`` (end-effector action spaces) and ``joints`` (joint action spaces) is set.
    ``time_s`` is the agent-clock time the target is meant for; the shield refuses a stale one.
    """

    time_s: float
    ee: Pose | None = None
    joints: np.ndarray | None = None
    gripper: float | None = None  # 0 = closed, 1 = open


@dataclass(frozen=True)
class Measured:
    """The arm's measured state at one tick, as the shield needs it."""

    time_s: float
    ee: Pose
    joints: np.ndarray
    gripper: float


@dataclass(frozen=True)
class Decision:
    """What the shield lets through, and why.

    ``fired`` names the rules that changed or refused the target (closed set of kinds, e.g.
    ``non_finite``, ``workspace``, ``keep_out``, ``velocity``); the agent counts them as
    ``vla_agent_safety_interventions_total{kind}`` and records them.
    ``hold`` means: command the measured pose with zero velocity instead of a target.
    ``estop`` means the latched e-stop is active: stop the arm.
    """

    target: Target | None
    hold: bool = False
    estop: bool = False
    fired: tuple[str, ...] = field(default_factory=tuple)

"""Chunk execution: time-stamping, blending old and new chunks, interpolation to the control rate."""

from __future__ import annotations

from robot_agent.trajectory._kernels import load as load_compiled
from robot_agent.trajectory.blending import Blended, blend
from robot_agent.trajectory.interpolation import Curve, HermiteCurve, LinearCurve, make_curve
from robot_agent.trajectory.ruckig_follower import RuckigFollower
from robot_agent.trajectory.trajectory import ChunkResult, Trajectory

__all__ = [
    "Blended",
    "ChunkResult",
    "Curve",
    "HermiteCurve",
    "LinearCurve",
    "RuckigFollower",
    "Trajectory",
    "blend",
    "load_compiled",
    "make_curve",
]

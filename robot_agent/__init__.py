"""The robot agent: runs a served VLA policy on an arm, safely.

Streams camera observations to an inference server, executes the returned action chunks at a
fixed control rate through the safety shield, and holds position whenever it has nothing valid
for *now*. ``robot-agent --help`` to run it; ``Agent(AgentConfig.load(...)).run()`` to embed it.
"""

from __future__ import annotations

from robot_agent.agent import Agent
from robot_agent.cameras.base import Camera, Frame
from robot_agent.config import (
    AgentConfig,
    CameraConfig,
    ControlConfig,
    RecordConfig,
    RobotConfig,
    SchedulerConfig,
    ServerConfig,
)
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import (
    AgentError,
    CameraError,
    ConfigError,
    DriverError,
    EstopRefused,
    MissingExtra,
    NotAPolicyServer,
    RobotInUse,
    RunFileError,
    ServerUnavailable,
    SpecMismatch,
    TransportSecurityError,
)
from robot_agent.evaluation import EpisodeOutcome, EvalResults, evaluate
from robot_agent.metrics import AgentMetrics

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentError",
    "AgentMetrics",
    "Camera",
    "CameraConfig",
    "CameraError",
    "ConfigError",
    "ControlConfig",
    "DriverError",
    "EpisodeOutcome",
    "EstopRefused",
    "EvalResults",
    "Frame",
    "MissingExtra",
    "NotAPolicyServer",
    "RecordConfig",
    "Robot",
    "RobotConfig",
    "RobotInUse",
    "RobotState",
    "RunFileError",
    "SchedulerConfig",
    "ServerConfig",
    "ServerUnavailable",
    "SpecMismatch",
    "TransportSecurityError",
    "evaluate",
]

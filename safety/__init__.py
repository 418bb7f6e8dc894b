"""Safety for vla-deploy: a pure-numpy shield that no action stream can get past.

Use it on its own or through the agent::

    from safety import SafetyConfig, Shield

    shield = Shield(SafetyConfig.from_mapping(cfg.get("safety", {})))
    shield.reset(measured)                                  # at start, after an e-stop reset
    decision = shield.filter(target, measured, now_s, dt_s)  # every control tick
    if decision.estop: ...                                  # stop the arm
    elif decision.hold: ...                                 # command decision.target (the measured state)
    else: ...                                               # command decision.target

``safety`` imports neither the agent nor the server, nor torch, grpc or scipy.
"""

from __future__ import annotations

from .arms import ArmLimits
from .config import (
    PANDA_CARTESIAN_LIMITS,
    PANDA_HOME_JOINTS,
    PANDA_JOINT_ACCELERATION,
    PANDA_JOINT_JERK,
    PANDA_JOINT_MAX,
    PANDA_JOINT_MIN,
    PANDA_JOINT_VELOCITY,
    Box,
    CartesianLimits,
    GripperLimits,
    JointLimits,
    KeepOut,
    KeepOutBox,
    KeepOutHalfSpace,
    KeepOutSphere,
    OrientationLimit,
    SafetyConfig,
    TrackingLimits,
)
from .errors import SafetyConfigError, SafetyError
from .estop import EStop
from .record import StepRecord
from .shield import ESTOP_COUNTED_KINDS, FK, IK, SAFETY_RULE_KINDS, Shield
from .types import Decision, Measured, Pose, Target
from .verify import Violation, verify_trace

__all__ = [
    "ESTOP_COUNTED_KINDS",
    "FK",
    "IK",
    "PANDA_CARTESIAN_LIMITS",
    "PANDA_HOME_JOINTS",
    "PANDA_JOINT_ACCELERATION",
    "PANDA_JOINT_JERK",
    "PANDA_JOINT_MAX",
    "PANDA_JOINT_MIN",
    "PANDA_JOINT_VELOCITY",
    "SAFETY_RULE_KINDS",
    "ArmLimits",
    "Box",
    "CartesianLimits",
    "Decision",
    "EStop",
    "GripperLimits",
    "JointLimits",
    "KeepOut",
    "KeepOutBox",
    "KeepOutHalfSpace",
    "KeepOutSphere",
    "Measured",
    "OrientationLimit",
    "Pose",
    "SafetyConfig",
    "SafetyConfigError",
    "SafetyError",
    "Shield",
    "StepRecord",
    "Target",
    "TrackingLimits",
    "Violation",
    "verify_trace",
]

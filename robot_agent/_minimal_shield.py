"""A stand-in with the ``safety.Shield`` API, used only while the ``safety`` package has no
shield: it refuses non-finite targets and keeps the e-stop latch, nothing more."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from safety.types import Decision, Measured, Target

__all__ = ["MinimalEStop", "MinimalSafetyConfig", "MinimalShield"]


class MinimalEStop:
    def __init__(self) -> None:
        self.active = False
        self.reason: str | None = None

    def trigger(self, reason: str) -> None:
        if not self.active:
            self.active, self.reason = True, reason

    def reset(self) -> None:
        self.active, self.reason = False, None


class MinimalSafetyConfig:
    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> MinimalSafetyConfig:
        return cls(raw)


class MinimalShield:
    def __init__(self, config: MinimalSafetyConfig) -> None:
        self.config = config
        self.estop = MinimalEStop()

    def reset(self, measured: Measured) -> None:
        pass

    def filter(self, target: Target | None, measured: Measured, now_s: float, dt_s: float) -> Decision:
        if self.estop.active:
            return Decision(target=None, hold=True, estop=True)
        if target is None:
            return Decision(target=None, hold=True)
        values = [target.gripper if target.gripper is not None else 0.0]
        if target.ee is not None:
            values += [*target.ee.position.tolist(), *target.ee.quaternion.tolist()]
        if target.joints is not None:
            values += np.asarray(target.joints).tolist()
        if not all(math.isfinite(v) for v in values):
            return Decision(target=None, hold=True, fired=("non_finite",))
        return Decision(target=target)

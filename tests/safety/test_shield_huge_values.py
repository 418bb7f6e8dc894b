"""Finite but huge quaternions: the shield refuses them instead of raising.

A quaternion with a component past ~1e154 is finite, but its squared norm overflows to inf, so it
cannot be normalised (``quat_normalize`` raises ValueError). ``Shield.filter`` promises never to
raise on bad input: such a target is ``invalid`` (a hold), such a measured state an e-stop, as a
non-finite one is.
"""

from __future__ import annotations

import numpy as np
import pytest

from safety import Measured, Pose, SafetyConfig, Shield, Target

from ._helpers import HOME_JOINTS, HOME_POSITION, HOME_QUATERNION, home_measured

HUGE = [np.array([1e300, 0.0, 0.0, 1.0]), np.array([0.0, -1e155, 0.0, 0.0])]


@pytest.mark.parametrize("quaternion", HUGE, ids=["1e300", "-1e155"])
def test_a_target_quaternion_whose_norm_overflows_is_invalid(quaternion: np.ndarray) -> None:
    shield = Shield(SafetyConfig.from_mapping({}))
    shield.reset(home_measured())
    with np.errstate(over="ignore"):
        decision = shield.filter(
            Target(time_s=0.01, ee=Pose(HOME_POSITION, quaternion)), home_measured(), 0.01, 0.01
        )
    assert (decision.hold, decision.estop, decision.fired) == (True, False, ("invalid",))


@pytest.mark.parametrize("quaternion", HUGE, ids=["1e300", "-1e155"])
def test_a_measured_quaternion_whose_norm_overflows_stops_the_arm(quaternion: np.ndarray) -> None:
    shield = Shield(SafetyConfig.from_mapping({}))
    shield.reset(home_measured())
    measured = Measured(0.01, Pose(HOME_POSITION.copy(), quaternion), HOME_JOINTS.copy(), 1.0)
    target = Target(time_s=0.01, ee=Pose(HOME_POSITION, HOME_QUATERNION))
    with np.errstate(over="ignore"):
        decision = shield.filter(target, measured, 0.01, 0.01)
    assert decision.estop and decision.target is None

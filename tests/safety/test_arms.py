"""The arms' limit tables: one Panda table everybody reads, xArm tables of their own, checked shapes."""

from __future__ import annotations

import re

import numpy as np
import panda_py
import pytest
from panda_py import constants

from safety import SafetyConfig
from safety.arms import PANDA, XARM, XARM5, XARM6, XARM7, ArmLimits


def test_the_panda_table_is_the_one_panda_py_and_the_shield_defaults_use() -> None:
    np.testing.assert_allclose(PANDA.joint_min, constants.JOINT_LIMITS_LOWER)
    np.testing.assert_allclose(PANDA.joint_max, constants.JOINT_LIMITS_UPPER)
    np.testing.assert_allclose(PANDA.home_joints, constants.JOINT_POSITION_START)
    # home: the hand's TCP 0.307 m ahead, 0.487 m up
    np.testing.assert_allclose(
        panda_py.fk(np.array(PANDA.home_joints))[:3, 3], [0.3069, 0, 0.4873], atol=1e-3
    )
    joints = SafetyConfig().joints
    assert (joints.min, joints.max) == (PANDA.joint_min, PANDA.joint_max)
    assert joints.max_velocity == tuple(0.5 * v for v in PANDA.joint_velocity)
    SafetyConfig().validate_against(
        robot_cartesian_limits=PANDA.cartesian, robot_joint_rates=PANDA.joint_rates
    )


@pytest.mark.parametrize(("table", "dof"), [(XARM5, 5), (XARM6, 6), (XARM7, 7)])
def test_the_xarm_tables_are_their_own(table: ArmLimits, dof: int) -> None:
    assert XARM[dof] is table and table.dof == dof
    assert table.joint_velocity == (pytest.approx(np.pi),) * dof  # 180 deg/s
    assert table.tcp_max_velocity == 1.0
    assert table.joint_rates is None and table.cartesian is None  # not published by UFACTORY
    assert all(lo < 0.0 < hi for lo, hi in zip(table.joint_min, table.joint_max, strict=True))


def test_a_table_that_disagrees_with_itself_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("arm: joint_velocity has 1 values, joint_min has 2")):
        ArmLimits("arm", (-1.0, -1.0), (1.0, 1.0), (2.0,), (0.0, 0.0))
    with pytest.raises(ValueError, match=re.escape("arm: home joint 0 is 1.5, outside [-1.0, 1.0]")):
        ArmLimits("arm", (-1.0,), (1.0,), (2.0,), (1.5,))
    with pytest.raises(TypeError):
        XARM[8] = XARM7  # type: ignore[index]

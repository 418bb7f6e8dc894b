"""The MuJoCo scene: the model's TCP is panda-python's FK, the torque limits, the missing model."""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_agent.sim.arm import PANDA_JOINT_LIMITS
from robot_agent.sim.kinematics import tip_pose
from robot_agent.sim.mujoco_render import import_mujoco
from robot_agent.sim.mujoco_scene import JOINT_TORQUE_LIMITS, PHYSICS_DT_S, SceneError, SceneIds, build
from safety.rotations import quat_to_matrix

mujoco = import_mujoco()


@pytest.fixture(scope="module")
def scene() -> tuple[Any, Any, SceneIds]:
    model, ids = build()
    return model, mujoco.MjData(model), ids


joint_configs = st.tuples(*(st.floats(float(lo), float(hi)) for lo, hi in zip(*PANDA_JOINT_LIMITS, strict=True)))


@settings(max_examples=60, deadline=None)
@given(q=joint_configs)
def test_tcp_site_is_panda_py_fk(scene: tuple[Any, Any, SceneIds], q: tuple[float, ...]) -> None:
    model, data, ids = scene
    data.qpos[ids.arm_qpos] = q
    mujoco.mj_kinematics(model, data)
    fk = tip_pose(np.array(q))
    np.testing.assert_allclose(data.site_xpos[ids.tcp_site], fk.position, atol=1e-6)
    np.testing.assert_allclose(data.site_xmat[ids.tcp_site].reshape(3, 3), quat_to_matrix(fk.quaternion), atol=1e-6)


def test_arm_torques_are_limited_to_frankas_documented_joint_torques(scene: tuple[Any, Any, SceneIds]) -> None:
    model, _, ids = scene
    np.testing.assert_array_equal(model.actuator_ctrlrange[ids.arm_actuators], np.column_stack([-JOINT_TORQUE_LIMITS, JOINT_TORQUE_LIMITS]))
    assert model.actuator_ctrllimited[ids.arm_actuators].all()
    assert model.opt.timestep == PHYSICS_DT_S


def test_missing_panda_model_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any, **kwargs: Any) -> Any:
        return None if name.startswith("dm_robotics") else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(SceneError, match="pip install --no-deps dm-robotics-panda"):
        build()

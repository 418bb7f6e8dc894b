"""Shared helpers for the safety tests: a home state and a tiny simulated arm that obeys."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from safety import PANDA_HOME_JOINTS, Measured, Pose, Target, compiled

HOME_POSITION = np.array([0.307, 0.0, 0.487])
HOME_QUATERNION = np.array([1.0, 0.0, 0.0, 0.0])
HOME_JOINTS = np.array(PANDA_HOME_JOINTS)


def home_measured(t: float = 0.0, gripper: float = 1.0) -> Measured:
    return Measured(
        time_s=t,
        ee=Pose(HOME_POSITION.copy(), HOME_QUATERNION.copy()),
        joints=HOME_JOINTS.copy(),
        gripper=gripper,
    )


def follow(measured: Measured, decision_target: Target | None, t: float) -> Measured:
    """The simulated arm reaches each command exactly (so tracking never trips by itself)."""
    if decision_target is None:
        return measured
    ee = decision_target.ee if decision_target.ee is not None else measured.ee
    joints = decision_target.joints if decision_target.joints is not None else measured.joints
    g = decision_target.gripper if decision_target.gripper is not None else measured.gripper
    return Measured(time_s=t, ee=ee, joints=np.asarray(joints), gripper=float(g))


def interpreted_kernels(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> None:
    """Run every compiled kernel of ``modules`` as plain Python, as without numba: each function
    with a ``py_func`` becomes it, and ``safety.compiled.fma`` the exact-rational one."""
    for module in modules:
        for name, value in list(vars(module).items()):
            if callable(getattr(value, "py_func", None)):
                monkeypatch.setattr(module, name, value.py_func)
    monkeypatch.setattr(compiled, "fma", compiled._fma_exact)

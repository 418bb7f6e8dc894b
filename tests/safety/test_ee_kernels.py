"""The end effector's kernels are compiled when the shield is built, never inside a control tick.

numba compiles one specialisation per argument type; a caller's read-only, strided or float32
pose (target or measured) must run on the specialisations loaded when the shield was built
(compiling one takes about a second). What the kernels compute is pinned by
``test_shield_reference.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from safety import Measured, Pose, SafetyConfig, Shield, Target, compiled, ee_kernels, rotation_kernels

from ._helpers import HOME_JOINTS, HOME_POSITION, HOME_QUATERNION

numba = pytest.importorskip("numba")

KERNELS = (ee_kernels.ee_target, ee_kernels.ee_track, ee_kernels.ee_motion)
DT = 0.01


def test_the_kernels_are_compiled_when_numba_is_installed() -> None:
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT is set")
    for kernel in (*KERNELS, rotation_kernels.q_slerp, compiled.dot3, compiled.dot4, compiled.fma):
        assert isinstance(kernel, numba.core.registry.CPUDispatcher), kernel


def _read_only(x: np.ndarray) -> np.ndarray:
    out = np.array(x, dtype=float)
    out.flags.writeable = False
    return out


def _strided(x: np.ndarray) -> np.ndarray:
    wide = np.zeros((len(x), 2))
    wide[:, 0] = x
    return wide[:, 0]


@pytest.mark.parametrize(
    "form",
    [_read_only, _strided, lambda x: np.asarray(x, dtype=np.float32), lambda x: [float(v) for v in x]],
    ids=["read-only", "strided", "float32", "list"],
)
@pytest.mark.parametrize("keep_out", [False, True], ids=["workspace", "keep-out"])
def test_poses_of_any_array_form_use_the_kernels_compiled_at_build(form: object, keep_out: bool) -> None:
    zones = [{"kind": "sphere", "center": [0.5, 0.15, 0.3], "radius": 0.08}] if keep_out else []
    shield = Shield(SafetyConfig.from_mapping({"keep_out": zones}))
    compiled_now = [len(k.signatures) for k in KERNELS]
    measured = Measured(0.0, Pose(form(HOME_POSITION), form(HOME_QUATERNION)), HOME_JOINTS.copy(), 1.0)  # type: ignore[operator]
    shield.reset(measured)
    now = 0.0
    for i in range(30):
        now += DT
        off = 0.0001 if i % 3 == 0 else 0.05  # direct steps and limited ones
        pose = Pose(form(HOME_POSITION + np.array([off, 0.0, -0.4 * off])), form(HOME_QUATERNION))  # type: ignore[operator]
        decision = shield.filter(Target(time_s=now, ee=pose, gripper=1.0), measured, now, np.float32(DT))
        assert not decision.hold, decision.fired
        assert decision.target is not None and decision.target.ee is not None
        ee = decision.target.ee
        measured = Measured(now, Pose(form(ee.position), form(ee.quaternion)), HOME_JOINTS.copy(), 1.0)  # type: ignore[operator]
    assert [len(k.signatures) for k in KERNELS] == compiled_now

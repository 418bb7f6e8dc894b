"""No numba compile inside a control tick, whatever array type a caller's target comes in.

numba compiles one specialisation per argument type: a read-only float64 array (``frombuffer``,
``flags.writeable = False``) or a strided view is a different type from the writable C-contiguous
arrays ``Axes`` warms its kernels with, and compiling one takes about a second. A target in any
of these forms must run on the specialisations compiled when the shield was built.
"""

from __future__ import annotations

import numpy as np
import pytest

from safety import Pose, SafetyConfig, Shield, Target, motion

from ._helpers import HOME_JOINTS, HOME_POSITION, HOME_QUATERNION, follow, home_measured

pytest.importorskip("numba")

KERNELS = ("_direct_kernel", "_step_kernel", "_commit_kernel")
DT = 0.01


def _read_only(x: np.ndarray) -> np.ndarray:
    out = np.array(x, dtype=float)
    out.flags.writeable = False
    return out


def _strided(x: np.ndarray) -> np.ndarray:
    wide = np.zeros((len(x), 2))
    wide[:, 0] = x
    return wide[:, 0]  # float64, not contiguous


def _signatures() -> list[int]:
    return [len(getattr(motion, name).signatures) for name in KERNELS]


@pytest.mark.parametrize("form", [_read_only, _strided], ids=["read-only", "strided"])
@pytest.mark.parametrize("space", ["joints", "ee"])
def test_targets_of_any_array_form_use_the_kernels_compiled_at_build(form: object, space: str) -> None:
    shield = Shield(SafetyConfig.from_mapping({}))  # compiles (or loads) the kernels
    measured = home_measured()
    shield.reset(measured)
    compiled = _signatures()
    now = 0.0
    for i in range(30):
        now += DT
        off = 0.0001 if i % 3 == 0 else 0.05  # direct steps and limited ones
        if space == "joints":
            target = Target(time_s=now, joints=form(HOME_JOINTS + off), gripper=1.0)  # type: ignore[operator]
        else:
            pose = Pose(form(HOME_POSITION + off), form(HOME_QUATERNION))  # type: ignore[operator]
            target = Target(time_s=now, ee=pose, gripper=1.0)
        decision = shield.filter(target, measured, now, np.float32(DT))
        assert not decision.hold, decision.fired
        measured = follow(measured, decision.target, now)
    assert _signatures() == compiled


def test_a_read_only_target_gives_the_same_commands_as_a_writable_one() -> None:
    outputs = []
    for form in (lambda x: np.array(x, dtype=float), _read_only, _strided):
        shield = Shield(SafetyConfig.from_mapping({}))
        measured = home_measured()
        shield.reset(measured)
        now, run = 0.0, []
        for _ in range(20):
            now += DT
            decision = shield.filter(Target(time_s=now, joints=form(HOME_JOINTS + 0.05)), measured, now, DT)
            assert decision.target is not None and decision.target.joints is not None
            run.append(np.asarray(decision.target.joints).tobytes())
            measured = follow(measured, decision.target, now)
        outputs.append(run)
    assert outputs[0] == outputs[1] == outputs[2]

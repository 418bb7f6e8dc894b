"""The after-the-fact checker finds what it should (it is what the end-to-end test trusts)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from safety import Pose, SafetyConfig, Shield, StepRecord, Target, verify_trace

from ._helpers import HOME_JOINTS, HOME_POSITION, HOME_QUATERNION, home_measured

CFG = SafetyConfig()
Q = HOME_QUATERNION.tolist()


def ee_rec(
    t: float, pos: list[float], quat: list[float] = Q, dt: float = 0.01, *, gripper: float | None = None
) -> StepRecord:
    """A moving tick's record commanding this pose, ``dt`` after the previous tick."""
    safe = Target(time_s=t, ee=Pose(np.array(pos, dtype=float), np.array(quat, dtype=float)), gripper=gripper)
    return StepRecord(time_s=t, measured=None, raw=safe, safe=safe, fired=(), holding=False, dt_s=dt)


def still(n: int) -> list[StepRecord]:
    return [ee_rec(0.01 * i, HOME_POSITION.tolist()) for i in range(n)]


def changed(record: StepRecord, **kw: object) -> StepRecord:
    """``record`` with its command's pose, quaternion or gripper, or its ``dt_s``, changed."""
    safe = record.safe
    assert safe is not None and safe.ee is not None
    pos, quat = kw.pop("ee_position", safe.ee.position), kw.pop("ee_quaternion", safe.ee.quaternion)
    ee = Pose(np.array(pos, dtype=float), np.array(quat, dtype=float))
    safe = dataclasses.replace(safe, ee=ee, gripper=kw.pop("gripper", safe.gripper))  # type: ignore[arg-type]
    return dataclasses.replace(record, safe=safe, **kw)  # type: ignore[arg-type]


def test_a_trace_at_rest_is_clean() -> None:
    assert verify_trace(still(10), CFG) == []


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        ({"ee_position": [0.307, 0.0, 0.497]}, "velocity"),  # 1 cm in one tick
        ({"ee_position": [0.307, 0.0, 0.4871]}, "jerk"),  # 0.1 mm: small, yet jerky
        ({"ee_position": [0.9, 0.0, 0.487]}, "workspace"),
        ({"ee_position": [math.nan, 0.0, 0.487]}, "non_finite"),
        ({"ee_quaternion": [0.0, 1.0, 0.0, 0.0]}, "velocity"),  # half a turn in a tick
        ({"gripper": 1.5}, "gripper"),
        ({"dt_s": 0.0}, "invalid"),
    ],
)
def test_violations_are_found(change: dict[str, object], kind: str) -> None:
    recs = still(10)
    recs[5] = changed(recs[5], **change)
    found = verify_trace(recs, CFG)
    assert kind in {v.kind for v in found}
    assert {v.index for v in found} <= {5, 6, 7, 8}, [str(v) for v in found]  # the step and its echo


def test_keep_out_and_joint_band_are_checked() -> None:
    cfg = SafetyConfig.from_mapping(
        {"keep_out": [{"kind": "sphere", "center": [0.5, 0, 0.3], "radius": 0.1}]}
    )
    assert [v.kind for v in verify_trace([ee_rec(0.0, [0.5, 0.0, 0.35])], cfg)] == ["keep_out"]
    q = HOME_JOINTS.copy()
    q[0] = 2.87  # inside the hardware limit, outside the margin band
    joint_rec = StepRecord(
        time_s=0.0, measured=None, raw=None, safe=Target(time_s=0.0, joints=q), fired=(), holding=False
    )
    found = verify_trace([joint_rec], CFG)
    assert [v.kind for v in found] == ["joint_limit"]


def test_a_hold_restarts_the_rates_from_rest() -> None:
    recs = still(3)
    hold = Target(time_s=0.03, ee=Pose(np.array([0.4, 0.0, 0.4]), np.array(Q)))  # the hold's command
    recs.append(StepRecord(time_s=0.03, measured=None, raw=None, safe=hold, fired=(), holding=True))
    recs.append(ee_rec(0.04, [0.4, 0.0, 0.4]))  # no jump from the hold pose: clean
    assert verify_trace(recs, CFG) == []
    recs.append(ee_rec(0.05, [0.401, 0.0, 0.4]))  # 1 mm right after rest: acceleration 10 m/s^2
    assert {v.kind for v in verify_trace(recs, CFG)} >= {"acceleration"}


def test_reads_the_agent_recorder_format() -> None:
    m = {"time": 0.0, "joints": HOME_JOINTS.tolist(), "ee": [*HOME_POSITION.tolist(), *Q], "gripper": 1.0}
    line = lambda t, x, hold=False: {  # noqa: E731
        "time": t,
        "measured": m,
        "safe": None if hold else {"time": t, "gripper": None, "ee": [x, 0.0, 0.487, *Q]},
        "fired": [],
        "holding": hold,
    }
    clean = [line(0.01 * i, 0.307) for i in range(5)] + [line(0.05, 0, hold=True)] + [line(0.06, 0.307)]
    assert verify_trace(clean, Shield(CFG).limits_report()) == []
    jumpy = [*clean, line(0.07, 0.35)]
    assert "velocity" in {v.kind for v in verify_trace(jumpy, CFG.to_dict())}


def test_shield_output_verifies_against_its_own_report() -> None:
    shield = Shield(CFG)
    m = home_measured()
    shield.reset(m)
    recs = []
    for i in range(50):
        d = shield.filter(
            Target(time_s=0.01 * i, ee=Pose(HOME_POSITION + np.array([0.05, 0, 0]), HOME_QUATERNION)),
            m,
            0.01 * i,
            0.01,
        )
        recs.append(StepRecord.from_decision(d, 0.01 * i, 0.01))
        m = type(m)(0.01 * i, d.target.ee, m.joints, m.gripper)
    assert verify_trace(recs, shield.limits_report()) == []
    assert np.isfinite(
        [r.safe.ee.position for r in recs if r.safe is not None and r.safe.ee is not None]
    ).all()
    assert len(recs) == 50 and all(r.safe is not None for r in recs)

"""StepRecord, the one step-record type: its steps.jsonl line (the recorder's format), read back
unchanged, non-finite numbers as null; built from a shield decision for verify_trace."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safety import Decision, Measured, Pose, StepRecord, Target

QUAT = [0.0, 1.0, 0.0, 0.0]


def measured(t: float = 1.0) -> Measured:
    return Measured(
        time_s=t, ee=Pose(np.array([0.4, 0.0, 0.3]), np.array(QUAT)), joints=np.arange(7.0), gripper=1.0
    )


def test_the_line_is_the_recorders_format() -> None:
    raw = Target(time_s=1.01, ee=Pose(np.array([0.41, 0.0, 0.3]), np.array(QUAT)), gripper=0.5)
    safe = Target(time_s=1.01, joints=np.zeros(7), gripper=None)
    record = StepRecord(
        time_s=1.0, measured=measured(), raw=raw, safe=safe, fired=("velocity",), holding=False, plan_end=1.4
    )
    assert record.to_json() == {
        "time": 1.0,
        "measured": {
            "time": 1.0,
            "joints": list(np.arange(7.0)),
            "ee": [0.4, 0.0, 0.3, *QUAT],
            "gripper": 1.0,
        },
        "raw": {"time": 1.01, "gripper": 0.5, "ee": [0.41, 0.0, 0.3, *QUAT]},
        "safe": {"time": 1.01, "gripper": None, "joints": [0.0] * 7},
        "fired": ["velocity"],
        "holding": False,
        "hold_reason": None,
        "plan_end": 1.4,
    }
    held = StepRecord(
        time_s=2.0, measured=None, raw=None, safe=None, fired=(), holding=True, hold_reason="late"
    )
    assert held.to_json() == {
        "time": 2.0,
        "measured": None,
        "raw": None,
        "safe": None,
        "fired": [],
        "holding": True,
        "hold_reason": "late",
        "plan_end": None,
    }


def test_non_finite_numbers_are_null_and_read_back_as_nan() -> None:
    nan_pose = Pose(np.array([math.nan, 0.0, math.inf]), np.array(QUAT))
    record = StepRecord(
        time_s=1.0,
        measured=measured(),
        raw=Target(time_s=1.0, ee=nan_pose, gripper=math.nan),
        safe=None,
        fired=("non_finite",),
        holding=True,
        hold_reason="non_finite",
    )
    line = json.dumps(record.to_json(), allow_nan=False)  # raised inside the tick before
    assert json.loads(line)["raw"] == {"time": 1.0, "gripper": None, "ee": [None, 0.0, None, *QUAT]}
    back = StepRecord.from_json(line)
    assert back.raw is not None and back.raw.ee is not None and back.raw.gripper is None
    assert np.isnan(back.raw.ee.position[[0, 2]]).all() and back.raw.ee.position[1] == 0.0


finite = st.floats(-1e6, 1e6, allow_nan=False)
vector = st.lists(finite, min_size=7, max_size=7)


@st.composite
def records(draw: st.DrawFn) -> StepRecord:
    def target() -> Target | None:
        kind = draw(st.sampled_from(["none", "ee", "joints"]))
        if kind == "none":
            return None
        grip = draw(st.none() | finite)
        v = np.array(draw(vector))
        if kind == "ee":
            return Target(time_s=draw(finite), ee=Pose(v[:3], v[3:]), gripper=grip)
        return Target(time_s=draw(finite), joints=v, gripper=grip)

    m = None
    if draw(st.booleans()):
        ee = np.array(draw(vector))
        m = Measured(
            time_s=draw(finite), ee=Pose(ee[:3], ee[3:]), joints=np.array(draw(vector)), gripper=draw(finite)
        )
    return StepRecord(
        time_s=draw(finite),
        measured=m,
        raw=target(),
        safe=target(),
        fired=tuple(draw(st.lists(st.sampled_from(["velocity", "jerk", "keep_out"]), max_size=3))),
        holding=draw(st.booleans()),
        hold_reason=draw(st.none() | st.sampled_from(["late", "safety"])),
        plan_end=draw(st.none() | finite),
        dt_s=draw(st.none() | st.floats(1e-4, 1.0)),
    )


@given(records())
def test_a_line_reads_back_as_the_same_record(record: StepRecord) -> None:
    line = json.dumps(record.to_json(), allow_nan=False)
    back = StepRecord.from_json(json.loads(line))
    assert back.to_json() == record.to_json()
    assert StepRecord.from_json(line).to_json() == record.to_json()  # the text itself reads too
    assert ("dt" in json.loads(line)) == (record.dt_s is not None)


@pytest.mark.parametrize(
    "line", [{"t": 0.0, "dt": 0.01, "hold": False}, [1, 2], {"time": 0.0, "measured": {"time": 0.0}}]
)
def test_a_malformed_line_is_a_value_error_showing_it(line: object) -> None:
    with pytest.raises(ValueError, match=r"steps\.jsonl line"):
        StepRecord.from_json(line)  # type: ignore[arg-type]


def test_from_decision_records_the_shields_command() -> None:
    hold = Target(time_s=0.5, joints=np.zeros(7), gripper=1.0)
    record = StepRecord.from_decision(Decision(target=hold, hold=True, fired=("stall",)), 0.5, 0.01)
    assert (record.time_s, record.safe, record.holding, record.fired, record.dt_s) == (
        0.5,
        hold,
        True,
        ("stall",),
        0.01,
    )
    assert record.measured is None and record.raw is None

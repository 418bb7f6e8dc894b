"""A faulty control tick is recorded like any other (issue 10, kind 1: "the recording keeps every
tick"): before, a tick that raised inside the fault boundary held the arm but left no line in
``steps.jsonl`` (the issue's Ruckig example: 64 ticks, 59 steps)."""

from __future__ import annotations

import pytest

from tests.robot_agent.test_control_faults import BOOKKEEPING, STAGES, inject, make_rig, moving


@pytest.mark.parametrize(("stage", "reason", "keeps_plan"), [s for s in STAGES if s[0] not in BOOKKEEPING])
async def test_a_faulty_tick_is_recorded_as_a_hold_with_its_reason(
    stage: str, reason: str, keeps_plan: bool
) -> None:
    rig = make_rig()
    await moving(rig)
    assert len(rig.recorder.steps) == 2
    inject(rig, stage, times=1)
    await rig.tick(3)
    assert len(rig.recorder.steps) == 3  # one record per tick, the faulty one included
    step = rig.recorder.steps[-1]
    assert step.holding is True and step.hold_reason == reason
    assert step.safe is None and step.raw is None
    assert step.time_s == pytest.approx(rig.t0 + 3 * 0.01)
    assert step.measured is not None  # the state was read before the stage raised
    await rig.tick(4)
    assert len(rig.recorder.steps) == 4


async def test_repeated_faults_up_to_the_estop_are_all_recorded() -> None:
    rig = make_rig(max_faults=3)
    await moving(rig)
    inject(rig, "shield", times=None)
    for k in range(3, 6):
        await rig.tick(k)
    assert rig.loop.estopped
    assert len(rig.recorder.steps) == 5
    assert [s.hold_reason for s in rig.recorder.steps[2:]] == ["shield_error", "shield_error", "estop"]


async def test_a_faulty_recorder_is_not_asked_again_in_the_same_tick() -> None:
    rig = make_rig()
    await moving(rig)
    inject(rig, "recorder", times=1)
    await rig.tick(3)
    assert rig.recorder.stopped is not None
    assert len(rig.recorder.steps) == 2  # the failed write is the only attempt; the loop dropped it


async def test_a_failing_metric_keeps_the_record_of_its_tick() -> None:
    """The subscribers get each tick's event after the command: a metric that raises on it
    leaves the recorder its record (what was sent), then the arm holds; the next tick resumes."""
    rig = make_rig()
    await moving(rig)
    inject(rig, "metrics", times=1)
    await rig.tick(3)
    assert len(rig.recorder.steps) == 3
    step = rig.recorder.steps[-1]
    assert step.holding is False and step.safe is not None  # the command that went out
    assert rig.loop.holding and rig.loop.hold_reason == "metrics_error"
    assert rig.recorder.events[-1] == ("hold", "metrics_error")
    await rig.tick(4)
    assert len(rig.recorder.steps) == 4 and not rig.recorder.steps[-1].holding

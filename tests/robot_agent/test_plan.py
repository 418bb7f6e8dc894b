"""The plan's one owner: intake of answers, the answer backoff, why the arm holds, the stale
observation state. Driven with numbers (times passed in), the simulated arm's state and a list
subscriber on the bus."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from robot_agent.action_space import ActionSpace
from robot_agent.config import SchedulerConfig
from robot_agent.drivers.base import RobotState
from robot_agent.drivers.sim import SimRobot
from robot_agent.events import (
    Answer,
    ChunkAccepted,
    ChunkRejected,
    DeadlineMiss,
    EventBus,
    ObservationFresh,
    ObservationStale,
    RequestFailed,
)
from robot_agent.plan import Plan, PlanFault
from robot_agent.policy_client import Backoff, Chunk, ChunkProblem
from robot_agent.scheduler import Scheduler
from robot_agent.sim.arm import SimArm
from robot_agent.trajectory import Trajectory
from tests.robot_agent._events import Events

BACKOFF_S = 0.1  # the first step of the answer backoff (no jitter): 0.1, 0.2, 0.4, ...


@pytest.fixture
def state() -> RobotState:
    robot = SimRobot(SimArm())  # the kinematic sim: fast, no contact
    robot.connect()
    return dataclasses.replace(robot.read_state(), time_s=10.0)


def make_plan(state: RobotState) -> tuple[Plan, Events]:
    events = Events()
    plan = Plan(
        events=EventBus([events]),
        scheduler=Scheduler(SchedulerConfig(), request_timeout_s=0.5),
        backoff=Backoff(BACKOFF_S, 2.0, 5.0, 0.0),
    )
    plan.configure(
        ActionSpace("ee_delta", 7, 7, reference=state.ee.quaternion),
        Trajectory(interpolation="linear", control_dt=0.01),
    )
    plan.observe(state)
    plan.stream_up()
    return plan, events


def ask(plan: Plan, state: RobotState, request_id: int) -> None:
    """What the scheduler task does when it sends request ``request_id`` captured with ``state``."""
    plan.sending(state.time_s)
    plan.sent(request_id, state)


def answer(request_id: int, capture: float, received: float, **kw: object) -> Chunk:
    actions = np.zeros((6, 7))
    actions[:, 6] = 1.0
    fields: dict[str, object] = dict(
        request_id=request_id, status="OK", message="", actions=actions, dt_s=0.05,
        capture_time_s=capture, received_s=received, server_total_ms=1.0,
    )  # fmt: skip
    fields.update(kw)
    return Chunk(**fields)  # type: ignore[arg-type]


def test_a_good_chunk_enters_the_plan_timed_by_our_own_capture(state: RobotState) -> None:
    plan, events = make_plan(state)
    ask(plan, state, 1)
    assert plan.status.in_flight_since == 10.0
    # The server's echo of the capture time is a lie: the plan times the chunk by its own record.
    outcome = plan.accept(answer(1, capture=99.0, received=10.08), now=10.08)
    assert outcome == "accepted"
    assert plan.status.chunks == 1 and plan.status.in_flight_since is None
    (accepted,) = events.of(ChunkAccepted)
    assert isinstance(accepted, ChunkAccepted)
    assert accepted.roundtrip_s == pytest.approx(0.08) and accepted.first
    assert accepted.kept == 4 and accepted.dropped == 2  # actions at 10.00 and 10.05 already past
    assert plan.end_time == pytest.approx(10.25)
    target, plan_end = plan.target_for(10.1)
    assert target is not None and plan_end == pytest.approx(10.25)
    assert [e.status for e in events.of(Answer)] == ["OK"]  # type: ignore[attr-defined]


def test_an_answer_to_a_request_of_an_earlier_stream_is_ignored(state: RobotState) -> None:
    plan, events = make_plan(state)
    ask(plan, state, 1)
    plan.stream_down()
    plan.stream_up()  # a reconnect forgets the captures in flight
    assert plan.accept(answer(1, 10.0, 10.05), now=10.05) == "unknown"
    assert events.seen == [] and plan.end_time is None


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"status": "INVALID", "actions": None, "message": "bad image"}, "invalid_request"),
        ({"status": "ERROR", "actions": None, "message": "CUDA OOM"}, "server_error"),
        ({"status": "SOMETHING_NEW", "actions": None}, "server_error"),  # a status we do not know
        ({"actions": None, "problem": ChunkProblem("non_finite", "action 3 has nan")}, "non_finite"),
        ({"actions": None, "problem": None}, "invalid_chunk"),  # OK without actions
        ({"actions": np.full((6, 7), 1e300)}, "invalid_chunk"),  # finite, but it cannot be planned
    ],
)
def test_a_refused_answer_holds_with_its_kind_and_backs_off(
    state: RobotState, fields: dict[str, object], kind: str
) -> None:
    plan, events = make_plan(state)
    ask(plan, state, 1)
    assert plan.accept(answer(1, 10.0, 10.05, **fields), now=10.05) == "rejected"
    assert plan.why_holding() == kind
    (rejected,) = events.of(ChunkRejected)
    assert isinstance(rejected, ChunkRejected) and rejected.kind == kind
    assert "next request in 0.10 s" in rejected.detail
    # No request during the backoff, then the scheduler's policy decides again (no plan: send).
    assert not plan.wants_observation(10.05 + BACKOFF_S - 0.001)
    assert plan.wants_observation(10.05 + BACKOFF_S + 0.001)


def test_refusals_in_a_row_back_off_exponentially_and_motion_resets_it(state: RobotState) -> None:
    plan, events = make_plan(state)
    now = 10.0
    for request_id in (1, 2, 3):
        ask(plan, state, request_id)
        plan.accept(answer(request_id, 10.0, now, status="ERROR", actions=None), now=now)
    details = [e.detail for e in events.of(ChunkRejected)]  # type: ignore[attr-defined]
    assert ["0.10 s" in details[0], "0.20 s" in details[1], "0.40 s" in details[2]] == [True] * 3
    ask(plan, state, 4)
    assert plan.accept(answer(4, 10.0, 10.01), now=10.01) == "accepted"
    assert plan.why_holding() == "chunk_exhausted"  # the refusal's label is gone with a good chunk
    plan.note_holding(False)  # the arm moves on it
    plan.wants_observation(10.02)  # the scheduler task's next look resets the backoff
    ask(plan, state, 5)
    plan.accept(answer(5, 10.0, 10.03, status="ERROR", actions=None), now=10.03)
    assert "next request in 0.10 s" in events.of(ChunkRejected)[-1].detail  # type: ignore[attr-defined]


def test_a_chunk_with_every_action_past_is_a_deadline_miss(state: RobotState) -> None:
    plan, events = make_plan(state)
    ask(plan, state, 1)
    assert plan.accept(answer(1, 10.0, 10.5), now=10.5) == "deadline_miss"
    assert plan.status.chunks == 0 and len(events.of(DeadlineMiss)) == 1
    # Holding already (labelled late by the loop): the hold is relabelled late, counted there.
    plan.note_holding(True)
    ask(plan, state, 2)
    assert plan.accept(answer(2, 10.0, 10.6), now=10.6) == "deadline_miss"
    assert plan.status.problem == "late" and len(events.of(DeadlineMiss)) == 1


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda plan, state: plan.stream_down(), "stream_down"),
        (lambda plan, state: None, "waiting_for_server"),  # up, no chunk yet
        (lambda plan, state: ask(plan, state, 1), "waiting_for_server"),  # asked, still no chunk
    ],
)
def test_why_holding_before_any_chunk(state: RobotState, setup: object, reason: str) -> None:
    plan, _ = make_plan(state)
    setup(plan, state)  # type: ignore[operator]
    assert plan.why_holding() == reason


def test_a_plan_dropped_as_bad_keeps_its_label_until_the_next_chunk(state: RobotState) -> None:
    plan, _ = make_plan(state)
    ask(plan, state, 1)
    plan.accept(answer(1, 10.0, 10.01), now=10.01)
    plan.clear("trajectory_error")
    plan.note_holding(True)
    assert plan.end_time is None and plan.why_holding() == "trajectory_error"
    ask(plan, state, 2)
    assert plan.why_holding() == "trajectory_error"  # a request in flight does not relabel it
    plan.accept(answer(2, 10.0, 10.02), now=10.02)
    assert plan.why_holding() == "chunk_exhausted"
    plan.clear("stream_down")  # not a bad plan: the watchdog says what it sees
    assert plan.why_holding() == "chunk_exhausted"


def test_a_faulty_plan_backs_the_next_request_off(state: RobotState) -> None:
    plan, _ = make_plan(state)
    plan.faulted(20.0)
    assert not plan.wants_observation(20.0 + BACKOFF_S - 0.001)
    assert plan.wants_observation(20.0 + BACKOFF_S + 0.001)


def test_target_for_names_the_stage_that_raised(state: RobotState) -> None:
    plan, _ = make_plan(state)
    ask(plan, state, 1)
    plan.accept(answer(1, 10.0, 10.0), now=10.0)

    def boom(*_: object) -> None:
        raise RuntimeError("ruckig -101")

    plan._trajectory.sample = boom  # type: ignore[method-assign,union-attr]
    with pytest.raises(PlanFault) as caught:
        plan.target_for(10.1)
    assert caught.value.stage == "trajectory" and "ruckig -101" in repr(caught.value.error)


def test_a_stale_observation_is_published_once_and_fresh_again_once(state: RobotState) -> None:
    plan, events = make_plan(state)
    plan.observation_fresh(10.0)  # fresh all along: nothing to say
    plan.observation_stale(10.1, "camera 'front' frame is 500 ms old (bound 100 ms)")
    plan.observation_stale(10.2, "camera 'front' frame is 600 ms old (bound 100 ms)")
    assert plan.why_holding() == "stale_observation"
    plan.observation_fresh(10.3)
    assert plan.why_holding() == "waiting_for_server"
    assert [type(e) for e in events.seen] == [ObservationStale, ObservationFresh]
    assert events.seen[1].detail == "camera 'front' frame is 600 ms old (bound 100 ms)"  # type: ignore[attr-defined]


def test_a_request_that_cannot_be_built_holds_backs_off_and_is_published_once(state: RobotState) -> None:
    plan, events = make_plan(state)
    plan.sending(10.0)
    plan.request_failed(10.0, ValueError("frame 'front' has 4 channels"))
    plan.request_failed(10.2, ValueError("frame 'front' has 4 channels"))
    assert plan.why_holding() == "invalid_request" and plan.status.in_flight_since is None
    assert len(events.of(RequestFailed)) == 1
    assert not plan.wants_observation(10.2 + 2 * BACKOFF_S - 0.001)  # the second step: 0.2 s


def test_request_inputs_give_the_state_vector_and_the_rest_of_the_plan(state: RobotState) -> None:
    plan, _ = make_plan(state)
    plan.use_state_names(("ee_x", "ee_y", "ee_z", "gripper"))
    vector, prev = plan.request_inputs(10.0, state)
    assert vector.shape == (4,) and prev is None  # no plan yet: nothing to continue
    ask(plan, state, 1)
    plan.accept(answer(1, 10.0, 10.0), now=10.0)
    vector, prev = plan.request_inputs(10.1, state)
    assert vector[:3] == pytest.approx(state.ee.position)
    assert prev is not None and prev.shape[1] == 7 and 1 <= len(prev) <= 4

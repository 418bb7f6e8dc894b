"""Issue 10, kinds 1, 3 and 6 in the control tick: one fault boundary per tick, holds labelled by
their own cause, tick-local holds that keep the plan, and a stale robot state that holds.

Driven tick by tick on the simulated arm (times passed in, no clock, no network)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from robot_agent.action_space import ActionSpace, measured_from_state
from robot_agent.control import ControlLoop
from robot_agent.drivers.sim import SimRobot
from robot_agent.events import EStopLatched, Event, EventBus, Hold, Resume, Tick
from robot_agent.metrics import AgentMetrics
from robot_agent.plan import Plan, StreamStatus
from robot_agent.reasons import FAULT_REASONS, HOLD_REASONS, PLAN_KEEPING_REASONS
from robot_agent.sim.arm import SimArm
from robot_agent.summary import RunStats
from robot_agent.trajectory import Trajectory
from safety import EStop, SafetyConfig, Shield, StepRecord
from safety.types import Decision, Pose
from tests.robot_agent.test_control import feed, make_plan
from tests.utils import poll_until

DT = 0.01  # control period


class Spy(SimRobot):
    """The simulated arm, remembering every command it is given."""

    def __init__(self) -> None:
        super().__init__(SimArm())  # the kinematic sim: fast, no contact
        self.calls: list[str] = []

    def command_ee(self, pose: Pose) -> None:
        self.calls.append("ee")
        super().command_ee(pose)

    def command_gripper(self, opening: float) -> None:
        self.calls.append("gripper")
        super().command_gripper(opening)

    def hold(self) -> None:
        self.calls.append("hold")
        super().hold()

    def emergency_stop(self) -> None:
        self.calls.append("emergency_stop")
        super().emergency_stop()


class SpyRecorder:
    """A recorder on the event bus: the step records, and the hold / resume / e-stop events."""

    name = "recorder"

    def __init__(self) -> None:
        self.steps: list[StepRecord] = []
        self.events: list[tuple[str, str]] = []
        self.stopped: str | None = None

    def on_event(self, event: Event) -> None:
        if isinstance(event, Tick):
            self.step(event.step)
        elif isinstance(event, Hold | Resume | EStopLatched):
            kind = {Hold: "hold", Resume: "resume", EStopLatched: "estop"}[type(event)]
            self.events.append((kind, event.reason))

    def step(self, record: StepRecord) -> None:
        self.steps.append(record)

    def stop(self, reason: str) -> None:
        self.stopped = reason


@dataclasses.dataclass
class Rig:
    loop: ControlLoop
    robot: Spy
    plan: Plan
    stats: RunStats
    shield: Shield
    metrics: AgentMetrics
    recorder: SpyRecorder
    bus: EventBus
    trajectory: Trajectory  # the plan's, as configured (to inject faults into)
    space: ActionSpace
    t0: float  # the sim arm's clock at start: tick times are t0 + k * DT

    @property
    def status(self) -> StreamStatus:
        return self.plan.status

    async def tick(self, k: float, dt: float = DT) -> None:
        """Tick at t0 + k * DT with a state read now and stamped then (fresh)."""
        now = self.t0 + k * DT
        state = await asyncio.to_thread(self.robot.read_state)
        await self.loop.tick(now, dt, dataclasses.replace(state, time_s=now))

    def feed(self, dx: float = 0.0005, n: int = 40, k: float = 0.0, dt_s: float = 0.05) -> None:
        """A good chunk captured and received at tick ``k``, through the plan's intake."""
        now = self.t0 + k * DT
        deltas = np.zeros((n, 7))
        deltas[:, 0] = dx * np.arange(n)
        deltas[:, 6] = 1.0
        feed(self.plan, deltas, capture=now, now=now, dt_s=dt_s)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)  # a thread, as the agent's driver executor


def make_rig(
    *,
    interpolation: str = "linear",
    max_faults: int = 5,
    call_driver: Callable[..., Any] = _call,
    **loop_kw: Any,
) -> Rig:
    robot = Spy()
    robot.connect()
    state = robot.read_state()
    stats = RunStats()
    estop = EStop()
    shield = Shield(SafetyConfig.from_mapping({}), estop=estop)
    shield.reset(measured_from_state(state))
    metrics = AgentMetrics(CollectorRegistry())
    recorder = SpyRecorder()
    bus = EventBus([metrics, stats, recorder])
    plan = make_plan(bus)
    loop = ControlLoop(
        robot=robot, call_driver=call_driver, shield=shield, plan=plan, events=bus, estop=estop,
        rate_hz=1 / DT, max_consecutive_faults=max_faults, **loop_kw,
    )  # fmt: skip
    limits = None
    if interpolation == "ruckig":
        limits = (np.array([0.5] * 3 + [1.5] * 3 + [2.0]), np.array([5.0] * 3 + [15.0] * 3 + [20.0]),
                  np.array([200.0] * 3 + [500.0] * 3 + [1000.0]))  # fmt: skip
    space = ActionSpace("ee_delta", 7, 7, reference=state.ee.quaternion)
    trajectory = Trajectory(interpolation=interpolation, control_dt=DT, ruckig_limits=limits)
    plan.configure(space, trajectory)
    plan.observe(state)
    return Rig(loop, robot, plan, stats, shield, metrics, recorder, bus, trajectory, space, t0=state.time_s)


async def moving(rig: Rig) -> None:
    """First chunk in, two ticks commanding it."""
    rig.feed()
    await rig.tick(1)
    await rig.tick(2)
    assert not rig.loop.holding and rig.robot.calls[-1] in ("ee", "gripper")


class Boom:
    """A callable that raises ``times`` times (forever when None), then calls ``then``."""

    def __init__(self, exc: Exception, times: int | None = None, then: Callable[..., Any] | None = None):
        self.exc, self.left, self.then = exc, times, then

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if self.left is None or self.left > 0:
            if self.left is not None:
                self.left -= 1
            raise self.exc
        assert self.then is not None
        return self.then(*args, **kw)


def inject(rig: Rig, stage: str, times: int | None) -> None:
    """Make ``stage`` of the next tick(s) raise."""
    exc = RuntimeError(f"injected {stage} fault")
    if stage == "trajectory":
        traj = rig.trajectory
        traj.sample = Boom(exc, times, traj.sample)  # type: ignore[method-assign]
    elif stage == "action_space":
        space = rig.space
        space.target_of = Boom(exc, times, space.target_of)  # type: ignore[method-assign]
    elif stage == "shield":
        rig.shield.filter = Boom(exc, times, rig.shield.filter)  # type: ignore[method-assign]
    elif stage == "recorder":
        rig.recorder.step = Boom(exc, times, rig.recorder.step)  # type: ignore[method-assign]
    elif stage == "metrics":
        hist = rig.metrics.control_period_seconds
        hist.observe = Boom(exc, times, hist.observe)  # type: ignore[method-assign]
    else:  # pragma: no cover
        raise AssertionError(stage)


#: Stages that are subscribers of the tick's event, published after the command.
BOOKKEEPING = ("recorder", "metrics")

STAGES = [
    # stage, hold reason, plan kept
    ("trajectory", "trajectory_error", False),  # the interpolator raised (Ruckig's -101)
    ("action_space", "action_space_error", False),  # waypoint -> robot target raised
    ("shield", "shield_error", False),  # the shield itself raised
    ("recorder", "recorder_error", True),  # the recorder raised: recording stops, plan goes on
    ("metrics", "metrics_error", True),  # a metric raised
]


def test_every_fault_reason_is_a_hold_reason() -> None:
    assert set(FAULT_REASONS.values()) <= set(HOLD_REASONS)
    assert set(HOLD_REASONS) >= PLAN_KEEPING_REASONS
    for reason in ("stale_observation", "invalid_request", "stall", "server_error"):
        assert reason in HOLD_REASONS


@pytest.mark.parametrize(("stage", "reason", "keeps_plan"), STAGES)
async def test_a_fault_in_a_stage_holds_with_its_reason(stage: str, reason: str, keeps_plan: bool) -> None:
    rig = make_rig()
    await moving(rig)
    before = len(rig.robot.calls)
    inject(rig, stage, times=1)
    await rig.tick(3)  # must not raise
    assert rig.loop.holding and rig.loop.hold_reason == reason
    if stage in BOOKKEEPING:
        # The subscribers get the tick's event after the command: the hold follows it.
        assert rig.robot.calls[before:] == ["ee", "hold"]
        if stage == "recorder":
            assert rig.recorder.stopped is not None  # told to stop; the loop records no more
            assert rig.recorder not in rig.bus.subscribers
    else:
        assert rig.robot.calls[before:] == ["hold"]
    assert rig.stats.tick_faults == {stage: 1}
    assert rig.stats.holds[reason] == 1
    assert rig.metrics.registry.get_sample_value("vla_agent_hold_total", {"reason": reason}) == 1
    assert (rig.plan.end_time is not None) == keeps_plan
    await rig.tick(4)
    if keeps_plan:
        # The fault is gone: the next normal tick resumes on the same plan, no new chunk needed.
        assert not rig.loop.holding and rig.robot.calls[-1] == "ee"
    else:
        # The plan was dropped as bad: hold (same label) until the next chunk, then move again.
        assert rig.loop.holding and rig.loop.hold_reason == reason and rig.robot.calls[-1] == "hold"
        rig.feed(k=4)
        await rig.tick(5)
        assert not rig.loop.holding and rig.robot.calls[-1] == "ee"
    assert not rig.loop.estopped


@pytest.mark.parametrize(("stage", "reason", "keeps_plan"), STAGES)
async def test_repeated_faults_latch_the_estop(stage: str, reason: str, keeps_plan: bool) -> None:
    rig = make_rig(max_faults=3)
    await moving(rig)
    before = len(rig.robot.calls)
    inject(rig, stage, times=None)
    for k in range(3, 9):
        if rig.loop.estopped:
            break
        if not keeps_plan and rig.plan.end_time is None:
            rig.feed(k=k)  # a rogue server keeps sending chunks that fault
        if stage == "recorder" and rig.recorder not in rig.bus.subscribers:
            # The loop took the failing recorder off the bus: put it back, failing still.
            rig.bus.add(rig.recorder)
        await rig.tick(k)
    assert rig.loop.estopped and rig.robot.estopped
    assert "3 consecutive faulty control ticks" in (rig.stats.estop_reason or "")
    after = rig.robot.calls[before:]
    assert after[-1] == "emergency_stop"
    if stage not in BOOKKEEPING:
        # Only holds after the first fault, then the e-stop. (The subscribers get each tick after
        # its command, so a plan kept through a bookkeeping fault is commanded again before the next.)
        assert set(after) <= {"hold", "emergency_stop"}
    assert sum(rig.stats.tick_faults.values()) == 3


@pytest.mark.parametrize(
    ("method", "calls_after"),
    [
        ("read_state", ["emergency_stop"]),
        ("command_ee", ["emergency_stop"]),  # the failed command itself is not counted: it raised
    ],
)
async def test_a_driver_exception_latches_the_estop(method: str, calls_after: list[str]) -> None:
    rig = make_rig()
    await moving(rig)
    before = len(rig.robot.calls)
    setattr(rig.robot, method, Boom(RuntimeError(f"{method} reflex")))
    now = rig.t0 + 3 * DT
    state = rig.plan.latest_state
    await rig.loop.tick(now, DT, None if method == "read_state" else dataclasses.replace(state, time_s=now))
    assert rig.loop.estopped and rig.loop.hold_reason == "estop"
    assert f"{method} reflex" in (rig.stats.estop_reason or "")
    assert rig.robot.calls[before:] == calls_after


async def test_a_failing_hold_latches_the_estop() -> None:
    rig = make_rig()
    await moving(rig)
    rig.robot.hold = Boom(RuntimeError("hold refused"))  # type: ignore[method-assign]
    before = len(rig.robot.calls)
    rig.status.up = False
    await rig.tick(300)  # the plan (to 1.95 s) is over: the watchdog holds, the hold fails
    assert rig.loop.estopped and "hold refused" in (rig.stats.estop_reason or "")
    assert rig.robot.calls[before:] == ["emergency_stop"]


async def test_an_unusable_state_latches_the_estop() -> None:
    rig = make_rig()
    await moving(rig)
    before = len(rig.robot.calls)
    state = rig.plan.latest_state
    assert state is not None
    broken = dataclasses.replace(state, ee=None, time_s=rig.t0 + 3 * DT)  # a driver bug
    await rig.loop.tick(rig.t0 + 3 * DT, DT, broken)
    assert rig.loop.estopped and "unusable robot state" in (rig.stats.estop_reason or "")
    assert rig.robot.calls[before:] == ["emergency_stop"]


async def test_ruckig_refusing_a_rogue_chunk_holds_instead_of_crashing() -> None:
    """Issue 10, kind 1: interpolation = "ruckig" and a finite ee_delta chunk with x = 1e4 m.
    Ruckig's update returns an error code not in ruckig.Result (ValueError: -101 is not a valid
    Result) and the agent died; now the tick holds (trajectory_error) and a good chunk resumes."""
    rig = make_rig(interpolation="ruckig")
    await moving(rig)
    rig.feed(dx=1e4, n=8, k=3)  # action k moves k * 1e4 m
    k = 3
    while not rig.loop.holding and k < 30:  # Ruckig follows the fade toward it until it refuses
        await rig.tick(k)
        k += 1
    assert rig.loop.holding and rig.loop.hold_reason == "trajectory_error"
    assert rig.stats.tick_faults["trajectory"] == 1 and not rig.loop.estopped
    # Every command sent was a jerk-limited step inside the workspace, then the arm holds.
    state = await asyncio.to_thread(rig.robot.read_state)
    assert state.ee.position[0] < 1.0
    held_at = len(rig.robot.calls)
    for j in range(k, k + 5):
        await rig.tick(j)
    assert rig.robot.calls[held_at:] == [] and rig.loop.hold_reason == "trajectory_error"
    rig.feed(k=k + 5)
    await rig.tick(k + 6)
    assert not rig.loop.holding and rig.robot.calls[-1] in ("ee", "gripper")


async def test_a_stall_holds_keeps_the_plan_and_resumes_on_it() -> None:
    """Issue 10, kind 6: one tick stalled past safety.max_dt_s (0.1 s) held, and the hold dropped
    a plan with 860 ms still valid; the arm then waited a whole round trip."""
    rig = make_rig()
    await moving(rig)  # the plan runs to t0 + 1.95 s
    end = rig.plan.end_time
    await rig.tick(20, dt=0.15)  # the process lost the CPU for 150 ms
    assert rig.loop.holding and rig.loop.hold_reason == "stall"
    assert rig.plan.end_time == end
    await rig.tick(21)
    assert not rig.loop.holding and rig.robot.calls[-1] == "ee"
    assert rig.stats.holds == {"stall": 1} and rig.status.chunks == 1


async def test_a_new_cause_while_holding_relabels_the_hold_and_counts_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = make_rig()
    await moving(rig)
    await rig.tick(3, dt=0.15)
    assert rig.loop.hold_reason == "stall"
    holds_commanded = rig.robot.calls.count("hold")
    rig.status.up = False
    with caplog.at_level(logging.WARNING, logger="robot_agent.control"):
        await rig.tick(500)  # the plan is over and the stream is gone
    assert rig.loop.hold_reason == "stream_down"
    assert rig.stats.holds == {"stall": 1, "stream_down": 1} and rig.stats.hold_relabels == 1
    assert rig.robot.calls.count("hold") == holds_commanded  # the arm already holds
    assert "now for stream_down (was stall)" in caplog.text
    assert rig.recorder.events[-1] == ("hold", "stream_down")
    assert rig.plan.end_time is None  # stream_down drops it


async def test_a_stale_robot_state_holds_and_fresh_ones_resume_on_the_plan() -> None:
    """Issue 10, kind 3 (robot-state half): a state older than three control periods, or one that
    stops advancing, holds with stale_observation; the first fresh one resumes."""
    rig = make_rig()
    await moving(rig)
    state = rig.plan.latest_state
    assert state is not None
    now = rig.t0 + 3 * DT
    await rig.loop.tick(now, DT, dataclasses.replace(state, time_s=now - 0.035))  # 35 ms > 30 ms
    assert rig.loop.holding and rig.loop.hold_reason == "stale_observation"
    assert rig.plan.end_time is not None
    await rig.tick(4)
    assert not rig.loop.holding and rig.robot.calls[-1] == "ee"
    # A state that stops advancing: fine for three periods, stale after.
    frozen = dataclasses.replace(state, time_s=rig.t0 + 5 * DT)
    for k in range(5, 8):
        await rig.loop.tick(rig.t0 + k * DT, DT, frozen)
        assert not rig.loop.holding, k
    await rig.loop.tick(rig.t0 + 9 * DT, DT, frozen)  # 40 ms without a new reading
    assert rig.loop.hold_reason == "stale_observation"
    await rig.tick(10)
    assert not rig.loop.holding and rig.stats.holds == {"stale_observation": 2}


async def test_the_state_age_bound_is_configurable() -> None:
    rig = make_rig(max_state_age_s=0.2)
    await moving(rig)
    state = rig.plan.latest_state
    assert state is not None
    now = rig.t0 + 3 * DT
    await rig.loop.tick(now, DT, dataclasses.replace(state, time_s=now - 0.15))
    assert not rig.loop.holding
    await rig.loop.tick(now + DT, DT, dataclasses.replace(state, time_s=now - 0.25))
    assert rig.loop.hold_reason == "stale_observation"


async def test_the_hold_fraction_counts_held_ticks_after_the_first_chunk() -> None:
    rig = make_rig()
    await rig.tick(0)  # waiting for the server: before the first chunk, not counted
    await moving(rig)
    await rig.tick(3, dt=0.15)  # one stalled tick held
    for k in range(4, 10):
        await rig.tick(k)
    assert rig.stats.ticks_after_first_chunk == 9
    assert rig.stats.hold_ticks_after_first_chunk == {"stall": 1}
    assert rig.stats.hold_fraction == pytest.approx(1 / 9)
    assert rig.stats.to_dict()["hold_fraction_after_first_chunk"] == pytest.approx(1 / 9)


async def test_a_dead_driver_thread_latches_the_estop_and_the_loop_keeps_its_pace() -> None:
    async def dead(fn: Callable[..., Any], *args: Any) -> Any:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    rig = make_rig(call_driver=dead)
    stopping = asyncio.Event()
    start = time.monotonic()
    task = asyncio.create_task(rig.loop.run(stopping))
    await poll_until(lambda: rig.stats.ticks >= 10, timeout=5)
    elapsed = time.monotonic() - start
    stopping.set()
    await task
    assert rig.loop.estopped and "cannot schedule" in (rig.stats.estop_reason or "")
    # Paced on its deadlines, not spinning: ten ticks take at least nine periods.
    assert elapsed >= 9 * DT


async def test_one_refusal_by_the_shield_keeps_the_plan_a_second_in_a_row_drops_it() -> None:
    rig = make_rig()
    await moving(rig)
    real = rig.shield.filter
    refusals = [2]

    def refusing(*args: Any) -> Decision:
        decision = real(*args)
        if refusals[0] > 0:
            refusals[0] -= 1
            return dataclasses.replace(decision, hold=True, fired=("tracking",))
        return decision

    rig.shield.filter = refusing  # type: ignore[method-assign]
    refusals[0] = 1
    await rig.tick(3)  # refused once: a transient refusal
    assert rig.loop.hold_reason == "safety" and rig.plan.end_time is not None
    await rig.tick(4)
    assert not rig.loop.holding and rig.robot.calls[-1] == "ee"  # resumed on the same plan
    refusals[0] = 2
    await rig.tick(5)
    await rig.tick(6)  # refused again: not transient, the plan goes
    assert rig.loop.hold_reason == "safety" and rig.plan.end_time is None
    await rig.tick(7)
    assert rig.loop.hold_reason == "safety"  # still labelled by its cause, not chunk_exhausted
    assert rig.stats.holds == {"safety": 2} and rig.stats.hold_relabels == 0
    rig.feed(k=7)
    await rig.tick(8)
    assert not rig.loop.holding and rig.robot.calls[-1] == "ee"

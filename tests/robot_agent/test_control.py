"""The control tick and its watchdog, driven tick by tick on the simulated arm (no clock, no network)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from robot_agent.action_space import ActionSpace, measured_from_state
from robot_agent.config import SchedulerConfig
from robot_agent.control import ControlLoop
from robot_agent.drivers.sim import SimRobot
from robot_agent.events import EventBus, Subscriber
from robot_agent.metrics import AgentMetrics
from robot_agent.plan import Plan
from robot_agent.policy_client import Backoff, Chunk, ChunkProblem
from robot_agent.scheduler import Scheduler
from robot_agent.sim.arm import SimArm
from robot_agent.summary import RunStats
from robot_agent.trajectory import Trajectory
from safety import EStop, SafetyConfig, Shield
from safety.types import Pose


class Spy(SimRobot):
    """The simulated arm, remembering every command."""

    def __init__(self) -> None:
        super().__init__(SimArm())  # the kinematic sim: fast, no contact
        self.calls: list[tuple[str, Any]] = []

    def command_ee(self, pose: Pose) -> None:
        self.calls.append(("ee", pose))
        super().command_ee(pose)

    def hold(self) -> None:
        self.calls.append(("hold", None))
        super().hold()


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)  # a thread, as the agent's driver executor


def make_plan(events: EventBus) -> Plan:
    """A plan with the default scheduler and a backoff without jitter, its stream up."""
    plan = Plan(
        events=events,
        scheduler=Scheduler(SchedulerConfig(), request_timeout_s=0.5),
        backoff=Backoff(0.1, 2.0, 1.0, 0.0),
    )
    plan.stream_up()
    return plan


def make_loop(
    *,
    metrics: AgentMetrics | None = None,
    estop: EStop | None = None,
    subscribers: tuple[Subscriber, ...] = (),
) -> tuple[ControlLoop, Spy, Plan, RunStats]:
    robot = Spy()
    robot.connect()
    state = robot.read_state()
    stats = RunStats()
    events = EventBus([metrics or AgentMetrics(CollectorRegistry()), stats, *subscribers])
    estop = estop or EStop()
    shield = Shield(SafetyConfig.from_mapping({}), estop=estop)
    plan = make_plan(events)
    loop = ControlLoop(
        robot=robot, call_driver=_call, shield=shield, plan=plan, events=events, estop=estop, rate_hz=100.0,
    )  # fmt: skip
    shield.reset(measured_from_state(state))
    plan.configure(
        ActionSpace("ee_delta", 7, 7, reference=state.ee.quaternion),
        Trajectory(interpolation="linear", control_dt=0.01),
    )
    plan.observe(state)
    return loop, robot, plan, stats


def feed(plan: Plan, deltas: np.ndarray, capture: float, now: float, dt_s: float = 0.05) -> None:
    """A good chunk through the plan's intake, as the stream task hands it: asked for at
    ``capture`` (the newest state, captured then), answered at ``now``."""
    state = plan.latest_state
    assert state is not None
    request_id = plan.status.chunks + 1
    plan.sending(capture)
    plan.sent(request_id, dataclasses.replace(state, time_s=capture))
    answer = Chunk(
        request_id=request_id, status="OK", message="", actions=deltas, dt_s=dt_s,
        capture_time_s=capture, received_s=now, server_total_ms=1.0,
    )  # fmt: skip
    assert plan.accept(answer, now) == "accepted"
    assert plan.status.in_flight_since is None


def refuse(plan: Plan, problem: ChunkProblem) -> None:
    """An answer the policy client found ``problem`` with, through the plan's intake."""
    state = plan.latest_state
    assert state is not None
    request_id = plan.status.chunks + 100
    plan.sending(state.time_s)
    plan.sent(request_id, state)
    answer = Chunk(
        request_id=request_id, status="OK", message="", actions=None, dt_s=0.05,
        capture_time_s=state.time_s, received_s=state.time_s, server_total_ms=1.0, problem=problem,
    )  # fmt: skip
    assert plan.accept(answer, state.time_s) == "rejected"


def chunk(dx: float, n: int = 6) -> np.ndarray:
    out = np.zeros((n, 7))
    out[:, 0] = dx * np.arange(n)
    out[:, 6] = 1.0
    return out


async def test_holds_until_the_first_chunk_then_follows_it() -> None:
    loop, robot, plan, stats = make_loop()
    await loop.tick(0.0, 0.01)
    assert loop.holding and loop.hold_reason == "waiting_for_server"
    feed(plan, chunk(0.001), capture=0.0, now=0.005)
    await loop.tick(0.01, 0.01)
    assert not loop.holding
    assert robot.calls[-1][0] == "ee"
    assert stats.holds == {"waiting_for_server": 1}


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        (lambda plan: None, "chunk_exhausted"),  # nothing asked for in time
        (lambda plan: plan.sending(0.06), "late"),  # asked, not answered: deadline miss
        (lambda plan: plan.stream_down(), "stream_down"),
        (lambda plan: refuse(plan, ChunkProblem("non_finite", "action 1 is nan")), "non_finite"),  # refused
    ],
)
async def test_the_watchdog_names_why_it_holds(setup: Callable[[Plan], None], reason: str) -> None:
    loop, robot, plan, stats = make_loop()
    feed(plan, chunk(0.0, n=3), capture=0.0, now=0.0)  # valid until 0.10
    await loop.tick(0.05, 0.01)
    assert not loop.holding
    setup(plan)
    await loop.tick(0.11, 0.01)
    assert loop.holding and loop.hold_reason == reason
    assert robot.calls[-1] == ("hold", None)
    assert stats.holds[reason] == 1 and stats.holds_after_first_chunk == 1
    assert stats.deadline_misses == (1 if reason == "late" else 0)
    await loop.tick(0.12, 0.01)  # holding on: counted once, hold commanded once
    assert stats.holds[reason] == 1 and [c for c, _ in robot.calls].count("hold") == 1


async def test_leaving_hold_restarts_from_the_held_pose_without_a_jump() -> None:
    loop, robot, plan, _ = make_loop()
    await loop.tick(0.0, 0.01)  # hold
    held = plan.latest_state.ee.position.copy()  # type: ignore[union-attr]
    # The new chunk starts 5 cm away from where the arm is (its capture pose was elsewhere).
    deltas = chunk(0.0)
    deltas[:, 0] = 0.05
    feed(plan, deltas, capture=0.0, now=0.005)
    await loop.tick(0.01, 0.01)
    first = robot.calls[-1][1].position
    assert np.linalg.norm(first - held) < 0.005  # one tick of travel toward it, not a 5 cm step


async def test_a_non_finite_target_never_reaches_the_driver() -> None:
    loop, robot, plan, stats = make_loop()
    await loop.tick(0.0, 0.01)
    bad = chunk(0.001)
    bad[2:, 1] = np.nan
    feed(plan, bad, capture=0.0, now=0.005)
    for k in range(1, 12):
        await loop.tick(0.01 * k, 0.01)
    sent = [p for c, p in robot.calls if c == "ee"]
    assert all(np.isfinite(p.position).all() and np.isfinite(p.quaternion).all() for p in sent)
    assert loop.holding and loop.hold_reason == "non_finite"
    assert stats.safety_interventions["non_finite"] >= 1


async def test_a_driver_exception_latches_the_estop_once() -> None:
    loop, robot, plan, stats = make_loop()
    feed(plan, chunk(0.001), capture=0.0, now=0.0)

    def broken(pose: Pose) -> None:
        raise RuntimeError("reflex")

    robot.command_ee = broken  # type: ignore[method-assign]
    await loop.tick(0.01, 0.01)
    await loop.tick(0.02, 0.01)
    assert loop.estopped and robot.estopped
    assert stats.estops == 1 and "reflex" in (stats.estop_reason or "")


async def test_run_keeps_drift_free_deadlines() -> None:
    loop, _, _, stats = make_loop()
    stopping = asyncio.Event()
    task = asyncio.create_task(loop.run(stopping))
    async with asyncio.timeout(5):
        while stats.ticks < 30:
            await asyncio.sleep(0.01)
    stopping.set()
    await task
    periods = stats.periods.values()
    # Tick k starts at t0 + k*period: the mean period is the nominal one whatever each tick costs.
    assert abs(periods.mean() - 0.01) < 0.002 + stats.overruns * 0.01 / max(len(periods), 1)

"""The control loop says once when it cannot keep its rate (``--rate 5000`` used to run with 93 %
of ticks overrunning and no word)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from robot_agent.control import ControlLoop
from robot_agent.drivers.base import RobotState
from robot_agent.drivers.sim import SimRobot
from robot_agent.events import EventBus
from robot_agent.metrics import AgentMetrics
from robot_agent.sim.arm import SimArm
from robot_agent.summary import RunStats
from safety import EStop, SafetyConfig, Shield
from tests.robot_agent.test_control import make_plan
from tests.utils import poll_until


class SlowRobot(SimRobot):
    """The simulated arm, taking ``read_s`` to read its state (a slow bus, a busy CPU)."""

    def __init__(self, read_s: float) -> None:
        super().__init__(SimArm())  # the kinematic sim: fast, no contact
        self.read_s = read_s

    def read_state(self) -> RobotState:
        time.sleep(self.read_s)
        return super().read_state()


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def make_loop(robot: SimRobot, rate_hz: float, stats: RunStats) -> ControlLoop:
    robot.connect()
    events = EventBus([AgentMetrics(CollectorRegistry()), stats])
    plan = make_plan(events)
    plan.stream_down()  # no server: the loop holds, waiting
    estop = EStop()
    return ControlLoop(
        robot=robot, call_driver=_call, shield=Shield(SafetyConfig.from_mapping({}), estop=estop),
        plan=plan, events=events, estop=estop, rate_hz=rate_hz, rate_window_s=0.3,
    )  # fmt: skip


async def _run_until(loop: ControlLoop, done: Callable[[], bool]) -> None:
    stopping = asyncio.Event()
    task = asyncio.create_task(loop.run(stopping))
    try:
        await poll_until(lambda: done() or task.done(), timeout=20)
    finally:
        stopping.set()
        async with asyncio.timeout(5):
            await task


async def test_a_rate_the_driver_cannot_keep_is_warned_once_with_the_rate_achieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="robot_agent.control")
    stats = RunStats()
    loop = make_loop(SlowRobot(read_s=0.005), rate_hz=1000.0, stats=stats)  # a tick takes >= 5 ms
    await _run_until(loop, lambda: loop.rate_warned and stats.ticks >= 300)
    warnings = [r.getMessage() for r in caplog.records if "cannot keep" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, not every window
    assert warnings[0].startswith("The control loop cannot keep 1000 Hz: ")
    achieved = float(warnings[0].split("it ran at ")[1].split(" Hz")[0])
    assert 20 <= achieved <= 200  # at most 1 / 5 ms, far below the 1000 asked
    assert "Lower control.rate_hz (--rate)" in warnings[0]
    assert stats.overruns > 0.25 * stats.ticks


async def test_a_loop_that_keeps_its_rate_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="robot_agent.control")
    stats = RunStats()
    loop = make_loop(SimRobot(SimArm()), rate_hz=50.0, stats=stats)
    await _run_until(loop, lambda: stats.ticks >= 60)  # two windows of 0.3 s, at least 50 ticks each
    assert not loop.rate_warned
    assert not [r for r in caplog.records if "cannot keep" in r.getMessage()]

"""The stream task (stream.py): connect with backoff, check the spec, feed every answer to the
plan, reconnect when the stream breaks; fatal errors end it. Driven by a scripted fake stream."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from robot_agent.action_space import ActionSpace
from robot_agent.config import SchedulerConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import NotAPolicyServer, ServerUnavailable, SpecMismatch
from robot_agent.events import Connected, EventBus, Reconnected, StreamDown, Waiting
from robot_agent.plan import Plan
from robot_agent.policy_client import Backoff, Chunk
from robot_agent.scheduler import Scheduler
from robot_agent.sim.arm import SimArm
from robot_agent.stream import StreamTask
from robot_agent.trajectory import Trajectory
from tests.robot_agent._events import Events
from vla.v1 import policy_pb2 as pb

SPEC = pb.PolicySpec(
    name="still", version="1", action_space="ee_delta", action_dim=7, chunk_length=6, dt_s=0.05
)


class Script:
    """A policy stream that plays ``steps``: for connect, a spec or an exception; for receive, a
    chunk or an exception. ``done`` is set when the script is over (the task then waits)."""

    def __init__(self, connects: list[Any], receives: list[Any]) -> None:
        self.connects, self.receives = connects, receives
        self.closed = 0
        self.done = asyncio.Event()

    async def _next(self, queue: list[Any]) -> Any:
        if not queue:
            self.done.set()
            await asyncio.Event().wait()  # nothing more: block like an idle stream
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    async def connect(self) -> pb.PolicySpec:
        result: pb.PolicySpec = await self._next(self.connects)
        return result

    async def receive(self) -> Chunk:
        result: Chunk = await self._next(self.receives)
        return result

    async def close(self) -> None:
        self.closed += 1


def rig(script: Script) -> tuple[StreamTask, Plan, Events, list[pb.PolicySpec], asyncio.Event]:
    robot = SimRobot(SimArm())  # the kinematic sim: fast, no contact
    robot.connect()
    state = robot.read_state()
    events = Events()
    bus = EventBus([events])
    plan = Plan(
        events=bus,
        scheduler=Scheduler(SchedulerConfig(), request_timeout_s=0.5),
        backoff=Backoff(0.1, 2.0, 5.0, 0.0),
    )
    plan.configure(ActionSpace("ee_delta", 7, 7, reference=state.ee.quaternion), Trajectory(control_dt=0.01))
    plan.observe(state)
    specs: list[pb.PolicySpec] = []

    async def accept_spec(spec: pb.PolicySpec) -> None:
        if spec.name == "wrong":
            raise SpecMismatch("policy at test: state entry 'tactile' is not one this robot can fill")
        specs.append(spec)

    def identify(spec: pb.PolicySpec) -> Mapping[str, Any]:
        return {"name": spec.name, "version": spec.version}

    connected = asyncio.Event()
    task = StreamTask(
        client=script, plan=plan, events=bus, address="127.0.0.1:50051",
        backoff=Backoff(0.001, 2.0, 0.01, 0.0), accept_spec=accept_spec, identify=identify,
        connected=connected,
    )  # fmt: skip
    return task, plan, events, specs, connected


async def run_until_done(task: StreamTask, script: Script) -> None:
    running = asyncio.create_task(task.run())
    try:
        async with asyncio.timeout(5):
            await script.done.wait()
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_waits_for_the_server_connects_and_feeds_the_plan() -> None:
    script = Script([ServerUnavailable("connection refused")] * 2 + [SPEC], receives=[])
    task, plan, events, specs, connected = rig(script)
    robot_state = plan.latest_state
    assert robot_state is not None
    plan.sent(1, dataclasses.replace(robot_state, time_s=0.0))  # an answer of the old stream...
    actions = np.zeros((6, 7))
    actions[:, 6] = 1.0
    script.receives.append(Chunk(1, "OK", "", actions, 0.05, 0.0, 0.01, 1.0))
    await run_until_done(task, script)
    waits = [e for e in events.seen if isinstance(e, Waiting)]
    assert [w.attempt for w in waits] == [1, 2] and "connection refused" in waits[0].detail
    (conn,) = [e for e in events.seen if isinstance(e, Connected)]
    assert conn.address == "127.0.0.1:50051" and conn.policy == {"name": "still", "version": "1"}
    assert specs == [SPEC] and connected.is_set() and plan.status.up
    assert plan.status.chunks == 0  # ...is ignored: a new stream forgets the captures in flight


async def test_a_broken_stream_reconnects_and_says_so() -> None:
    script = Script([SPEC, SPEC], receives=[ServerUnavailable("stream reset")])
    task, plan, events, specs, _ = rig(script)
    await run_until_done(task, script)
    kinds = [type(e) for e in events.seen]
    assert kinds == [Connected, StreamDown, Reconnected]
    assert [e.attempt for e in events.seen if isinstance(e, Reconnected)] == [1]
    assert script.closed == 1 and len(specs) == 2 and plan.status.up and plan.status.ever_up


@pytest.mark.parametrize(
    ("connects", "error"),
    [
        ([NotAPolicyServer("an HTTP server")], NotAPolicyServer),  # waiting will not fix it
        ([pb.PolicySpec(name="wrong")], SpecMismatch),  # the spec does not fit the robot
    ],
)
async def test_what_waiting_cannot_fix_ends_the_task(connects: list[Any], error: type[Exception]) -> None:
    task, plan, _, _, connected = rig(Script(connects, receives=[]))
    with pytest.raises(error):
        async with asyncio.timeout(5):
            await task.run()
    assert not connected.is_set() and not plan.status.up

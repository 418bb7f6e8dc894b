"""The scheduler task (sender.py): woken by control ticks, it sends what the plan asks for, and
nothing when the observation is stale, the e-stop latched or the request cannot be built. Driven
with a fake request channel that records what it is handed; ticks are set by the test."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import numpy as np
import pytest

from robot_agent.action_space import ActionSpace
from robot_agent.cameras.base import Frame
from robot_agent.config import SchedulerConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import ServerUnavailable, SpecMismatch
from robot_agent.events import EventBus, ObservationFresh, ObservationStale, RequestFailed, RequestSent
from robot_agent.plan import Plan
from robot_agent.policy_client import Backoff
from robot_agent.scheduler import Scheduler
from robot_agent.sender import ObservationSender, RequestShape
from robot_agent.sim.arm import SimArm
from robot_agent.trajectory import Trajectory
from safety import EStop
from tests.robot_agent._events import Events


class Channel:
    """Records every request; ``fail_build`` / ``fail_send``: what building / writing raises."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.built = asyncio.Event()
        self.fail_build: Exception | None = None
        self.fail_send: Exception | None = None
        self._next_id = 0

    def build_request(self, frames: Mapping[str, Frame | None], state: np.ndarray, instruction: str,
                      capture_time_s: float, prev_actions: np.ndarray | None,
                      inference_delay_steps: int) -> dict[str, Any]:  # fmt: skip
        if self.fail_build is not None:
            raise self.fail_build
        return {"frames": dict(frames), "state": state, "instruction": instruction,
                "capture_time_s": capture_time_s, "prev_actions": prev_actions}  # fmt: skip

    def stamp(self, request: dict[str, Any]) -> int:
        self._next_id += 1
        request["id"] = self._next_id
        return self._next_id

    async def send(self, request: dict[str, Any]) -> None:
        if self.fail_send is not None:
            raise self.fail_send
        self.sent.append(request)


class Frames:
    def __init__(self) -> None:
        self.frames: dict[str, Frame | None] = {"front": None}

    def latest(self) -> Mapping[str, Frame | None]:
        return self.frames

    def fresh(self, age_s: float = 0.0) -> None:
        self.frames["front"] = Frame(rgb=np.zeros((4, 4, 3), np.uint8), time_s=time.monotonic() - age_s)


class Ticks(asyncio.Event):
    """The control loop's tick event; ``idle`` is set whenever the task waits for the next tick
    (it has done all it does with the last one)."""

    def __init__(self) -> None:
        super().__init__()
        self.idle = asyncio.Event()

    async def wait(self) -> bool:
        self.idle.set()
        return await super().wait()


@dataclasses.dataclass
class Rig:
    sender: ObservationSender
    plan: Plan
    channel: Channel
    frames: Frames
    ticks: Ticks
    estop: EStop
    events: Events
    robot: SimRobot

    def observe(self) -> None:
        """A fresh robot state, as the control loop hands it to the plan each tick."""
        self.plan.observe(dataclasses.replace(self.robot.read_state(), time_s=time.monotonic()))

    async def tick(self) -> None:
        """One control tick; returns once the task has done what it does with it."""
        self.observe()
        async with asyncio.timeout(5):
            await self.ticks.idle.wait()  # waiting for a tick
            self.ticks.idle.clear()
            self.ticks.set()
            await self.ticks.idle.wait()  # and waiting for the next one


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    robot = SimRobot(SimArm())  # the kinematic sim: fast, no contact
    robot.connect()
    events = Events()
    bus = EventBus([events])
    scheduler = Scheduler(SchedulerConfig(), request_timeout_s=0.5)
    plan = Plan(events=bus, scheduler=scheduler, backoff=Backoff(0.2, 2.0, 5.0, 0.0))
    state = robot.read_state()
    plan.configure(ActionSpace("ee_delta", 7, 7, reference=state.ee.quaternion), Trajectory(control_dt=0.01))
    plan.use_state_names(("ee_x", "ee_y", "ee_z", "gripper"))
    plan.stream_up()
    channel, frames, ticks, estop = Channel(), Frames(), Ticks(), EStop()
    sender = ObservationSender(
        plan=plan, scheduler=scheduler, client=channel, sensors=frames, ticks=ticks, estop=estop,
        events=bus, instruction="stack the cubes", state_bound_s=0.5,
    )  # fmt: skip
    sender.shape = RequestShape(dt_s=0.05, frame_age_bounds={"front": 0.1})
    task = asyncio.create_task(sender.run())
    yield Rig(sender, plan, channel, frames, ticks, estop, events, robot)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_sends_the_observation_the_plan_asks_for_once_in_flight(rig: Rig) -> None:
    rig.frames.fresh()
    await rig.tick()
    assert len(rig.channel.sent) == 1
    request = rig.channel.sent[0]
    assert request["instruction"] == "stack the cubes" and request["state"].shape == (4,)
    assert request["prev_actions"] is None  # no plan yet
    assert rig.plan.status.in_flight_since is not None
    assert [type(e) for e in rig.events.seen] == [RequestSent]
    await rig.tick()  # one request in flight at a time
    assert len(rig.channel.sent) == 1


async def test_nothing_is_sent_before_a_camera_has_a_frame_or_after_the_estop(rig: Rig) -> None:
    await rig.tick()  # no frame yet
    rig.estop.trigger("operator")
    rig.frames.fresh()
    await rig.tick()
    assert rig.channel.sent == []


async def test_a_stale_frame_holds_the_request_back_until_a_fresh_one(rig: Rig) -> None:
    rig.frames.fresh(age_s=0.5)  # older than its 100 ms bound
    await rig.tick()
    await rig.tick()
    assert rig.channel.sent == [] and rig.plan.why_holding() == "stale_observation"
    stale = [e for e in rig.events.seen if isinstance(e, ObservationStale)]
    assert len(stale) == 1 and "camera 'front' frame is" in stale[0].detail
    rig.frames.fresh()
    await rig.tick()
    assert len(rig.channel.sent) == 1
    assert any(isinstance(e, ObservationFresh) for e in rig.events.seen)


async def test_a_request_that_cannot_be_built_backs_off_and_the_task_goes_on(rig: Rig) -> None:
    rig.frames.fresh()
    rig.channel.fail_build = ValueError("frame has 4 channels")
    await rig.tick()
    failed_at = time.monotonic()
    assert rig.plan.why_holding() == "invalid_request" and rig.plan.status.in_flight_since is None
    assert [type(e) for e in rig.events.seen] == [RequestFailed]
    rig.channel.fail_build = None
    await rig.tick()  # within the 0.2 s backoff: nothing
    assert rig.channel.sent == []
    async with asyncio.timeout(5):  # ticks at about 100 Hz until the backoff is over
        while not rig.channel.sent:
            rig.frames.fresh()
            await rig.tick()
            await asyncio.sleep(0.01)
    assert len(rig.channel.sent) == 1 and time.monotonic() - failed_at >= 0.19  # the 0.2 s backoff


async def test_a_broken_stream_leaves_nothing_in_flight(rig: Rig) -> None:
    rig.frames.fresh()
    rig.channel.fail_send = ServerUnavailable("stream closed")
    await rig.tick()
    assert rig.channel.sent == [] and rig.plan.status.in_flight_since is None


async def test_a_request_too_big_for_the_server_ends_the_task() -> None:
    robot = SimRobot(SimArm())  # the kinematic sim: fast, no contact
    robot.connect()
    bus = EventBus([])
    scheduler = Scheduler(SchedulerConfig(), request_timeout_s=0.5)
    plan = Plan(events=bus, scheduler=scheduler, backoff=Backoff(0.2, 2.0, 5.0, 0.0))
    state = dataclasses.replace(robot.read_state(), time_s=time.monotonic())
    plan.configure(ActionSpace("ee_delta", 7, 7, reference=state.ee.quaternion), Trajectory(control_dt=0.01))
    plan.observe(state)
    plan.stream_up()
    channel, ticks = Channel(), asyncio.Event()
    channel.fail_send = SpecMismatch("request is 5 MB, the server takes 4 MB")
    sender = ObservationSender(
        plan=plan, scheduler=scheduler, client=channel, sensors=Frames(), ticks=ticks, estop=EStop(),
        events=bus, instruction="", state_bound_s=0.5,
    )  # fmt: skip
    sender.shape = RequestShape(dt_s=0.05)  # no camera
    ticks.set()
    with pytest.raises(SpecMismatch):
        async with asyncio.timeout(5):
            await sender.run()

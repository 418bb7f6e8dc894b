"""The scheduler task: at each control tick, decide whether to send the next observation, and send it.

Woken by every control tick (the tick's ``tick_event``), it asks the plan whether an observation
is due (:meth:`Plan.wants_observation`: stream up, no backoff running, and the
:class:`~robot_agent.scheduler.Scheduler`'s policy), checks that every part of the observation is
fresh, builds the request off the event loop (encoding frames is CPU work) with the plan's state
vector and not-yet-executed actions, and writes it. Nothing is sent while the e-stop is latched.

Stale sensors: a frame older than its camera's bound (``cameras.NAME.max_age_ms``, default three
frame periods) or a robot state older than the request budget means a sensor stopped
delivering: nothing is sent, so the plan in hand (computed on fresh data) runs out and the arm
holds with ``stale_observation`` (:meth:`Plan.observation_stale`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from robot_agent.cameras.base import Frame
from robot_agent.drivers.base import RobotState
from robot_agent.errors import AgentError, SpecMismatch
from robot_agent.events import EventBus, RequestSent
from robot_agent.plan import Plan
from robot_agent.scheduler import Scheduler
from safety import EStop
from vla.v1 import policy_pb2 as pb

__all__ = ["FrameSource", "ObservationSender", "RequestChannel", "RequestShape"]

logger = logging.getLogger(__name__)


class FrameSource(Protocol):
    """The cameras' newest frames (``cameras.capture.Sensors``)."""

    def latest(self) -> Mapping[str, Frame | None]: ...


class RequestChannel(Protocol):
    """The sending half of the policy client, as the scheduler task uses it."""

    def build_request(
        self,
        frames: Mapping[str, Frame | None],
        state: np.ndarray,
        instruction: str,
        capture_time_s: float,
        prev_actions: np.ndarray | None,
        inference_delay_steps: int,
    ) -> pb.PredictRequest:
        """The request (CPU work: run it off the event loop); raises on data it cannot encode."""
        ...

    def stamp(self, request: pb.PredictRequest) -> int:
        """Give ``request`` the next request id, returned."""
        ...

    async def send(self, request: pb.PredictRequest) -> None:
        """Write it; raises :class:`AgentError` when the stream is gone."""
        ...


@dataclass(frozen=True)
class RequestShape:
    """What the policy's spec asks of each observation: its step ``dt_s`` (seconds) and, for
    each camera it reads, the oldest frame still usable (seconds)."""

    dt_s: float
    frame_age_bounds: Mapping[str, float] = field(default_factory=dict)


class ObservationSender:
    """The scheduler task over ``plan`` (see the module docstring). ``shape`` is set by the
    agent once a spec is accepted (nothing is sent before); ``state_bound_s``: a robot state
    older than this is stale (the request budget)."""

    def __init__(
        self,
        *,
        plan: Plan,
        scheduler: Scheduler,
        client: RequestChannel,
        sensors: FrameSource,
        ticks: asyncio.Event,
        estop: EStop,
        events: EventBus,
        instruction: str,
        state_bound_s: float,
    ) -> None:
        self.shape: RequestShape | None = None
        self._plan = plan
        self._scheduler = scheduler
        self._client = client
        self._sensors = sensors
        self._ticks = ticks
        self._estop = estop
        self._events = events
        self._instruction = instruction
        self._state_bound = state_bound_s

    async def run(self) -> None:
        """Until cancelled; raises :class:`SpecMismatch` when no request can fit the server's limits."""
        plan, client = self._plan, self._client
        while True:
            await self._ticks.wait()
            self._ticks.clear()
            state, shape = plan.latest_state, self.shape
            if shape is None or state is None or self._estop.active:
                continue
            now = time.monotonic()
            if not plan.wants_observation(now):
                continue
            frames = self._sensors.latest()
            if any(frames.get(name) is None for name in shape.frame_age_bounds):
                continue
            problem = self._staleness(now, state, frames, shape)
            if problem is not None:
                plan.observation_stale(now, problem)
                continue
            plan.observation_fresh(now)
            delay_steps = self._scheduler.delay_steps(shape.dt_s)
            plan.sending(now)
            try:
                vector, prev_actions = plan.request_inputs(now, state)
                request = await asyncio.to_thread(
                    client.build_request,
                    frames,
                    vector,
                    self._instruction,
                    state.time_s,
                    prev_actions,
                    delay_steps,
                )
                request_id = client.stamp(request)
                plan.sent(request_id, state)  # before the write: the answer may beat it back
                self._events.publish_quietly(RequestSent(now, request_id, delay_steps))
                await client.send(request)
            except AgentError as exc:
                if isinstance(exc, SpecMismatch):  # no request can fit the server's limits: fatal
                    raise
                logger.debug("Sending an observation failed: %s", exc)
                plan.send_failed()
            except Exception as exc:
                # Building the request failed on this agent's own data: hold, back off, go on.
                plan.request_failed(time.monotonic(), exc)

    def _staleness(
        self, now: float, state: RobotState, frames: Mapping[str, Frame | None], shape: RequestShape
    ) -> str | None:
        """Why the observation is too old to act on (the robot state, or the first camera whose
        frame is past its bound), or None when every part is fresh."""
        bound = self._state_bound
        if now - state.time_s > bound:
            return f"robot state is {1000 * (now - state.time_s):.0f} ms old (bound {1000 * bound:.0f} ms)"
        for name, frame_bound in shape.frame_age_bounds.items():
            frame = frames.get(name)
            age = now - frame.time_s if frame is not None else math.inf
            if age > frame_bound:
                return f"camera {name!r} frame is {1000 * age:.0f} ms old (bound {1000 * frame_bound:.0f} ms)"
        return None

"""The stream task: keep one Predict stream to the inference server open, and feed the plan.

Connect, retrying with backoff (exponential, capped, jittered; reset once connected) while the
server is away; check the spec it serves (the agent's ``accept_spec``: a mismatch ends the run,
as does a peer that is no policy server, since waiting would fix neither); then hand every
answer to :meth:`Plan.accept` until the stream breaks, and start again. The arm holds meanwhile
(``waiting_for_server``, then ``stream_down``: the plan's status says which). Published:
:class:`Waiting`, :class:`Connected`, :class:`Reconnected`, :class:`StreamDown`.

The stream itself is anything with the three calls of :class:`PolicyStream`
(``policy_client.PolicyClient``, or its ``DelayedClient`` wrapper).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from robot_agent.errors import AgentError, NotAPolicyServer, SpecMismatch
from robot_agent.events import Connected, EventBus, Reconnected, StreamDown, Waiting
from robot_agent.plan import Plan
from robot_agent.policy_client import Backoff, Chunk
from vla.v1 import policy_pb2 as pb

__all__ = ["PolicyStream", "StreamTask"]

logger = logging.getLogger(__name__)


class PolicyStream(Protocol):
    """The receiving half of the policy client, as the stream task uses it."""

    async def connect(self) -> pb.PolicySpec:
        """Open the stream and return the policy's spec; raises :class:`AgentError` when no
        server answers (:class:`ServerUnavailable`), or a fatal one (:class:`SpecMismatch`,
        :class:`NotAPolicyServer`)."""
        ...

    async def receive(self) -> Chunk:
        """The next answer; raises :class:`AgentError` when the stream breaks."""
        ...

    async def close(self) -> None: ...


class StreamTask:
    """One stream to ``address`` at a time, over ``plan`` (see the module docstring).

    ``accept_spec`` checks each spec read at (re)connect and raises :class:`SpecMismatch` when it
    does not fit; ``identify`` names a spec's policy for the :class:`Connected` event;
    ``connected`` is set once the stream was open.
    """

    def __init__(
        self,
        *,
        client: PolicyStream,
        plan: Plan,
        events: EventBus,
        address: str,
        backoff: Backoff,
        accept_spec: Callable[[pb.PolicySpec], Awaitable[None]],
        identify: Callable[[pb.PolicySpec], Mapping[str, Any]],
        connected: asyncio.Event,
    ) -> None:
        self._client = client
        self._plan = plan
        self._events = events
        self._address = address
        self._backoff = backoff
        self._accept_spec = accept_spec
        self._identify = identify
        self._connected = connected

    async def run(self) -> None:
        """Connect (retrying with backoff), then read answers until the stream breaks; repeat.
        Returns never; raises :class:`SpecMismatch` or :class:`NotAPolicyServer`."""
        client, plan, backoff = self._client, self._plan, self._backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                spec = await client.connect()
            except AgentError as exc:
                if isinstance(exc, SpecMismatch | NotAPolicyServer):  # waiting would not fix either
                    raise
                delay = backoff.next()
                logger.warning(
                    "Waiting for inference server at %s (attempt %d, next in %.1f s): %s",
                    self._address,
                    attempt,
                    delay,
                    exc,
                )
                self._events.publish_quietly(Waiting(time.monotonic(), attempt, str(exc)))
                await asyncio.sleep(delay)
                continue
            await self._accept_spec(spec)
            if plan.status.ever_up:
                self._events.publish_quietly(Reconnected(time.monotonic(), attempt))
                logger.info("Reconnected to inference server at %s", self._address)
            else:
                self._events.publish_quietly(Connected(time.monotonic(), self._address, self._identify(spec)))
                logger.info(
                    "Connected to inference server at %s: policy %s %s (%s, %s), %s, chunk %d x %g s",
                    self._address,
                    spec.name,
                    spec.version,
                    spec.backend,
                    spec.device,
                    spec.action_space,
                    spec.chunk_length,
                    spec.dt_s,
                )
            plan.stream_up()
            self._connected.set()
            attempt = 0
            backoff.reset()
            try:
                while True:
                    chunk = await client.receive()
                    plan.accept(chunk, time.monotonic())
            except AgentError as exc:
                if isinstance(exc, SpecMismatch):
                    raise
                plan.stream_down()
                self._events.publish_quietly(StreamDown(time.monotonic(), str(exc)))
                logger.warning("Stream to the inference server lost (%s); reconnecting", exc)
                await client.close()

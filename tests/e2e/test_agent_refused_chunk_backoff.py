"""Chunks the agent refuses are not hammered either (issue 10, kind 4): a server answering OK with
a NaN or wrong-shape chunk on every request got the next request at once, ~96 requests/s (481 in
5 s through the CLI), as a server answering ERROR did before the backoff. Now the same
exponential backoff (reset by a usable chunk) applies."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from robot_agent.agent import Agent
from tests.e2e._agent_helpers import BACKOFF, agent_config, assert_backed_off, running
from tests.e2e.test_agent_rogue_server import H, RogueServicer, rogue_server
from tests.utils import poll_until
from vla.codec import to_tensor
from vla.v1 import policy_pb2 as pb


def _nan_chunk() -> np.ndarray:
    bad = np.zeros((H, 7), dtype=np.float32)
    bad[3, 1] = np.nan
    return bad


class BadChunkServicer(RogueServicer):
    """Answers OK with a still chunk ``good`` times, then OK with ``bad`` until ``recover`` is set."""

    def __init__(self, bad: np.ndarray, good: int = 3) -> None:
        super().__init__(bad, good=good)
        self.arrivals: list[float] = []
        self.recover = threading.Event()

    async def Predict(self, request_iterator, context):  # type: ignore[no-untyped-def]
        async for request in request_iterator:
            self.arrivals.append(time.monotonic())
            still = np.zeros((H, 7), dtype=np.float32)
            still[:, 6] = 1.0
            usable = len(self.arrivals) <= self.good or self.recover.is_set()
            yield pb.PredictResponse(
                request_id=request.request_id,
                status=pb.PredictResponse.OK,
                actions=to_tensor(still if usable else self.bad),
                dt_s=0.05,
                capture_time_s=request.capture_time_s,
            )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(_nan_chunk(), "non_finite"), (np.zeros((H, 6), dtype=np.float32), "invalid_chunk")],
)
async def test_refused_chunks_back_off_exponentially_and_recover(bad: np.ndarray, reason: str) -> None:
    servicer = BadChunkServicer(bad)
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port, **BACKOFF))
        async with running(agent):
            await poll_until(lambda: len(servicer.arrivals) >= servicer.good + 6, timeout=10)
            assert agent.control.holding and agent.control.hold_reason == reason
            assert_backed_off(servicer.arrivals[servicer.good :])
            servicer.recover.set()
            await poll_until(lambda: not agent.control.holding, timeout=5)
            n = len(servicer.arrivals)
            await poll_until(lambda: len(servicer.arrivals) >= n + 3, timeout=5)  # asking again
            assert not agent.control.estopped
    assert agent.summary["rejected_chunks"][reason] >= 6

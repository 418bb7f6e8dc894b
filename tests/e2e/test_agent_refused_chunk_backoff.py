"""Chunks the agent refuses are not hammered either (issue 10, kind 4): a server answering OK with
a NaN or wrong-shape chunk on every request got the next request at once, ~96 requests/s (481 in
5 s through the CLI), as a server answering ERROR did before the backoff. Now the same
exponential backoff (reset by a usable chunk) applies."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from robot_agent.agent import Agent
from tests.e2e._agent_helpers import BACKOFF, agent_config, assert_backed_off, running
from tests.e2e._rogue_server import H, RogueServicer, nan_chunk, ok_answer, rogue_server, still_actions
from tests.utils import poll_until
from vla.v1 import policy_pb2 as pb


class BadChunkServicer(RogueServicer):
    """Answers OK with a still chunk ``good`` times, then OK with ``bad`` until ``recover`` is set."""

    def __init__(self, bad: np.ndarray, good: int = 3) -> None:
        super().__init__(bad, good=good)
        self.recover = threading.Event()

    def answer(self, request: pb.PredictRequest) -> pb.PredictResponse:
        usable = self.answered < self.good or self.recover.is_set()
        return ok_answer(request, still_actions() if usable else self.bad)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(nan_chunk(), "non_finite"), (np.zeros((H, 6), dtype=np.float32), "invalid_chunk")],
)
async def test_refused_chunks_back_off_exponentially_and_recover(bad: np.ndarray, reason: str) -> None:
    servicer = BadChunkServicer(bad)
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port, **BACKOFF))
        async with running(agent):
            await poll_until(lambda: len(servicer.arrivals) >= servicer.good + 6, timeout=10)
            assert agent.status().holding and agent.status().hold_reason == reason
            assert_backed_off(servicer.arrivals[servicer.good :])
            servicer.recover.set()
            await poll_until(lambda: not agent.status().holding, timeout=5)
            n = len(servicer.arrivals)
            await poll_until(lambda: len(servicer.arrivals) >= n + 3, timeout=5)  # asking again
            assert not agent.status().estopped
    assert agent.summary["rejected_chunks"][reason] >= 6

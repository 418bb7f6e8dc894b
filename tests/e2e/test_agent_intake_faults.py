"""Nothing in the stream or scheduler tasks crashes the agent (issue 10, kind 1, outside the tick):
a chunk that cannot be planned is refused, a request that cannot be built is held and retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from robot_agent.action_space import ActionSpace
from robot_agent.agent import Agent
from robot_agent.policy_client import PolicyClient
from tests.e2e._agent_helpers import agent_config, bundle, read_jsonl, running, server_on
from tests.utils import poll_until


async def test_a_chunk_that_cannot_be_planned_is_refused_and_the_agent_carries_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real = ActionSpace.to_waypoints

    def flaky(self: ActionSpace, actions: Any, state: Any) -> Any:
        calls["n"] += 1
        if 3 <= calls["n"] <= 5:
            raise OverflowError("math range error")
        return real(self, actions, state)

    monkeypatch.setattr(ActionSpace, "to_waypoints", flaky)
    record = tmp_path / "episode"
    async with server_on(bundle(tmp_path / "circle", "Circle")) as server:
        agent = Agent(agent_config(server.port, **{"record.dir": str(record)}))
        async with running(agent) as task:
            await poll_until(lambda: agent.status().rejected_chunks["invalid_chunk"] >= 1, timeout=10)
            await poll_until(lambda: calls["n"] > 6 and agent.status().chunks >= 3, timeout=10)
            assert not task.done() and not agent.status().estopped
    assert agent.summary["rejected_chunks"]["invalid_chunk"] == 3
    rejected = [e for e in read_jsonl(record / "events.jsonl") if e["event"] == "chunk_rejected"]
    assert "could not be planned: OverflowError('math range error')" in rejected[0]["detail"]


async def test_a_request_that_cannot_be_built_holds_backs_off_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = {"on": False, "tries": 0}
    real = PolicyClient.build_request

    def build(self: PolicyClient, *args: Any, **kwargs: Any) -> Any:
        if failing["on"]:
            failing["tries"] += 1
            raise ValueError("state_vector: ee_rx is nan")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(PolicyClient, "build_request", build)
    async with server_on(bundle(tmp_path / "circle", "Circle")) as server:
        agent = Agent(agent_config(server.port, **{"server.backoff_max_s": 0.2}))
        async with running(agent) as task:
            await poll_until(lambda: agent.status().chunks >= 2, timeout=10)
            failing["on"] = True
            await poll_until(lambda: agent.status().hold_reason == "invalid_request", timeout=10)
            ticks = agent.status().ticks
            await poll_until(lambda: agent.status().ticks >= ticks + 50, timeout=5)
            # Backing off (0.05, 0.1, 0.2 s...), not one try per 10 ms tick.
            assert failing["tries"] <= 10, failing["tries"]
            failing["on"] = False
            chunks = agent.status().chunks
            await poll_until(lambda: agent.status().chunks > chunks and not agent.status().holding, timeout=5)
            assert not task.done()

"""Agent.status(): a read-only snapshot, usable before, during and after a run (the e2e tests read
it while the agent runs)."""

from __future__ import annotations

import dataclasses

import pytest

from robot_agent.agent import Agent, AgentStatus
from robot_agent.config import AgentConfig


def test_before_serving_nothing_runs_and_an_estop_is_already_latched() -> None:
    agent = Agent(AgentConfig())
    status = agent.status()
    assert status == AgentStatus()  # nothing started, connected, held or counted
    agent.trigger_estop("operator signal SIGUSR1")  # the one latch the shield will be built with
    status = agent.status()
    assert status.estopped and status.estop_reason == "operator signal SIGUSR1"


def test_the_snapshot_is_read_only_and_unseen_reasons_read_zero() -> None:
    agent = Agent(AgentConfig())
    agent.stats.holds["late"] += 2  # what the run statistics counted from Hold events
    status = agent.status()
    assert status.holds["late"] == 2 and status.holds["stream_down"] == 0
    with pytest.raises(TypeError):
        status.holds["late"] = 0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.holding = True  # type: ignore[misc]
    agent.stats.holds["late"] += 1
    assert status.holds["late"] == 2  # a snapshot: later counts are not in it

"""Issue 11: limits in ``[safety]`` above the arm's documented ones are refused when the agent
starts (``translation.max_velocity = 25`` was accepted), before the server is contacted."""

from __future__ import annotations

import pytest

from robot_agent.agent import Agent
from robot_agent.config import AgentConfig
from robot_agent.errors import ConfigError


@pytest.mark.parametrize(
    ("safety", "message"),
    [
        (
            {"translation": {"max_velocity": 25}},
            "safety.translation.max_velocity is 25, above the robot's own limit 1.7",
        ),
        (
            {"rotation": {"max_jerk": 2e4}},
            "safety.rotation.max_jerk is 20000, above the robot's own limit 12500",
        ),
    ],
)
async def test_the_agent_refuses_limits_above_the_arms(safety: dict[str, object], message: str) -> None:
    config = AgentConfig.load(
        None,
        {
            "server.address": "127.0.0.1:9",
            "metrics_port": None,
            "safety": safety,
            "robot.options.engine": "kinematic",
        },
    )
    agent = Agent(config)
    with pytest.raises(ConfigError) as info:
        await agent.serve()
    assert str(info.value) == message
    assert agent.connected.is_set() is False and agent.summary["exit_reason"] == "error"

"""A metrics host the agent cannot bind is blamed on ``metrics_host``, not ``metrics_port``."""

from __future__ import annotations

import asyncio
import socket

import pytest

from robot_agent.agent import Agent
from robot_agent.errors import ConfigError
from tests.e2e._agent_helpers import agent_config


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_address_of_another_machine_is_named_as_the_host() -> None:
    """192.0.2.1 (TEST-NET-1, RFC 5737) is on no interface here: EADDRNOTAVAIL. The message
    said '(metrics_port: another port, 0 for any free one, or off)'."""
    agent = Agent(agent_config(_refused_port(), metrics_port=0, metrics_host="192.0.2.1"))
    with pytest.raises(ConfigError) as info:
        async with asyncio.timeout(10):
            await agent.serve()
    assert str(info.value) == (
        "metrics endpoint 192.0.2.1:0: cannot bind: Cannot assign requested address "
        "(metrics_host: an address of this machine, 0.0.0.0 for every interface)"
    )
    assert info.value.field == "metrics_host"
    assert agent.summary is not None  # the arm was stopped and the run summed up

"""Where the agent's metrics endpoint binds: ``metrics_port = 0`` is any free port (as on the
server), ``metrics_host`` the address; a port in use is named."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.request

import pytest

from robot_agent.agent import Agent
from robot_agent.errors import ConfigError
from tests.e2e._agent_helpers import agent_config
from tests.utils import poll_until


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_port_0_binds_any_free_port_on_the_host_and_logs_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="robot_agent.metrics_server")
    agent = Agent(agent_config(_refused_port(), metrics_port=0, metrics_host="127.0.0.1"))
    task = asyncio.create_task(agent.serve())  # no server: metrics are served while waiting for one
    try:
        await poll_until(lambda: agent.metrics_port is not None or task.done(), timeout=10)
        port = agent.metrics_port
        assert port is not None and port > 0
        assert f"Metrics on http://127.0.0.1:{port}/metrics" in caplog.text
        url = f"http://127.0.0.1:{port}/metrics"
        text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        assert "vla_agent_hold_total" in text
    finally:
        agent.request_stop()
        async with asyncio.timeout(10):
            await task


async def test_no_endpoint_when_metrics_port_is_off() -> None:
    agent = Agent(agent_config(_refused_port(), metrics_port=None))
    task = asyncio.create_task(agent.serve())
    try:
        await poll_until(lambda: agent.status().ticks >= 5 or task.done(), timeout=10)
        assert agent.metrics_port is None
    finally:
        agent.request_stop()
        async with asyncio.timeout(10):
            await task


async def test_a_metrics_port_in_use_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        agent = Agent(agent_config(_refused_port(), metrics_port=port, metrics_host="127.0.0.1"))
        with pytest.raises(
            ConfigError, match=f"^metrics endpoint 127.0.0.1:{port}: cannot bind: Address already in use"
        ) as info:
            async with asyncio.timeout(10):
                await agent.serve()
    assert info.value.field == "metrics_port"
    assert agent.summary is not None  # the arm was stopped and the run summed up

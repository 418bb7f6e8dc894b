"""``--server`` at something that is not the inference server: fatal when something else answers,
retried (the server may be starting) when nothing listens."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from robot_agent.agent import Agent
from robot_agent.errors import NotAPolicyServer
from tests.e2e._agent_helpers import agent_config
from tests.plain_http import plain_http_server
from tests.utils import poll_until


async def test_an_agent_pointed_at_an_http_server_stops_at_once_naming_it() -> None:
    with plain_http_server() as port:
        agent = Agent(agent_config(port))
        with pytest.raises(NotAPolicyServer, match=f"127.0.0.1:{port} answered, but not as a gRPC server"):
            async with asyncio.timeout(10):
                await agent.serve()
    assert agent.summary is not None  # the shutdown ran: driver stopped, summary written
    assert agent.status().reconnects == 0 and not agent.connected.is_set()


async def test_an_agent_keeps_waiting_while_nothing_listens(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agent = Agent(agent_config(port))
    caplog.set_level(logging.WARNING, logger="robot_agent.agent")
    task = asyncio.create_task(agent.serve())
    try:
        await poll_until(lambda: "(attempt 3," in caplog.text or task.done(), timeout=10)
        assert not task.done()
        assert f"nothing listening at 127.0.0.1:{port} (connection refused)" in caplog.text
    finally:
        agent.request_stop()
        async with asyncio.timeout(10):
            await task


@pytest.mark.parametrize("listening", [True, False])
async def test_check_reports_what_answered_at_the_server_address(listening: bool) -> None:
    from robot_agent.check import preflight

    with plain_http_server() as http_port:
        if listening:
            port = http_port
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        results = await preflight(agent_config(port), requests=1)
    server = next(r for r in results if r.name == "server")
    assert server.status == "FAIL"
    if listening:
        assert server.detail.startswith(f"127.0.0.1:{port} answered, but not as a gRPC server")
    else:
        assert server.detail == f"nothing listening at 127.0.0.1:{port} (connection refused)"

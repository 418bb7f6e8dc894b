"""Agent config values the wire cannot carry are refused at load, naming the field."""

from __future__ import annotations

import pytest

from robot_agent.config import AgentConfig
from robot_agent.errors import ConfigError


def test_a_request_timeout_past_the_wires_uint32_is_refused() -> None:
    """request_timeout_ms = 1e11 was accepted; every request then failed to build ('ValueError:
    Value out of range') and the arm held for the whole run, which exited 0."""
    with pytest.raises(ConfigError) as info:
        AgentConfig.from_mapping({"server": {"request_timeout_ms": 100_000_000_000}})
    assert str(info.value) == (
        "server.request_timeout_ms is 100000000000, expected at most 4294967295 (the wire's uint32)"
    )
    assert info.value.field == "server.request_timeout_ms"
    limit = 2**32 - 1
    assert (
        AgentConfig.from_mapping({"server": {"request_timeout_ms": limit}}).server.request_timeout_ms == limit
    )


def test_a_connect_timeout_past_a_grpc_deadline_is_refused() -> None:
    """connect_timeout_s = 1e300 made every connect fail at once: 'no inference server answering
    at 127.0.0.1:50777 within 1e+300 s' from a server that was serving."""
    with pytest.raises(ConfigError) as info:
        AgentConfig.from_mapping({"server": {"connect_timeout_s": 1e300}})
    assert str(info.value) == "server.connect_timeout_s is 1e+300, expected at most 1e+09 (a gRPC deadline)"
    assert info.value.field == "server.connect_timeout_s"
    assert AgentConfig.from_mapping({"server": {"connect_timeout_s": 1e9}}).server.connect_timeout_s == 1e9

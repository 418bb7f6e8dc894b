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

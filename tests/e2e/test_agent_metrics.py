"""The agent's /metrics endpoint serves the families named in the issue, with live values."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from robot_agent.agent import Agent
from tests.e2e._agent_helpers import agent_config, bundle, running, server_on
from tests.utils import poll_until

EXPECTED = {
    "vla_agent_roundtrip_seconds": "histogram",
    "vla_agent_control_period_seconds": "histogram",
    "vla_agent_control_overrun": "counter",
    "vla_agent_deadline_miss": "counter",
    "vla_agent_hold": "counter",
    "vla_agent_holding": "gauge",
    "vla_agent_safety_interventions": "counter",
    "vla_agent_estop": "counter",
    "vla_agent_reconnects": "counter",
    "vla_agent_stale_actions_dropped": "counter",
    "vla_agent_inference_delay_steps": "gauge",
}


async def test_metrics_endpoint(tmp_path: Path) -> None:
    async with server_on(bundle(tmp_path / "circle", "Circle", name="metrics")) as server:
        agent = Agent(agent_config(server.port, metrics_port=0))
        async with running(agent):
            await poll_until(
                lambda: agent.status().chunks >= 3 and agent.metrics_port is not None, timeout=10
            )
            url = f"http://127.0.0.1:{agent.metrics_port}/metrics"
            text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in EXPECTED.items():
        assert name in families and families[name].type == kind, name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("vla_agent_roundtrip_seconds_count", ())] >= 3
    assert samples[("vla_agent_control_period_seconds_count", ())] > 10
    assert samples[("vla_agent_hold_total", (("reason", "waiting_for_server"),))] == 1
    assert samples[("vla_agent_holding", ())] == 0
    assert samples[("vla_agent_stale_actions_dropped_total", ())] >= 3
    assert "vla_agent_hold_total" in text and "vla_agent_reconnects_total" in text

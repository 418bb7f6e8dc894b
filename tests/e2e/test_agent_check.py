"""``robot-agent check``: the preflight report against a real server, and without one."""

from __future__ import annotations

import socket
from pathlib import Path

from robot_agent.check import format_report, preflight
from tests.e2e._agent_helpers import agent_config, bundle, server_on


async def test_all_pass_against_a_fitting_server(tmp_path: Path) -> None:
    async with server_on(bundle(tmp_path / "still", "Still", name="check")) as server:
        results = await preflight(agent_config(server.port), requests=5)
    status = {r.name: r.status for r in results}
    assert status == {
        "config": "PASS",
        "robot": "PASS",
        "robot in limits": "PASS",
        "camera front": "PASS",
        "server": "PASS",
        "spec fits": "PASS",
        "latency": "PASS",
        "e-stop": "CHECK",
    }, format_report(results)
    assert "round trip p95" in format_report(results)


async def test_no_server_and_a_workspace_without_the_arm_fail_by_name() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = agent_config(port, safety={"workspace": {"min": [0.5, -0.3, 0.0], "max": [0.8, 0.3, 0.6]}})
    results = await preflight(config)
    by_name = {r.name: r for r in results}
    assert by_name["robot"].status == "PASS"
    assert by_name["robot in limits"].status == "FAIL"
    assert "does not contain the home pose" in by_name["robot in limits"].detail
    assert by_name["server"].status == "FAIL" and f"127.0.0.1:{port}" in by_name["server"].detail
    assert "spec fits" not in by_name and "latency" not in by_name

"""``robot-agent check``: the preflight report against a real server, and without one."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from robot_agent.agent import Agent
from robot_agent.check import format_report, preflight
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import SpecMismatch
from tests.e2e._agent_helpers import agent_config, bundle, server_on
from tests.e2e._rogue_server import RogueServicer, rogue_server


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


async def test_a_joint_policy_without_forward_kinematics_near_zones_fails_as_the_agent_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The spec is fitted as the agent fits it (startup.fit_policy): a joint policy on an arm
    without forward kinematics, with keep-out zones configured, FAILs with the agent's message
    (tests/e2e/test_joint_keep_out.py has the agent's side); the check never asked before."""
    monkeypatch.setattr(SimRobot, "forward_kinematics", None)
    servicer = RogueServicer()
    servicer.spec_overrides = {"action_dim": 8, "action_space": "joint_absolute"}
    table = {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.05}
    async with rogue_server(servicer) as port:
        config = agent_config(port, safety={"keep_out": [table]})
        results = await preflight(config, requests=1)
        agent = Agent(config)
        with pytest.raises(SpecMismatch) as refused:
            async with asyncio.timeout(20):
                await agent.serve()
    fits = next(r for r in results if r.name == "spec fits")
    assert fits.status == "FAIL" and fits.detail == str(refused.value), format_report(results)
    assert "robot 'sim' offers no forward kinematics" in fits.detail and "'table'" in fits.detail
    assert "latency" not in {r.name for r in results} and servicer.answered == 0

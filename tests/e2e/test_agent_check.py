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
from tests.e2e._rogue_server import RogueServicer, loopback_server, rogue_server
from vla.v1 import policy_pb2_grpc as pb_grpc


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


async def test_the_latency_check_waits_for_a_warming_server_to_say_serving(tmp_path: Path) -> None:
    """A server answers the spec as soon as it binds, while its model still warms up: the check
    sent its requests at once, they queued behind the warm-up and came back LATE (FAIL). It now
    waits for health SERVING, then measures."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    servicer = RogueServicer(good=10**6)
    asked = asyncio.Event()

    class Watched(health.aio.HealthServicer):  # type: ignore[misc]
        async def Check(self, request, context):  # type: ignore[no-untyped-def]
            asked.set()
            return await health_servicer.Check(request, context)

    def register(server: object) -> None:
        pb_grpc.add_PolicyServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(Watched(), server)

    async with loopback_server(register) as port:
        check = asyncio.create_task(preflight(agent_config(port), requests=3))
        await asyncio.wait_for(asked.wait(), timeout=20)  # asked while NOT_SERVING
        assert not check.done()
        assert servicer.arrivals == []  # nothing sent before SERVING
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        results = await asyncio.wait_for(check, timeout=30)
    status = {r.name: r.status for r in results}
    assert status["latency"] == "PASS", format_report(results)


async def test_the_latency_check_fails_naming_a_server_that_never_says_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    import robot_agent.check as check_module

    monkeypatch.setattr(check_module, "WARMUP_WAIT_S", 1.0)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    servicer = RogueServicer(good=10**6)

    def register(server: object) -> None:
        pb_grpc.add_PolicyServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    async with loopback_server(register) as port:
        results = await preflight(agent_config(port), requests=3)
    latency = next(r for r in results if r.name == "latency")
    assert latency.status == "FAIL" and "NOT_SERVING after 1 s" in latency.detail, format_report(results)
    assert servicer.arrivals == []

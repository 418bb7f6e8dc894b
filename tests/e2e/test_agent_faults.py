"""Faults the agent must survive or stop on cleanly: a driver that throws (e-stop, latched), a
server whose spec no longer fits after a reconnect (SpecMismatch), a second SIGINT."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import numpy as np
import pytest

from robot_agent.agent import Agent
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import SpecMismatch
from robot_agent.sim.arm import SimArm
from safety.types import Pose
from tests.e2e._agent_helpers import (
    agent_config,
    bundle,
    read_jsonl,
    run_cli_with_signals,
    running,
    server_on,
)
from tests.e2e._rogue_server import RogueServicer, rogue_server
from tests.utils import poll_until


class FlakyArm(SimRobot):
    """The simulated arm, whose driver throws on the ``fail_at``-th end-effector command."""

    def __init__(self, fail_at: int) -> None:
        super().__init__(SimArm())  # the kinematic sim: fast, no contact
        self.fail_at = fail_at
        self.commands = 0
        self.commands_after_failure = 0

    def command_ee(self, pose: Pose) -> None:
        self.commands += 1
        if self.commands == self.fail_at:
            raise RuntimeError("communication_constraints_violation")
        if self.commands > self.fail_at:
            self.commands_after_failure += 1
        super().command_ee(pose)


async def test_a_driver_exception_latches_the_estop_and_nothing_moves_after(tmp_path: Path) -> None:
    arm = FlakyArm(fail_at=20)
    arm.connect()
    async with server_on(bundle(tmp_path / "circle", "Circle", name="flaky")) as server:
        agent = Agent(agent_config(server.port, **{"record.dir": str(tmp_path / "ep")}), robot=arm)
        async with running(agent) as task:
            await poll_until(lambda: agent.status().estopped, timeout=10)
            chunks = agent.status().chunks
            async with asyncio.timeout(10):
                await asyncio.wait({task})  # the latched e-stop ends the run on its own (issue 10, kind 7)
            assert agent.status().chunks == chunks  # asking for nothing more
    assert arm.estopped
    assert arm.commands_after_failure == 0
    assert agent.summary["estops"] == 1
    assert "driver command failed" in agent.summary["estop_reason"]
    assert "communication_constraints_violation" in agent.summary["estop_reason"]
    events = read_jsonl(tmp_path / "ep" / "events.jsonl")
    assert [e["event"] for e in events].count("estop") == 1


async def test_a_spec_that_no_longer_fits_after_reconnect_stops_with_spec_mismatch() -> None:
    servicer = RogueServicer(np.zeros((8, 7), dtype=np.float32), good=10**6)
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port))
        task = asyncio.create_task(agent.serve())
        await poll_until(lambda: agent.status().chunks >= 2, timeout=10)
    # The server comes back on the same port with a policy for another arm.
    servicer.spec_overrides = {"action_space": "joint_absolute", "action_dim": 6}
    async with rogue_server(servicer, port=port):
        with pytest.raises(SpecMismatch, match="action_dim is 6, joint_absolute on this arm needs 8"):
            async with asyncio.timeout(10):
                await task
    assert agent.summary is not None  # the shutdown ran: driver stopped, summary written
    assert agent.summary["reconnects"] == 0


async def test_a_second_sigint_skips_the_graceful_waits_but_still_stops_the_arm(tmp_path: Path) -> None:
    async with server_on(bundle(tmp_path / "still", "Still", name="twice")) as server:
        run = await run_cli_with_signals(
            server.port,
            "--log-level",
            "info",
            steps=[("First chunk received", [signal.SIGINT, signal.SIGINT])],
        )
    assert run.returncode == 0, run.log
    assert "Simulated Panda stopping" in run.log  # the driver stop is never skipped
    assert run.stdout.startswith("Run summary")

"""The agent's side of ``robot-agent estop``, in process: the run file says ``running`` while the
agent serves and goes at a clean stop; an e-stop asked for even before the control loop exists is
latched at the first tick, and a latched e-stop ends the run (summary, run file ``estopped``)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from robot_agent.agent import Agent
from robot_agent.drivers.sim import SimRobot
from robot_agent.runfile import RunFile, read_run
from robot_agent.sim.arm import SimArm
from safety.types import Pose
from tests.e2e._agent_helpers import agent_config, running
from tests.utils import poll_until


class CountingArm(SimRobot):
    """The simulated arm, counting motion commands and e-stops."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("arm", SimArm())  # the kinematic sim: fast, no contact
        super().__init__(**kwargs)
        self.commands = 0
        self.estops = 0

    def command_ee(self, pose: Pose) -> None:
        self.commands += 1
        super().command_ee(pose)

    def emergency_stop(self) -> None:
        self.estops += 1
        super().emergency_stop()


def unused_port() -> int:
    """A loopback port nobody listens on (the agent waits for a server there, holding)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_run_file_says_running_while_serving_and_goes_at_a_clean_stop(tmp_path: Path) -> None:
    run_file = RunFile.for_this_process(tmp_path / "run", server="127.0.0.1:1", robot="sim")
    agent = Agent(agent_config(unused_port()), run_file=run_file)
    async with running(agent):
        record = read_run(run_file.path)
        assert (record.pid, record.state, record.estop_reason) == (os.getpid(), "running", None)
    assert agent.summary is not None and agent.summary["estops"] == 0
    assert not run_file.path.exists()


async def test_an_estop_asked_for_before_start_latches_at_the_first_tick_and_ends_the_run(
    tmp_path: Path,
) -> None:
    """A SIGUSR1 during startup (robot connecting, nothing to latch yet) is not dropped."""
    arm = CountingArm()
    arm.connect()
    run_file = RunFile.for_this_process(tmp_path / "run", server="127.0.0.1:1", robot="sim")
    agent = Agent(agent_config(unused_port()), robot=arm, run_file=run_file)
    agent.trigger_estop("operator signal SIGUSR1")  # before serve(): no loop, no shield yet
    async with asyncio.timeout(15):
        summary = await agent.serve()  # ends by itself: no request_stop, no duration
    assert (summary["estops"], summary["estop_reason"]) == (1, "operator signal SIGUSR1")
    assert (arm.estops, arm.commands) == (1, 0)  # latched at the first tick: the arm never moved
    record = read_run(run_file.path)
    assert (record.state, record.estop_reason) == ("estopped", "operator signal SIGUSR1")
    arm.close()


async def test_an_estop_while_serving_ends_the_run_before_its_duration(tmp_path: Path) -> None:
    run_file = RunFile.for_this_process(tmp_path / "run", server="127.0.0.1:1", robot="sim")
    agent = Agent(agent_config(unused_port(), duration_s=600.0), run_file=run_file)
    async with running(agent) as task:
        await poll_until(lambda: agent.status().ticks > 5, timeout=10)
        agent.trigger_estop("operator signal SIGUSR1")  # what the SIGUSR1 handler does
        async with asyncio.timeout(10):
            await asyncio.wait({task})
        assert task.result()["estop_reason"] == "operator signal SIGUSR1"
    record = read_run(run_file.path)
    assert (record.state, record.estop_reason) == ("estopped", "operator signal SIGUSR1")

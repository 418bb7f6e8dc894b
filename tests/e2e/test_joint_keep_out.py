"""Issue 10, kind 8, for joint-space policies, end to end: the break test's repro.

A rogue server with a ``joint_absolute`` spec answers ``q_capture + [0, .05(k+1), 0, .05(k+1),
0, 0, 0]`` for step k of each chunk: the Panda's shoulder and elbow unfold, and the tool dives
toward a table configured as a keep-out half-space (z >= 0.05). Before the fix the shield,
which checked joint commands against the joint band only, let the tool 8.9 cm into the table
and ``verify_trace`` found nothing. Now (the sim driver offers ``forward_kinematics``) every
joint command's TCP stays above the table grown by the margin, and inside the workspace.

On an arm without forward kinematics (the xArm; here the sim with its FK taken away) a joint
policy is refused at connect when keep-out zones are configured, and only warned about with
the workspace box alone.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import panda_py
import pytest

from robot_agent.agent import Agent
from robot_agent.config import RobotConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import SpecMismatch
from safety import Pose, SafetyConfig, verify_trace
from safety.rotations import matrix_to_quat
from tests.e2e._agent_helpers import agent_config, read_jsonl, running
from tests.e2e._rogue_server import H, RogueServicer, ok_answer, rogue_server
from tests.utils import poll_until
from vla.v1 import policy_pb2 as pb

TABLE_Z, MARGIN = 0.05, 0.005
TABLE = {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": TABLE_Z}
# Wide enough that the dive meets the table before a wall (at x = 0.75 with the default box).
WIDE = {"min": [-1.0, -1.0, -0.5], "max": [1.0, 1.0, 1.2]}


def fk(q: Any) -> Pose:
    """The sim driver's kinematics: panda_py.fk, the Franka Hand's TCP."""
    t = np.asarray(panda_py.fk(np.asarray(q, dtype=float)), dtype=float)
    return Pose(t[:3, 3].copy(), matrix_to_quat(t[:3, :3]))


class JointDive(RogueServicer):
    """``joint_absolute``: the captured joints plus a growing unfold of joints 1 and 3."""

    def __init__(self) -> None:
        super().__init__()
        self.spec_overrides = {"name": "joint-dive", "action_dim": 8, "action_space": "joint_absolute"}

    def answer(self, request: pb.PredictRequest) -> pb.PredictResponse:
        q = np.frombuffer(request.state.data, dtype="<f4")[:7]
        actions = np.zeros((H, 8), dtype=np.float32)
        actions[:, :7] = q
        actions[:, -1] = 1.0
        dive = 0.05 * (np.arange(H) + 1)
        actions[:, 1] += dive
        actions[:, 3] += dive
        return ok_answer(request, actions)


@pytest.mark.parametrize(
    ("workspace", "stopped_by"),
    [
        pytest.param(WIDE, "keep_out", id="table"),  # the table stops the dive
        pytest.param(None, "workspace", id="default_workspace"),  # the x = 0.75 wall comes first
    ],
)
async def test_a_joint_dive_never_commands_the_tool_into_the_table(
    tmp_path: Path, workspace: dict[str, Any] | None, stopped_by: str
) -> None:
    record = tmp_path / "episode"
    safety: dict[str, Any] = {"keep_out": [TABLE], "keep_out_margin_m": MARGIN}
    if workspace is not None:
        safety["workspace"] = workspace
    servicer = JointDive()
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port, safety=safety, **{"record.dir": str(record)}))
        async with running(agent, timeout=60):
            # Until the shield has stopped the dive (and the e-stop may follow the holds).
            await poll_until(lambda: agent.status().safety_interventions[stopped_by] > 0, timeout=40)
    cfg = SafetyConfig.from_mapping(safety)
    steps = read_jsonl(record / "steps.jsonl")
    sent = [np.asarray(s["safe"]["joints"]) for s in steps if s["safe"] is not None and not s["holding"]]
    assert len(sent) > 50
    tcp = np.array([fk(q).position for q in sent])
    lo, hi = np.asarray(cfg.workspace.min), np.asarray(cfg.workspace.max)
    # The dive really went toward the stop, and no command crossed it.
    assert tcp[:, 2].min() >= TABLE_Z + MARGIN - 1e-9, tcp[:, 2].min()
    assert (tcp >= lo - 1e-9).all() and (tcp <= hi + 1e-9).all()
    # Near the stop when it held: within what one tick's joint step moves the TCP (several cm
    # at the joint velocity limits when a loaded machine stretches the tick's dt).
    if stopped_by == "keep_out":
        assert tcp[:, 2].min() < TABLE_Z + MARGIN + 0.05, tcp[:, 2].min()
    else:
        assert tcp[:, 0].max() > hi[0] - 0.05, tcp[:, 0].max()
    measured_z = np.array([s["measured"]["ee"][2] for s in steps if s["measured"] is not None])
    assert measured_z.min() >= TABLE_Z, measured_z.min()  # the arm itself never touched it
    limits = json.loads((record / "safety_limits.json").read_text())
    assert verify_trace(steps, limits, fk=fk) == []


@pytest.fixture
def no_fk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sim arm as an arm without forward kinematics (as the xArm driver is)."""
    monkeypatch.setattr(SimRobot, "forward_kinematics", None)


async def test_a_joint_policy_is_refused_on_an_arm_without_fk_when_zones_are_set(
    tmp_path: Path, no_fk: None
) -> None:
    servicer = JointDive()
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port, safety={"keep_out": [TABLE]}))
        with pytest.raises(SpecMismatch, match=r"robot 'sim' offers no forward kinematics.*'table'"):
            await agent.serve()
    assert servicer.answered == 0  # nothing was ever commanded from it


async def test_a_joint_policy_on_an_arm_without_fk_and_no_zones_is_warned_about(
    tmp_path: Path, no_fk: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="robot_agent.startup")
    servicer = JointDive()
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port))
        async with running(agent):
            await poll_until(lambda: servicer.answered >= 1, timeout=10)
    warned = [r.getMessage() for r in caplog.records if "no forward kinematics" in r.getMessage()]
    assert len(warned) == 1 and "not against safety.workspace" in warned[0], warned


def test_the_sim_arm_offers_fk_and_the_xarm_does_not() -> None:
    """The xArm is the arm the refusal above is for: its driver defines no forward kinematics."""
    pytest.importorskip("xarm")
    from robot_agent.drivers.base import Robot
    from robot_agent.drivers.xarm import XArmRobot

    assert Robot.forward_kinematics is None and XArmRobot.forward_kinematics is None
    q = np.array([0.1, -0.5, 0.2, -2.0, 0.1, 1.8, 0.7])
    robot = SimRobot.from_config(RobotConfig(options={"engine": "kinematic", "realtime": False, "seed": 0}))
    sim = robot.forward_kinematics(q)
    assert np.allclose(sim.position, np.asarray(panda_py.fk(q))[:3, 3])
    # The pose read_state reports is the FK of the measured joints: the frame the zones bound.
    state = robot.read_state()
    assert np.allclose(robot.forward_kinematics(state.joint_positions).position, state.ee.position)

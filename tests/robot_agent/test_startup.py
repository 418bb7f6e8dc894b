"""The startup steps the agent and ``robot-agent check`` share (``robot_agent/startup.py``).

The first test is the point of the module: on the same bad config the agent refuses to start
and the check FAILs the matching line, with the agent's one-line message. Before, the two had
drifted (the check validated the current joints, the agent the nominal home joints), so an arm
standing outside the joint band passed the agent and an arm whose nominal home lay outside it
passed the check. The other tests pin the shared steps on their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_agent import startup
from robot_agent.action_space import measured_from_state
from robot_agent.agent import Agent
from robot_agent.check import CheckResult, format_report, preflight
from robot_agent.config import AgentConfig, CameraConfig, RobotConfig
from robot_agent.drivers.base import RobotState
from robot_agent.drivers.sim import SimRobot
from robot_agent.errors import AgentError, CameraError, ConfigError, DriverError, SpecMismatch
from robot_agent.sim.arm import SimArm
from safety import EStop, SafetyConfig
from safety.arms import PANDA
from vla.v1 import policy_pb2 as pb

PANDA_HOME = np.asarray(PANDA.home_joints)
#: The wrist's band narrowed to [0.3, 1.2] rad (margin 0.05: [0.35, 1.15] usable); the Panda's
#: home has it at pi/4, and turning joint 6 turns the tool about its own axis only, so the tool
#: stays in the workspace and within the tilt cone wherever joint 6 is.
WRIST_BAND = {
    "joints": {
        "min": [*PANDA.joint_min[:6], 0.3],
        "max": [*PANDA.joint_max[:6], 1.2],
    }
}
WRIST_OUTSIDE = (
    "safety.joints: home joint 6 is 1.5000 rad, outside [0.3500, 1.1500] (min/max with margin_rad=0.05)"
)


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(**overrides: Any) -> AgentConfig:
    """A sim arm (manual clock: nothing moves on its own) and a sim camera; no server listens."""
    base: dict[str, Any] = {
        "server.address": f"127.0.0.1:{unused_port()}",
        "server.connect_timeout_s": 0.3,
        "metrics_port": None,
        "robot.options": {"engine": "kinematic", "realtime": False, "seed": 0},
        "cameras": {"front": {"kind": "sim", "width": 64, "height": 48}},
    }
    base.update(overrides)
    return AgentConfig.load(None, base)


def wrist_at(q6: float) -> np.ndarray:
    q = PANDA_HOME.copy()
    q[6] = q6
    return q


def stands_at_wrist_1_5(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arm stands with its wrist at 1.5 rad; its nominal home is the Panda's (0.785)."""
    monkeypatch.setattr(SimArm, "home_joints", wrist_at(1.5))


def nominal_home_wrist_1_5(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arm stands at the Panda's home; its driver's nominal home has the wrist at 1.5 rad."""
    monkeypatch.setattr(SimRobot, "home_joints", wrist_at(1.5))


def reports_a_reflex(monkeypatch: pytest.MonkeyPatch) -> None:
    read = SimRobot.read_state

    def faulted(self: SimRobot) -> RobotState:
        return dataclasses.replace(read(self), fault="cartesian_reflex")

    monkeypatch.setattr(SimRobot, "read_state", faulted)


def does_not_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: SimRobot) -> None:
        raise RuntimeError("no arm on the bus")

    monkeypatch.setattr(SimRobot, "connect", refuse)


def nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arm as it is."""


def usb_default_camera() -> dict[str, Any]:
    if Path("/dev/video0").exists():
        pytest.skip("a video device is connected to this machine")
    return {"cameras": {}, "default_camera": "usb"}


# (what is wrong, the config's overrides, how the arm is, the check's line, the agent's error, its message)
SAME_VERDICT: list[Any] = [
    # The arm stands outside the band: the check said so, the agent started (before startup.py).
    pytest.param(
        WRIST_BAND,
        stands_at_wrist_1_5,
        "robot in limits",
        ConfigError,
        WRIST_OUTSIDE,
        id="standing_outside_band",
    ),
    # Its nominal home is outside the band: the agent said so, the check passed (before).
    pytest.param(
        WRIST_BAND,
        nominal_home_wrist_1_5,
        "robot in limits",
        ConfigError,
        WRIST_OUTSIDE,
        id="home_outside_band",
    ),
    # The tool outside the workspace.
    pytest.param(
        {"workspace": {"min": [0.5, -0.3, 0.0], "max": [0.8, 0.3, 0.6]}},
        nothing,
        "robot in limits",
        ConfigError,
        "safety.workspace min=(0.5, -0.3, 0) max=(0.8, 0.3, 0.6) does not contain the home pose position (0.3069, 0, 0.4873)",
        id="workspace_without_the_tool",
    ),
    # A rate above the arm's documented one (its own table, safety.arms.PANDA).
    pytest.param(
        {"translation": {"max_velocity": 25}},
        nothing,
        "robot in limits",
        ConfigError,
        "safety.translation.max_velocity is 25, above the robot's own limit 1.7",
        id="rate_above_the_arms",
    ),
    # [safety] itself invalid.
    pytest.param(
        {"workspace": {"min": [0.8, -0.3, 0.0], "max": [0.5, 0.3, 0.6]}},
        nothing,
        "config",
        ConfigError,
        "safety.workspace",
        id="invalid_safety",
    ),
    # The arm reports an error a person must clear.
    pytest.param(
        {}, reports_a_reflex, "robot", DriverError, "robot sim reports a fault: cartesian_reflex", id="fault"
    ),
    # The arm does not connect.
    pytest.param(
        {},
        does_not_connect,
        "robot",
        DriverError,
        "robot sim: connect failed: no arm on the bus",
        id="no_connect",
    ),
]


def _safety(overrides: dict[str, Any]) -> dict[str, Any]:
    return {"safety": overrides} if overrides else {}


async def _verdicts(agent_config: AgentConfig, line: str) -> tuple[CheckResult, BaseException]:
    """The check's ``line`` and the agent's startup error on ``agent_config``."""
    results = await preflight(agent_config, requests=1)
    found = [r for r in results if r.name == line]
    assert len(found) == 1, format_report(results)
    agent = Agent(agent_config)
    with pytest.raises(AgentError) as info:
        async with asyncio.timeout(20):
            await agent.serve()
    assert agent.summary is not None and agent.summary["exit_reason"] == "error"
    assert not agent.connected.is_set()  # refused before the server was contacted
    return found[0], info.value


@pytest.mark.parametrize(("safety", "arm", "line", "error", "message"), SAME_VERDICT)
async def test_the_check_and_the_agent_refuse_the_same_config_with_the_same_message(
    monkeypatch: pytest.MonkeyPatch,
    safety: dict[str, Any],
    arm: Any,
    line: str,
    error: type[AgentError],
    message: str,
) -> None:
    arm(monkeypatch)
    result, refused = await _verdicts(config(**_safety(safety)), line)
    assert type(refused) is error
    assert message in str(refused)
    assert result.status == "FAIL" and str(refused) in result.detail, result


async def test_the_check_and_the_agent_refuse_a_default_camera_without_a_device() -> None:
    result, refused = await _verdicts(config(**usb_default_camera()), "default camera")
    assert type(refused) is CameraError
    assert str(refused).startswith("default_camera is 'usb' but cannot open USB camera 0")
    assert result.status == "FAIL" and result.detail == str(refused)


async def test_the_check_passes_what_the_agent_starts_with() -> None:
    """The fitting arm: every line up to the server PASSes (no server listens here)."""
    results = await preflight(config(safety=WRIST_BAND), requests=1)
    status = {r.name: r.status for r in results}
    assert status == {
        "config": "PASS",
        "robot": "PASS",
        "robot in limits": "PASS",
        "camera front": "PASS",
        "server": "FAIL",
        "e-stop": "CHECK",
    }, format_report(results)


# --- the steps on their own ----------------------------------------------------------------------


async def _connected_sim(**options: Any) -> tuple[SimRobot, RobotState]:
    robot = SimRobot.from_config(
        RobotConfig(options={"engine": "kinematic", "realtime": False, "seed": 0, **options})
    )
    await startup.connect_robot(robot, RobotConfig(), asyncio.to_thread)
    return robot, await startup.read_first_state(robot, "sim", asyncio.to_thread)


async def test_a_drivers_own_error_passes_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: SimRobot) -> None:
        raise DriverError("no Franka at 172.16.0.2 after 5 s")

    monkeypatch.setattr(SimRobot, "connect", refuse)
    robot = SimRobot.from_config(RobotConfig(options={"engine": "kinematic", "realtime": False}))
    with pytest.raises(DriverError) as info:
        await startup.connect_robot(robot, RobotConfig(kind="sim", ip="172.16.0.2"), asyncio.to_thread)
    assert str(info.value) == "no Franka at 172.16.0.2 after 5 s"


async def test_a_foreign_error_names_the_robot_and_where(monkeypatch: pytest.MonkeyPatch) -> None:
    does_not_connect(monkeypatch)
    robot = SimRobot.from_config(RobotConfig(options={"engine": "kinematic", "realtime": False}))
    with pytest.raises(DriverError) as info:
        await startup.connect_robot(robot, RobotConfig(kind="sim", ip="10.0.0.7"), asyncio.to_thread)
    assert str(info.value) == "robot sim at 10.0.0.7: connect failed: no arm on the bus"
    assert isinstance(info.value.__cause__, RuntimeError)


async def test_the_rate_limits_come_from_the_arms_own_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """An arm whose table publishes no Cartesian rates (as the xArm's) is not held to the
    Panda's; an arm without a table is (the defaults of ``validate_against``)."""
    robot, state = await _connected_sim()
    fast = SafetyConfig.from_mapping({"translation": {"max_velocity": 2.0}})  # Panda: 1.7
    with pytest.raises(ConfigError, match=r"above the robot's own limit 1\.7"):
        startup.validate_safety(fast, robot, state)
    monkeypatch.setattr(robot, "arm_limits", dataclasses.replace(PANDA, cartesian=None))
    startup.validate_safety(fast, robot, state)
    monkeypatch.setattr(robot, "arm_limits", None)
    with pytest.raises(ConfigError, match=r"above the robot's own limit 1\.7"):
        startup.validate_safety(fast, robot, state)


async def test_the_shield_starts_at_rest_where_the_arm_stands() -> None:
    robot, state = await _connected_sim()
    estop = EStop()
    shield = startup.build_shield(SafetyConfig(), robot, state, kind="sim", estop=estop)
    assert shield.config == SafetyConfig()
    decision = shield.filter(None, measured_from_state(state), 0.0, 0.01)  # no target: hold here
    assert decision.hold and not decision.estop
    estop.trigger("test")
    assert shield.filter(None, measured_from_state(state), 0.01, 0.01).estop  # the latch it was given


def spec(**overrides: Any) -> pb.PolicySpec:
    names = [f"joint_{i}" for i in range(7)] + ["gripper"]
    fields: dict[str, Any] = {
        "cameras": [
            pb.CameraSpec(name="front", height=48, width=64),
            pb.CameraSpec(name="wrist", height=96, width=128),
        ],
        "state_dim": len(names),
        "state_names": names,
        "action_dim": 7,
        "action_space": "ee_delta",
        "chunk_length": 8,
        "dt_s": 0.05,
    }
    return pb.PolicySpec(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"state_dim": 3}, "state_dim is 3 but it names 8 state entries"),  # names and size disagree
        (
            {"state_names": ["joint_7"], "state_dim": 1},
            "state entry 'joint_7' is not one this robot can fill",
        ),
        (
            {"state_names": ["torque_0"], "state_dim": 1},
            "state entry 'torque_0' is not one this robot can fill",
        ),
        ({"dt_s": 0.0}, "chunk_length 8, dt_s 0.0 are not usable"),
        ({"chunk_length": 0}, "chunk_length 0, dt_s 0.05 are not usable"),
        ({"action_space": "joint_torque"}, "policy at srv:1: "),  # not a known space
    ],
)
def test_fit_spec_names_what_does_not_fit(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecMismatch) as info:
        startup.fit_spec(spec(**overrides), num_joints=7, reference=np.array([1.0, 0, 0, 0]), address="srv:1")
    assert str(info.value).startswith("policy at srv:1: ") and message in str(info.value)


async def test_a_joint_policy_needs_forward_kinematics_when_zones_are_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    robot, state = await _connected_sim()
    monkeypatch.setattr(robot, "forward_kinematics", None)
    joints = spec(action_space="joint_absolute", action_dim=8)
    table = SafetyConfig.from_mapping(
        {"keep_out": [{"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.05}]}
    )
    fit = dict(robot=robot, robot_kind="sim", reference=state.ee.quaternion, address="srv:1")
    with pytest.raises(SpecMismatch, match=r"robot 'sim' offers no forward kinematics.*'table'"):
        startup.fit_policy(joints, previous=None, safety=table, **fit)
    # The same action space as before the reconnect: checked then, not again.
    startup.fit_policy(joints, previous=joints, safety=table, **fit)
    # Without zones: a warning, once per action space.
    caplog.set_level(logging.WARNING, logger="robot_agent.startup")
    space = startup.fit_policy(joints, previous=None, safety=SafetyConfig(), **fit)
    assert space.name == "joint_absolute"
    assert [r.getMessage() for r in caplog.records if "no forward kinematics" in r.getMessage()] != []
    # An end-effector policy needs none.
    startup.fit_policy(spec(), previous=None, safety=table, **fit)


def test_the_first_spec_opens_its_cameras_configured_or_default() -> None:
    agent_config = config(cameras={"front": {"kind": "sim", "width": 64, "height": 48, "max_age_ms": 80}})
    plan = startup.reconcile_cameras(spec(), previous=None, config=agent_config, opened=["front"])
    assert dict(plan.to_open) == {"wrist": CameraConfig(name="wrist", kind="sim", width=128, height=96)}
    # front: its max_age_ms; wrist: 3 frames at the default rate, both under the 1 s request budget.
    wrist_bound = CameraConfig(name="wrist").max_age_s(1000)
    assert dict(plan.frame_age_bounds) == {"front": 0.08, "wrist": wrist_bound}


def test_after_a_reconnect_a_new_unconfigured_camera_is_refused() -> None:
    agent_config = config()
    first = spec(cameras=[pb.CameraSpec(name="front", height=48, width=64)])
    with pytest.raises(SpecMismatch) as info:
        startup.reconcile_cameras(spec(), previous=first, config=agent_config, opened=["front"])
    assert str(info.value) == (
        f"policy at {agent_config.server.address} now asks for camera 'wrist', which this agent does "
        "not have (it has front)"
    )
    # A configured one that was not open yet is opened after a reconnect too.
    with_wrist = config(cameras={"front": {"kind": "sim"}, "wrist": {"kind": "sim"}})
    plan = startup.reconcile_cameras(spec(), previous=first, config=with_wrist, opened=["front"])
    assert list(plan.to_open) == ["wrist"]


def test_configured_cameras_the_policy_does_not_use_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="robot_agent.startup")
    agent_config = config(cameras={"front": {"kind": "sim"}, "top": {"kind": "sim"}, "side": {"kind": "sim"}})
    first = spec(cameras=[pb.CameraSpec(name="front", height=48, width=64)])
    startup.reconcile_cameras(first, previous=None, config=agent_config, opened=["front", "top", "side"])
    assert "Configured camera(s) side, top are not used by the policy" in caplog.text

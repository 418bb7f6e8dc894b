"""``robot-agent eval --task``: sets ``robot.options.task`` of the MuJoCo sim arm, so the world the
episodes run in is the one asked for (the conveyor task has its belt); its defaults agree with the
modules the CLI does not import (they load the simulator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from robot_agent import cli
from robot_agent.config import AgentConfig, RobotConfig
from robot_agent.drivers import create_robot
from robot_agent.drivers.sim import TASKS, SimRobot
from robot_agent.errors import ConfigError
from robot_agent.evaluation import EPISODE_TIMEOUT_S, EvalResults
from robot_agent.sim.mujoco_arm import MujocoArm


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[AgentConfig]:
    """The config each ``eval`` would have run with (no episode runs)."""
    seen: list[AgentConfig] = []

    def fake_eval(config: AgentConfig, *args: Any) -> EvalResults:
        seen.append(config)
        return EvalResults((), 0.0, 0.0, config.control.blend, config.control.interpolation)

    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    monkeypatch.setattr(cli, "run_eval", fake_eval)
    return seen


def manual(config: AgentConfig) -> SimRobot:
    """The robot ``eval`` builds from ``config``, on a manual clock."""
    robot = create_robot(RobotConfig(kind="sim", options={**config.robot.options, "realtime": False}))
    assert isinstance(robot, SimRobot)
    return robot


def test_task_conveyor_reaches_the_world_and_the_belt_runs(configs: list[AgentConfig]) -> None:
    assert cli.main(["eval", "--task", "conveyor"]) == 0
    robot = manual(configs[-1])
    world = robot.world
    assert getattr(world, "conveyor", False) and getattr(world, "conveyor_speed", 0.0) == 0.04
    assert isinstance(robot.arm, MujocoArm) and robot.arm.ids.belt_actuator is not None
    before = world.target_cube.position  # type: ignore[attr-defined]
    robot.step(0.5)
    assert world.target_cube.position[1] - before[1] == pytest.approx(0.02, abs=0.005)  # type: ignore[attr-defined]


def test_without_the_flag_the_static_task_or_the_configs(configs: list[AgentConfig], tmp_path: Path) -> None:
    assert cli.main(["eval"]) == 0
    static = manual(configs[-1])
    assert not getattr(static.world, "conveyor", True)
    assert isinstance(static.arm, MujocoArm) and static.arm.ids.belt_actuator is None
    path = tmp_path / "agent.toml"
    path.write_text('[robot]\nkind = "sim"\n[robot.options]\ntask = "conveyor"\nconveyor_speed = 0.06\n')
    assert cli.main(["eval", "--config", str(path)]) == 0
    assert getattr(manual(configs[-1]).world, "conveyor_speed", None) == 0.06
    assert cli.main(["eval", "--config", str(path), "--task", "pick_place"]) == 0  # the flag wins...
    assert configs[-1].robot.options["task"] == "pick_place"
    with pytest.raises(
        ConfigError, match=r'^robot\.options\.conveyor_speed is used by task = "conveyor" only'
    ):
        manual(configs[-1])  # ... and the belt's speed the file sets is refused, not ignored


def test_task_on_the_kinematic_arm_is_one_line_naming_the_option(
    configs: list[AgentConfig], tmp_path: Path
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[robot]\nkind = "sim"\n[robot.options]\nengine = "kinematic"\n')
    assert (
        cli.main(["eval", "--config", str(path), "--task", "conveyor"]) == 0
    )  # the config is only loaded...
    with pytest.raises(ConfigError, match=r'^robot\.options\.task is used by engine = "mujoco" only'):
        manual(configs[-1])  # ... the robot refuses it when built


def test_the_cli_constants_agree_with_the_modules() -> None:
    assert cli.EVAL_TASKS == TASKS
    assert cli.EPISODE_TIMEOUT_S == EPISODE_TIMEOUT_S
    help_text = cli.build_eval_parser().format_help()
    assert "--task {pick_place,conveyor}" in help_text
    assert "(default: pick_place" in " ".join(help_text.split())


def test_a_bad_task_is_a_usage_error(configs: list[AgentConfig], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--task", "stack"])
    assert info.value.code == 2
    assert "argument --task: invalid choice: 'stack'" in capsys.readouterr().err
    assert configs == []

"""An ``AgentConfig`` built in code (as ``vla_demo`` builds one) is checked as one read from a
file: each section checks itself in its constructor, with the same one-line messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from robot_agent.config import (
    AgentConfig,
    CameraConfig,
    ControlConfig,
    RecordConfig,
    RobotConfig,
    SchedulerConfig,
    ServerConfig,
)
from robot_agent.errors import ConfigError


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ControlConfig(rate_hz=-5), "control.rate_hz is -5.0, must be > 0"),
        (lambda: ControlConfig(blend="average"), "control.blend is 'average', expected one of"),
        (lambda: ControlConfig(ruckig_joint=(1.0, 0.0, 3.0)), r"control.ruckig_joint is \[1.0, 0.0, 3.0\]"),
        (lambda: ServerConfig(address="localhost"), "server.address is 'localhost', expected HOST:PORT"),
        (
            lambda: ServerConfig(request_timeout_ms=2**32),
            "server.request_timeout_ms is 4294967296, expected at most",
        ),
        (lambda: SchedulerConfig(rtt_quantile=1.5), r"scheduler.rtt_quantile is 1.5, must be in \(0, 1\]"),
        (lambda: RobotConfig(connect_timeout_s=0), "robot.connect_timeout_s is 0.0, must be > 0"),
        (lambda: CameraConfig(name="front", width=0), "cameras.front.width is 0, must be > 0"),
        (
            lambda: CameraConfig(name="front", fps="30"),
            r"cameras.front.fps is '30' \(str\), expected an integer",
        ),
        (lambda: RecordConfig(video="yes"), r"record.video is 'yes' \(str\), expected true or false"),
        (lambda: AgentConfig(metrics_port=70000), "metrics_port is 70000, must be in 0..65535"),
        (lambda: AgentConfig(duration_s=0), "duration_s is 0.0, must be > 0"),
        (
            lambda: AgentConfig(control={"rate_hz": 5}),
            r"control is \{'rate_hz': 5\} \(dict\), expected a ControlConfig",
        ),
        (
            lambda: AgentConfig(cameras={"front": CameraConfig(name="wrist")}),
            "cameras.front.name is 'wrist', must be the table's name 'front'",
        ),
    ],
)
def test_sections_built_in_code_are_checked(build: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        build()
    assert info.value.field is not None and "\n" not in str(info.value)


def test_a_config_built_in_code_equals_the_same_config_from_a_mapping() -> None:
    in_code = AgentConfig(
        server=ServerConfig(address="gpu-box:50051"),
        control=ControlConfig(rate_hz=250, blend="ensemble", ruckig_joint=[1, 2, 3]),  # type: ignore[arg-type]
        cameras={"front": CameraConfig(name="front", kind="usb", device=0)},
    )
    from_file = AgentConfig.from_mapping(
        {
            "server": {"address": "gpu-box:50051"},
            "control": {"rate_hz": 250, "blend": "ensemble", "ruckig_joint": [1, 2, 3]},
            "cameras": {"front": {"kind": "usb", "device": 0}},
        }
    )
    assert in_code == from_file
    assert in_code.control.rate_hz == 250.0 and in_code.control.ruckig_joint == (1.0, 2.0, 3.0)


def test_an_unknown_key_in_the_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[control]\nrat_hz = 250\n")
    with pytest.raises(ConfigError) as info:
        AgentConfig.load(path)
    assert str(info.value).startswith(f"config {path}: control: unknown key 'rat_hz' (known: blend, ")
    assert info.value.field == "control.rat_hz"


def test_a_flag_fixes_a_file_value_before_anything_is_checked(tmp_path: Path) -> None:
    """The file alone would be refused (rate 5000 Hz); the flag's value is what is checked."""
    path = tmp_path / "agent.toml"
    path.write_text("[control]\nrate_hz = 5000\n")
    assert AgentConfig.load(path, {"control.rate_hz": 250}).control.rate_hz == 250.0

from __future__ import annotations

from pathlib import Path

import pytest

from robot_agent.config import AgentConfig, CameraConfig
from robot_agent.errors import ConfigError


def test_defaults_run_the_simulation_anywhere() -> None:
    config = AgentConfig.load()
    assert config.robot.kind == "sim" and config.default_camera == "sim"
    assert config.control.rate_hz == 100.0 and config.metrics_port == 9101
    assert config.server.address == "127.0.0.1:50051"


def test_toml_with_flags_overriding(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        """
instruction = "touch the red cube"
[server]
address = "gpu-box:50051"
[robot]
kind = "franka"
ip = "172.16.0.2"
[cameras.front]
kind = "realsense"
serial = "123"
[control]
rate_hz = 250
blend = "ensemble"
[safety]
estop_after_interventions = 10
"""
    )
    config = AgentConfig.load(path, {"control.rate_hz": 500, "server.address": "127.0.0.1:1"})
    assert config.control.rate_hz == 500.0 and config.control.blend == "ensemble"
    assert config.server.address == "127.0.0.1:1"
    assert config.robot.ip == "172.16.0.2"
    assert config.cameras["front"] == CameraConfig(name="front", kind="realsense", serial="123")
    assert config.safety == {"estop_after_interventions": 10}
    assert config.instruction == "touch the red cube"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"control.rate_hz": -5}, "control.rate_hz is -5.0, must be > 0"),
        ({"control.rat_hz": 5}, "control: unknown key 'rat_hz'"),
        (
            {"control.blend": "average"},
            "control.blend is 'average', expected one of replace, crossfade, ensemble",
        ),
        ({"control.interpolation": "spline"}, "control.interpolation is 'spline'"),
        ({"control.ruckig_joint": [1, 0, 3]}, r"control.ruckig_joint is \[1.0, 0.0, 3.0\]"),
        ({"server.address": "localhost"}, "server.address is 'localhost', expected HOST:PORT"),
        # A URL is not a gRPC target: refused up front, not retried as "no server answering".
        (
            {"server.address": "http://gpu-box:50051"},
            "server.address is 'http://gpu-box:50051': no scheme \\(http:\\) here, "
            "the agent speaks plain gRPC to HOST:PORT; write 'gpu-box:50051'",
        ),
        ({"server.address": "grpc://gpu-box:50051/"}, "no scheme \\(grpc:\\) here.*write 'gpu-box:50051'"),
        ({"server.address": "dns:///gpu-box:50051"}, "no scheme \\(dns:\\) here.*write 'gpu-box:50051'"),
        (
            {"server.address": "gpu-box:0"},
            "server.address is 'gpu-box:0', expected HOST:PORT \\(port 1-65535",
        ),
        ({"server.address": "gpu-box:70000"}, "server.address is 'gpu-box:70000', expected HOST:PORT"),
        ({"server.address": ":50051"}, "server.address is ':50051', expected HOST:PORT"),
        ({"server.address": "::1:50051"}, "write an IPv6 host in brackets, \\[::1\\]:50051"),
        ({"metrics_port": True}, r"metrics_port is True \(bool\), expected an integer"),
        ({"metrics_port": -1}, "metrics_port is -1, must be in 0..65535 \\(0: any free port\\), or false"),
        ({"metrics_host": ""}, "metrics_host is '', expected a host name or an IP address"),
        ({"metrics_host": "127.0.0.1:9101"}, "metrics_host is '127.0.0.1:9101', expected a host name"),
        ({"metrics_host": "http://robot-pc"}, "metrics_host is 'http://robot-pc', expected a host name"),
        ({"server.backoff_max_s": 0.01}, "server.backoff_max_s is 0.01, below server.backoff_initial_s"),
        ({"metrics_port": "x"}, r"metrics_port is 'x' \(str\), expected an integer"),
        ({"metrics_port": 70000}, "metrics_port is 70000"),
        ({"cameras": {"front": {"width": 0}}}, "cameras.front.width is 0"),
        ({"cameras": {"front": {"fps": "fast"}}}, r"cameras.front.fps is 'fast' \(str\), expected an integer"),
        ({"scheduler.rtt_quantile": 1.5}, r"scheduler.rtt_quantile is 1.5, must be in \(0, 1\]"),
        ({"scheduler.execution_horizon": 0}, r"scheduler.execution_horizon is 0.0, must be in \(0, 1\]"),
        ({"scheduler.execution_horizon": 1.5}, r"scheduler.execution_horizon is 1.5, must be in \(0, 1\]"),
        ({"scheduler.rtt_std_factor": -1}, "scheduler.rtt_std_factor is -1.0, must be >= 0"),
        ({"scheduler.rtt_prior_std_s": -0.1}, "scheduler.rtt_prior_std_s is -0.1, must be >= 0"),
        ({"control.max_state_age_s": 0}, "control.max_state_age_s is 0.0, must be > 0"),
        ({"control.max_consecutive_faults": 0}, "control.max_consecutive_faults is 0, must be >= 1"),
        ({"record": "here"}, "record must be a table"),
        ({"duration_s": 0}, "duration_s is 0.0, must be > 0"),
    ],
)
def test_bad_values_name_the_field_and_the_value(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        AgentConfig.load(None, overrides)
    assert info.value.field is not None


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config .*nope\.toml: no such file"):
        AgentConfig.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[control\n")
    with pytest.raises(ConfigError, match=r"config .*bad\.toml: not valid TOML"):
        AgentConfig.load(bad)


def test_config_is_frozen() -> None:
    config = AgentConfig.load()
    with pytest.raises(AttributeError):
        config.control.rate_hz = 5.0  # type: ignore[misc]


def test_unconfigured_cameras_take_the_default_kind_at_the_policy_size() -> None:
    config = AgentConfig.load(None, {"default_camera": "usb", "cameras": {"front": {"kind": "sim"}}})
    assert config.camera_for("front", 96, 128).kind == "sim"
    wrist = config.camera_for("wrist", 96, 128)
    assert (wrist.kind, wrist.height, wrist.width) == ("usb", 96, 128)


def test_replanning_fault_and_staleness_options_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        """
[scheduler]
execution_horizon = 0.25
rtt_std_factor = 3
rtt_prior_std_s = 0.1
[control]
max_state_age_s = 0.05
max_consecutive_faults = 2
"""
    )
    config = AgentConfig.load(path)
    assert (config.scheduler.execution_horizon, config.scheduler.rtt_std_factor) == (0.25, 3.0)
    assert config.scheduler.rtt_prior_std_s == 0.1
    assert (config.control.max_state_age_s, config.control.max_consecutive_faults) == (0.05, 2)
    defaults = AgentConfig.load()
    assert defaults.scheduler.execution_horizon == 0.5 and defaults.control.max_state_age_s is None


@pytest.mark.parametrize(
    "address",
    [
        "gpu-box:50051",
        "10.0.0.2:1",
        "[::1]:50051",  # IPv6 in brackets
        "localhost:65535",
    ],
)
def test_good_server_addresses_are_kept_as_written(address: str) -> None:
    assert AgentConfig.load(None, {"server.address": address}).server.address == address


@pytest.mark.parametrize(
    ("text", "port", "host"),
    [
        ("", 9101, "0.0.0.0"),  # the defaults: port 9101 on every interface
        ("metrics_port = 0", 0, "0.0.0.0"),  # any free port (the agent logs which)
        ("metrics_port = false", None, "0.0.0.0"),  # no endpoint
        ('metrics_port = 9200\nmetrics_host = "127.0.0.1"', 9200, "127.0.0.1"),
        ('metrics_host = "::"', 9101, "::"),  # every IPv6 interface
    ],
)
def test_metrics_port_and_host_from_toml(tmp_path: Path, text: str, port: int | None, host: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text + "\n")
    config = AgentConfig.load(path)
    assert (config.metrics_port, config.metrics_host) == (port, host)


@pytest.mark.parametrize("rate", [1001.0, 5000.0, 1e9])
def test_a_control_rate_no_arm_takes_is_refused_naming_the_field(rate: float) -> None:
    """``--rate 1e9`` was accepted and the loop spun at whatever the CPU allowed."""
    with pytest.raises(ConfigError, match=r"control.rate_hz is .*, must be <= 1000") as info:
        AgentConfig.load(None, {"control.rate_hz": rate})
    assert info.value.field == "control.rate_hz"

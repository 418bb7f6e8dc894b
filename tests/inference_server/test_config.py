"""ServerConfig: defaults, TOML files, overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference_server import ConfigError, ServerConfig, load_config


def test_defaults() -> None:
    config = ServerConfig(policy=Path("b"))
    assert (config.host, config.port, config.metrics_port) == ("0.0.0.0", 50051, 9100)
    assert (config.max_batch, config.max_queue_delay_ms, config.warmup_iters) == (8, 0.0, 3)
    assert config.device is None and config.precision is None and config.backend is None


def test_toml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('[server]\npolicy = "bundles/demo"\nport = 6000\nmax_batch = 4\n')
    config = load_config(path, port=7000, precision=None)
    assert config.policy == (tmp_path / "bundles/demo").resolve()  # relative to the file
    assert (config.port, config.max_batch, config.precision) == (7000, 4, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('policy = "b"\nprot = 1\n', r"config .*server\.toml: unknown key 'prot'"),  # typo
        ('policy = "b"\nport = 70000\n', r"config .*: port is 70000, expected 0\.\.65535"),  # out of range
        ('policy = "b"\nmax_batch = 0\n', r"max_batch is 0, expected >= 1"),
        ('policy = "b"\nprecision = "fp8"\n', r"precision is 'fp8'"),
        ('policy = "b"\ndevice = "gpu"\n', r"device is 'gpu', expected cpu, cuda or cuda:N"),
        ("policy = \n", r"not valid TOML"),
        ("port = 1\n", r"no policy given"),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "server.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(Path("/nonexistent/server.toml"))

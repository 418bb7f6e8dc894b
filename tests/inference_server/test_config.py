"""ServerConfig: defaults, TOML files, overrides and validation."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from unittest import mock

import pytest

from inference_server import ConfigError, ServerConfig, cli, load_config


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
        (
            'policy = "b"\nbackend = "tf"\n',
            r"backend is 'tf', expected one of torch, onnx, tensorrt, torch_tensorrt",
        ),
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


# A wrong-typed value for every field, as a TOML file can hold one: each type the field is not.
_WRONG_TOML: dict[type, list[str]] = {
    int: ['"8"', "true", "2.5", "[1]"],
    float: ['"1.5"', "false", "nan", "inf", "{ a = 1 }"],
    bool: ['"true"', "1", "[true]"],
    str: ["1", "true", '["cpu"]'],
    Path: ["3", "true", '["b"]'],
}


def _wrong_values() -> list[tuple[str, str]]:
    hints = typing.get_type_hints(ServerConfig)
    cases = []
    for f in dataclasses.fields(ServerConfig):
        hint = hints[f.name]
        base = (
            next(a for a in typing.get_args(hint) if a is not type(None)) if typing.get_args(hint) else hint
        )
        cases += [(f.name, value) for value in _WRONG_TOML[base]]
    return cases


@pytest.mark.parametrize(("field", "value"), _wrong_values())
def test_every_field_of_the_wrong_type_is_named_by_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str
) -> None:
    path = tmp_path / "server.toml"
    policy = "" if field == "policy" else 'policy = "b"\n'
    path.write_text(f"{policy}{field} = {value}\n")
    with mock.patch.object(cli, "run") as run, pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(path)])
    assert exit_info.value.code == 1
    run.assert_not_called()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert re.fullmatch(rf"ConfigError: config \S+server\.toml: {field} is .+, expected .+", err), err
    assert "unexpected" not in err


def test_every_field_has_a_wrong_type_case() -> None:
    assert {name for name, _ in _wrong_values()} == {f.name for f in dataclasses.fields(ServerConfig)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": "abc"}, "port is 'abc' (str), expected an integer"),  # the examples
        ({"max_batch": "8"}, "max_batch is '8' (str), expected an integer"),
        ({"metrics_port": True}, "metrics_port is True (bool), expected an integer (or false for none)"),
        ({"warmup_iters": 2.5}, "warmup_iters is 2.5 (float), expected an integer"),
    ],
)
def test_wrong_types_built_in_python_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as exc_info:
        ServerConfig(policy=Path("b"), **kwargs)  # type: ignore[arg-type]
    assert exc_info.value.field == next(iter(kwargs))


def test_right_types_are_kept_and_an_integer_is_a_float() -> None:
    config = ServerConfig(policy="b", max_queue_delay_ms=2, graceful_shutdown_s=1, metrics_port=None)  # type: ignore[arg-type]
    assert config.policy == Path("b")
    assert (config.max_queue_delay_ms, config.graceful_shutdown_s) == (2.0, 1.0)
    assert isinstance(config.max_queue_delay_ms, float) and config.metrics_port is None


def test_a_server_key_that_is_not_a_table(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text("server = 3\n")
    with pytest.raises(ConfigError, match=r"server is 3, expected a table"):
        load_config(path)

"""``robot-agent eval``'s counts, rates and output path are checked before any episode runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from robot_agent import cli


@pytest.fixture
def evals(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    monkeypatch.setattr(cli, "run_eval", lambda *args: seen.append(args))
    return seen


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--min-success", "1.5"], "argument --min-success: '1.5', expected a success rate in 0..1"),
        (["--min-success", "-0.1"], "argument --min-success: '-0.1', expected a success rate in 0..1"),
        (["--min-success", "nan"], "argument --min-success: 'nan', expected a success rate in 0..1"),
        (["--min-success", "half"], "argument --min-success: 'half' is not a number"),
        (["--episode-timeout", "0"], "argument --episode-timeout: '0', expected seconds > 0"),
        (["--episode-timeout", "inf"], "argument --episode-timeout: 'inf', expected seconds > 0"),
    ],
)
def test_out_of_range_flags_exit_2_before_any_episode(
    capsys: pytest.CaptureFixture[str], evals: list[Any], flag: list[str], message: str
) -> None:
    """``--min-success 1.5`` ran every episode, then failed a 100 % run; ``nan`` passed any run."""
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", *flag])
    assert info.value.code == 2
    assert message in capsys.readouterr().err and evals == []


def test_json_into_a_folder_is_refused_before_any_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], evals: list[Any]
) -> None:
    """``--json`` was written after every episode had run: a bad path wasted the evaluation."""
    assert cli.main(["eval", "--json", str(tmp_path)]) == 1
    assert capsys.readouterr().err == f"ConfigError: --json {tmp_path} is a folder, expected a file path\n"
    assert evals == []


def test_json_under_a_file_is_refused_before_any_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], evals: list[Any]
) -> None:
    (tmp_path / "f").write_text("")
    target = tmp_path / "f" / "r.json"
    assert cli.main(["eval", "--json", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ConfigError: --json {target}: cannot make its folder: ") and err.count("\n") == 1
    assert evals == []


@pytest.mark.parametrize(
    ("argv", "toml", "message"),
    [
        (
            ["--camera", "usb"],
            "",
            "ConfigError: default_camera is 'usb': eval renders the simulated world's cameras (--camera sim)\n",
        ),
        (
            [],
            '[cameras.front]\nkind = "realsense"\nserial = "1"\n',
            "ConfigError: cameras.front.kind is 'realsense': eval renders the simulated world's cameras "
            "(kind = 'sim')\n",
        ),
    ],
)
def test_eval_with_a_real_camera_is_refused_before_connecting(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    toml: str,
    message: str,
) -> None:
    """``eval --camera usb`` connected the sim arm, then opened /dev/video0 to score the sim world."""
    import robot_agent.evaluation

    def connect_nothing(config: Any) -> None:
        raise AssertionError(f"eval tried to create robot {config.kind}")

    monkeypatch.setattr(robot_agent.evaluation, "create_robot", connect_nothing)
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)
    path = tmp_path / "agent.toml"
    path.write_text(toml)
    assert cli.main(["eval", "--config", str(path), "--episodes", "1", *argv]) == 1
    assert capsys.readouterr().err == message


def test_a_negative_seed_exits_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], evals: list[Any]
) -> None:
    """'eval --seed -1' connected the arm, then ended with 'ValueError: expected non-negative integer'."""
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--seed", "-1"])
    assert info.value.code == 2
    assert "argument --seed: '-1', expected an integer >= 0 (scene seeds)" in capsys.readouterr().err
    assert evals == []

"""``python -m vla_demo``'s flags without running anything: ``_run`` patched."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from vla_demo import cli
from vla_demo.demo import DEFAULT_POLICY
from vla_demo.train import TrainConfig


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(cli, "_run", lambda args: (seen.append(args), 0)[1])
    return seen


def test_top_level_help_is_prose_not_the_module_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and "flags -> config" not in out  # the raw docstring it used to show
    assert cli.DESCRIPTION in out and "examples:" in out
    assert "no command means demo" in out


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_each_option_shows_its_default_once(command: str) -> None:
    _, commands = cli._build()
    for action in commands[command]._actions:
        if action.dest == "help":
            continue
        assert action.help is not None and action.help.count("(default: ") == 1, (command, action.dest)


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_the_defaults_shown_are_the_values_used(command: str) -> None:
    _, commands = cli._build()
    checked = 0
    for action in commands[command]._actions:
        default = action.default
        if (
            action.dest == "help"
            or isinstance(default, bool)
            or not isinstance(default, int | float | str | Path)
        ):
            continue
        assert action.help is not None
        shown = action.help.split("(default: ", 1)[1].rstrip(")")
        expected = f"{default:g}" if isinstance(default, float) else str(default)
        if default == DEFAULT_POLICY:  # shown relative to the checkout, which the absolute path names
            expected = f"{DEFAULT_POLICY.parent.name}/{DEFAULT_POLICY.name} of this checkout"
            assert DEFAULT_POLICY.parent.parent == Path(cli.__file__).resolve().parent.parent
        assert shown == expected, (command, action.dest)
        checked += 1
    assert checked >= 1


def test_train_defaults_are_train_configs() -> None:
    args = cli.build_parser().parse_args(["train"])
    t = TrainConfig()
    assert (args.epochs, args.batch_size, args.lr, args.threads, args.seed, args.max_steps) == (
        t.epochs,
        t.batch_size,
        t.lr,
        t.threads,
        t.seed,
        t.max_steps,
    )


def test_config_values_apply_and_flags_win(tmp_path: Path, ran: list[argparse.Namespace]) -> None:
    path = tmp_path / "demo.toml"
    path.write_text('episodes = 3\nseed = 7\nblend = "ensemble"\nvideo = ""\ninject-latency-ms = 50\n')
    assert cli.main(["demo", "--config", str(path), "--seed", "9"]) == 0
    args = ran[0]
    assert (args.episodes, args.seed, args.blend, args.inject_latency_ms) == (3, 9, "ensemble", 50.0)
    assert args.video == Path("")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("episodes = ", "is not valid TOML: "),
        ("epochs = 3", "'epochs' is not an option of 'demo' (known: "),
        ('episodes = "ten"', "episodes is 'ten', expected an integer"),
        ("episodes = 2.5", "episodes is 2.5, expected an integer"),
        ("inject_latency_ms = true", "inject_latency_ms is True, expected a number"),
        ('blend = "average"', "blend is 'average', expected one of replace, crossfade, ensemble"),
        ("policy = 3", "policy is 3, expected a string"),
        ('debug = "yes"', "debug is 'yes', expected true or false"),
    ],
)
def test_a_broken_config_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ran: list[argparse.Namespace], text: str, message: str
) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(text + "\n")
    assert cli.main(["demo", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ConfigFileError: config file {str(path)!r}") and message in err, err
    assert err.count("\n") == 1 and ran == []


def test_a_missing_config_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.toml"
    assert cli.main(["evaluate", "--config", str(missing)]) == 1
    assert capsys.readouterr().err == f"ConfigFileError: config file {str(missing)!r} does not exist\n"


def test_a_server_url_is_refused_before_the_demo_starts(
    capsys: pytest.CaptureFixture[str], ran: list[argparse.Namespace]
) -> None:
    assert cli.main(["demo", "--server", "http://gpu-box:50051"]) == 1
    assert capsys.readouterr().err.startswith(
        "ConfigError: server.address is 'http://gpu-box:50051': no scheme (http:) here"
    )
    assert ran == []


def test_flags_are_not_abbreviated(capsys: pytest.CaptureFixture[str]) -> None:
    """A config value is overridden only by a flag given in full, so abbreviations are refused."""
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--epi", "3"])
    assert info.value.code == 2
    assert "unrecognized arguments: --epi 3" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--episodes", "0"], "argument --episodes: 0, expected an integer >= 1"),
        (["evaluate", "--episodes=-3"], "argument --episodes: -3, expected an integer >= 1"),
        (["generate", "--episodes", "0"], "argument --episodes: 0, expected an integer >= 1"),
        (["demo", "--min-success", "1.5"], "argument --min-success: 1.5, expected a success rate in 0..1"),
        (["demo", "--min-success", "nan"], "argument --min-success: nan, expected a success rate in 0..1"),
        (["demo", "--seed", "-5"], "argument --seed: -5, expected an integer >= 0 (scene seeds)"),
        (["evaluate", "--replan-ms", "nan"], "argument --replan-ms: nan, expected milliseconds > 0"),
        (["evaluate", "--replan-ms", "0"], "argument --replan-ms: 0.0, expected milliseconds > 0"),
        (["evaluate", "--latency-ms", "-100"], "argument --latency-ms: -100.0, expected milliseconds >= 0"),
    ],
)
def test_counts_and_rates_out_of_range_are_bad_flags(
    capsys: pytest.CaptureFixture[str], ran: list[argparse.Namespace], argv: list[str], message: str
) -> None:
    """``demo --episodes 0`` said 'Running 0 episodes' and ran one; ``--min-success 1.5`` failed
    a 100 % run (issue 11)."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err and ran == []


def test_a_config_value_out_of_range_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ran: list[argparse.Namespace]
) -> None:
    path = tmp_path / "demo.toml"
    path.write_text("episodes = 0\n")
    assert cli.main(["demo", "--config", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"ConfigFileError: config file {str(path)!r}: episodes is 0, expected an integer >= 1\n"
    )
    assert ran == []


@pytest.mark.parametrize(("rate", "code"), [(0.5, 1), (0.8, 0)])
def test_demo_below_min_success_says_so_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rate: float, code: int
) -> None:
    from vla_demo import demo

    results = argparse.Namespace(success_rate=rate, to_dict=dict)
    monkeypatch.setattr(demo, "run_demo", lambda config, out: results)
    assert cli.main(["demo", "--min-success", "0.8", "--video", ""]) == code
    err = capsys.readouterr().err
    assert err == ("success rate 50% is below --min-success 0.8\n" if code else "")

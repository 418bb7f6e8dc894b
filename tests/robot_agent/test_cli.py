"""The CLI without servers: ``run`` patched (uvicorn's tests/test_cli.py)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from robot_agent import cli
from robot_agent.errors import DriverError
from robot_agent.runfile import RunFile, process_identity, run_file_path
from robot_agent.summary import RunStats

SUMMARY = RunStats(rate_hz=100.0, started_s=0.0, ended_s=1.0, ticks=100).to_dict()


def test_flags_become_the_config(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: dict[str, Any] = {}

    def fake_run(config, *, run_dir):  # type: ignore[no-untyped-def]
        seen.update(config=config, run_dir=run_dir)
        return SUMMARY

    monkeypatch.setattr(cli, "run", fake_run)
    code = cli.main(
        ["--server", "10.0.0.2:50051", "--rate", "250", "--instruction", "touch the red cube", "--duration", "3",
         "--blend", "ensemble", "--interpolation", "ruckig", "--metrics-port", "0", "--metrics-host", "127.0.0.1",
         "--record", "/tmp/x"]
    )  # fmt: skip
    assert code == 0
    config = seen["config"]
    assert config.server.address == "10.0.0.2:50051"
    assert config.control.rate_hz == 250.0 and config.control.blend == "ensemble"
    assert config.control.interpolation == "ruckig"
    assert config.instruction == "touch the red cube" and config.duration_s == 3.0
    # 0: any free port, as on the server
    assert config.metrics_port == 0 and config.metrics_host == "127.0.0.1"
    assert config.record.dir == "/tmp/x"
    assert seen["run_dir"] == Path(tempfile.gettempdir()) / f"vla-deploy-{os.getuid()}"  # no XDG_RUNTIME_DIR
    out = capsys.readouterr().out
    assert out.startswith("Run summary") and "ticks                  100" in out


def test_flags_override_the_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "agent.toml"
    path.write_text('[control]\nrate_hz = 50\nblend = "replace"\n')
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "run", lambda config, **_: seen.setdefault("config", config) and SUMMARY)
    assert cli.main(["--config", str(path), "--rate", "200"]) == 0
    assert seen["config"].control.rate_hz == 200.0 and seen["config"].control.blend == "replace"


def test_agent_errors_print_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    def fail(config, **_):  # type: ignore[no-untyped-def]
        raise DriverError("robot franka at 172.16.0.2: connect failed: timed out")

    monkeypatch.setattr(cli, "run", fail)
    assert cli.main(["--robot", "franka"]) == 1
    err = capsys.readouterr().err
    assert err == "DriverError: robot franka at 172.16.0.2: connect failed: timed out\n"


def test_debug_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(config, **_):  # type: ignore[no-untyped-def]
        raise DriverError("boom")

    monkeypatch.setattr(cli, "run", fail)
    with pytest.raises(DriverError):
        cli.main(["--debug"])


def test_unexpected_errors_suggest_debug(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cli, "run", lambda config, **_: 1 / 0)
    assert cli.main([]) == 1
    assert (
        capsys.readouterr().err
        == "ZeroDivisionError: division by zero (rerun with --debug for the traceback)\n"
    )


def test_bad_config_values_exit_1_naming_the_field(capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["--rate", "-1"]) == 1
    assert capsys.readouterr().err == "ConfigError: control.rate_hz is -1.0, must be > 0\n"


def test_eval_subcommand(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from robot_agent.evaluation import EpisodeOutcome, EvalResults

    outcome = EpisodeOutcome(0, 3, "touch the red cube", "red", "success", "reached the red cube", "red", 4.2,
                             {"waiting_for_server": 1, "late": 2}, 2, 0.012, 0)  # fmt: skip
    seen: dict[str, Any] = {}

    def fake_eval(config, episodes, seed, episode_timeout_s):  # type: ignore[no-untyped-def]
        seen.update(config=config, episodes=episodes, seed=seed)
        return EvalResults((outcome,), config.server.inject_latency_ms, 0.0, config.control.blend, "linear")

    monkeypatch.setattr(cli, "run_eval", fake_eval)
    out_json = tmp_path / "r.json"
    code = cli.main(["eval", "--episodes", "1", "--seed", "3", "--inject-latency-ms", "100", "--blend", "replace",
                     "--json", str(out_json)])  # fmt: skip
    assert code == 0
    assert seen["episodes"] == 1 and seen["seed"] == 3
    assert seen["config"].server.inject_latency_ms == 100.0
    out = capsys.readouterr().out
    assert "success rate      1/1 (100%)" in out and "holds             2 (late 2)" in out
    assert '"success_rate": 1.0' in out_json.read_text()


def test_every_option_has_help_with_a_default() -> None:
    parsers = (
        cli.build_parser(),
        cli.build_eval_parser(),
        cli.build_check_parser(),
        cli.build_estop_parser(),
    )
    for parser in parsers:
        for action in parser._actions:
            if action.dest == "help":
                continue
            assert action.help and "(default: " in action.help, action.dest
            # The help says what the option does, not only its default (--log-level said "(default: info)").
            assert len(action.help.split("(default: ")[0].strip()) > 10, action.dest


def _shown_default(help_text: str) -> str:
    return help_text.split("(default: ", 1)[1].split(",")[0].rstrip(")")


@pytest.mark.parametrize("build", [cli.build_parser, cli.build_eval_parser, cli.build_check_parser])
def test_the_defaults_shown_are_the_configs(build: Any) -> None:
    """A default in ``--help`` is the value the config takes when the flag is not given."""
    config = cli.AgentConfig.load()
    checked = 0
    for action in build()._actions:
        key = {
            "server": config.server.address,
            "robot": config.robot.kind,
            "camera": config.default_camera,
            "instruction": repr(config.instruction),
            "rate": f"{config.control.rate_hz:g}",
            "blend": config.control.blend,
            "interpolation": config.control.interpolation,
            "metrics_port": str(config.metrics_port),
            "metrics_host": config.metrics_host,
            "inject_latency_ms": f"{config.server.inject_latency_ms:g}",
            "inject_jitter_ms": f"{config.server.inject_jitter_ms:g}",
        }.get(action.dest)
        if key is not None and action.nargs != 0:  # not a switch such as --no-metrics
            assert _shown_default(action.help) == key, action.dest
            checked += 1
    assert checked >= 3  # check: server, robot, camera


def test_eval_shows_the_defaults_it_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    from robot_agent.evaluation import EvalResults

    seen: dict[str, Any] = {}

    def fake_eval(config, *args):  # type: ignore[no-untyped-def]
        seen["args"] = args
        return EvalResults((), 0.0, 0.0, config.control.blend, config.control.interpolation)

    monkeypatch.setattr(cli, "run_eval", fake_eval)
    assert cli.main(["eval"]) == 0
    parser = cli.build_eval_parser()
    shown = {a.dest: _shown_default(a.help) for a in parser._actions if a.help and "(default: " in a.help}
    episodes, seed, timeout = seen["args"]
    assert (shown["episodes"], shown["seed"], shown["episode_timeout"]) == (
        str(episodes),
        str(seed),
        f"{timeout:g}",
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),  # any free port, logged by the agent
        ("9200", 9200),
        ("off", None),  # no endpoint
        ("none", None),
    ],
)
def test_metrics_port_flag(monkeypatch: pytest.MonkeyPatch, value: str, expected: int | None) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "run", lambda config, **_: seen.setdefault("config", config) and SUMMARY)
    assert cli.main(["--metrics-port", value]) == 0
    assert seen["config"].metrics_port == expected


def test_no_metrics_as_on_the_server(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "agent.toml"
    path.write_text("metrics_port = 9200\n")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "run", lambda config, **_: seen.setdefault("config", config) and SUMMARY)
    assert cli.main(["--config", str(path), "--no-metrics"]) == 0
    assert seen["config"].metrics_port is None
    with pytest.raises(SystemExit) as info:
        cli.main(["--no-metrics", "--metrics-port", "9101"])
    assert info.value.code == 2
    assert "argument --metrics-port: not allowed with argument --no-metrics" in capsys.readouterr().err


def test_a_bad_metrics_port_is_a_usage_error(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        cli.main(["--metrics-port", "70000"])
    assert info.value.code == 2
    assert "argument --metrics-port: '70000' is not a port 0-65535 or 'off'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (
            "http://gpu-box:50051",
            "ConfigError: server.address is 'http://gpu-box:50051': no scheme (http:) here, the agent speaks "
            "plain gRPC to HOST:PORT; write 'gpu-box:50051'\n",
        ),
        (
            "gpu-box",
            "ConfigError: server.address is 'gpu-box', expected HOST:PORT (port 1-65535, IPv6 as [::1]:PORT)\n",
        ),
    ],
)
@pytest.mark.parametrize("command", [[], ["eval"], ["check"]])
def test_a_server_url_is_refused_before_anything_connects(
    monkeypatch: pytest.MonkeyPatch, capsys, command: list[str], address: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    import robot_agent.check

    called: list[str] = []
    monkeypatch.setattr(cli, "run", lambda config, **_: called.append("run"))
    monkeypatch.setattr(cli, "run_eval", lambda *args: called.append("eval"))
    monkeypatch.setattr(robot_agent.check, "run_check", lambda config: called.append("check"))
    assert cli.main([*command, "--server", address]) == 1
    assert called == []
    assert capsys.readouterr().err == message


@pytest.mark.parametrize(
    "flag",
    [
        ["--record", "/tmp/x"],
        ["--blend", "replace"],
        ["--interpolation", "linear"],
        ["--instruction", "touch the red cube"],
        ["--metrics-port", "9101"],
        ["--rate", "250"],
    ],
)
def test_check_has_no_flags_that_do_nothing(capsys, flag: list[str]) -> None:  # type: ignore[no-untyped-def]
    """check never commands the arm, records, or serves metrics: these flags used to be accepted and ignored."""
    with pytest.raises(SystemExit) as info:
        cli.main(["check", *flag])
    assert info.value.code == 2
    assert f"unrecognized arguments: {' '.join(flag)}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [["--instruction", "touch the red cube"], ["--metrics-port", "9101"]])
def test_eval_refuses_flags_it_cannot_honour(capsys, flag: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Each scene gives its own instruction and eval serves no metrics: the flags were silently ignored."""
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", *flag])
    assert info.value.code == 2
    assert f"unrecognized arguments: {' '.join(flag)}" in capsys.readouterr().err


def test_eval_says_a_configured_instruction_is_not_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from robot_agent.evaluation import EvalResults

    path = tmp_path / "agent.toml"
    path.write_text('instruction = "stack the cubes"\n')
    monkeypatch.setattr(cli, "configure_logging", lambda level: None)  # keep caplog's handler
    monkeypatch.setattr(
        cli, "run_eval", lambda config, *args: EvalResults((), 0.0, 0.0, "crossfade", "linear")
    )
    assert cli.main(["eval", "--config", str(path)]) == 0
    assert (
        "eval: instruction 'stack the cubes' from the config is not used; each scene gives its own"
        in caplog.text
    )


def test_help_lists_every_subcommand_run_included(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: robot-agent [run] [options]  |  robot-agent {eval,check,estop} [options]")
    for command in ("run", "eval", "check", "estop"):
        assert f"\n  {command:<6} " in out, command


def test_run_is_the_default_and_can_be_named(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    monkeypatch.setattr(cli, "run", lambda config, **_: (seen.append(config.control.rate_hz), SUMMARY)[1])
    assert cli.main(["run", "--rate", "50"]) == 0 and cli.main(["--rate", "60"]) == 0
    assert seen == [50.0, 60.0]


def test_a_run_ended_by_the_estop_exits_3_after_the_summary(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    stats = RunStats(rate_hz=100.0, started_s=0.0, ended_s=1.0, ticks=100, estops=1)
    stats.estop_reason = "operator signal SIGUSR1"
    monkeypatch.setattr(cli, "run", lambda config, **_: stats.to_dict())
    assert cli.main([]) == cli.EXIT_ESTOP == 3
    captured = capsys.readouterr()
    assert (
        captured.out.startswith("Run summary")
        and "e-stops                1 (operator signal SIGUSR1)" in captured.out
    )
    assert captured.err == "E-stop latched: operator signal SIGUSR1; the run ended (exit 3)\n"


@pytest.mark.parametrize(
    ("flags", "xdg", "expected"),
    [
        ([], "/run/user/1000", "/run/user/1000/vla-deploy"),  # per-user runtime dir
        (["--run-dir", "/srv/vla"], "/run/user/1000", "/srv/vla"),  # the flag wins
    ],
)
def test_the_run_dir_comes_from_the_flag_or_xdg_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, flags: list[str], xdg: str, expected: str
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setenv("XDG_RUNTIME_DIR", xdg)
    monkeypatch.setattr(
        cli, "run", lambda config, *, run_dir: seen.setdefault("run_dir", run_dir) and SUMMARY
    )
    assert cli.main(flags) == 0
    assert seen["run_dir"] == Path(expected)


def test_help_documents_the_exit_codes_and_the_estop(capsys) -> None:  # type: ignore[no-untyped-def]
    for argv in (["--help"], ["estop", "--help"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 0
        out = capsys.readouterr().out
        for code, meaning in cli.EXIT_CODES.items():
            assert f"  {code:<4} {meaning}" in out
    assert sorted(cli.EXIT_CODES) == [0, 1, 2, 3, 4, 130]


@pytest.fixture
def other_agent(run_dir: Path, sleeper: subprocess.Popen[bytes]) -> tuple[Path, int]:
    """A live process with a run file saying it drives the Franka at 10.0.0.2: (run dir, pid)."""
    identity = process_identity(sleeper.pid)
    assert identity is not None
    path = run_file_path(run_dir, sleeper.pid)
    RunFile(
        path, pid=sleeper.pid, identity=identity, server="gpu:1", robot="franka", robot_ip="10.0.0.2"
    ).write("running")
    return run_dir, sleeper.pid


@pytest.mark.parametrize("command", [[], ["check"]])
def test_an_arm_driven_by_a_live_agent_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys, other_agent: tuple[Path, int], command: list[str]
) -> None:  # type: ignore[no-untyped-def]
    """A second agent or a preflight would start another controller (Franka) under the running one."""
    import robot_agent.check

    run_dir, pid = other_agent
    called: list[str] = []
    monkeypatch.setattr(cli, "run", lambda config, **_: called.append("run"))
    monkeypatch.setattr(robot_agent.check, "run_check", lambda config: called.append("check"))
    code = cli.main([*command, "--robot", "franka", "--robot-ip", "10.0.0.2", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert (code, called) == (1, [])
    assert err.startswith(
        f"RobotInUse: robot franka at 10.0.0.2 is driven by robot-agent {pid} (robot franka at 10.0.0.2, "
        "server gpu:1, started "
    )
    assert err.endswith(f"; stop it first (Ctrl-C, or robot-agent estop --pid {pid})\n")


@pytest.mark.parametrize(
    "flags",
    [
        ["--robot", "franka", "--robot-ip", "10.0.0.3"],  # another arm
        ["--robot", "sim"],  # each simulated arm is its own
    ],
)
def test_other_arms_are_not_refused(
    monkeypatch: pytest.MonkeyPatch, other_agent: tuple[Path, int], flags: list[str]
) -> None:
    run_dir, _ = other_agent
    monkeypatch.setattr(cli, "run", lambda config, **_: SUMMARY)
    assert cli.main([*flags, "--run-dir", str(run_dir)]) == 0


def test_eval_on_a_real_arm_is_refused_before_connecting(  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    """``eval`` scores the simulated task; it used to connect (start the controller of) a real arm
    first and only then find it had no simulated world."""
    import robot_agent.evaluation

    def connect_nothing(config):  # type: ignore[no-untyped-def]
        raise AssertionError(f"eval tried to create robot {config.kind}")

    monkeypatch.setattr(robot_agent.evaluation, "create_robot", connect_nothing)
    config = tmp_path / "arm.toml"
    config.write_text('[robot]\nkind = "franka"\nip = "10.0.0.2"\n')
    assert cli.main(["eval", "--config", str(config), "--episodes", "1"]) == 1
    assert capsys.readouterr().err == (
        "ConfigError: robot.kind is 'franka': eval needs the simulated arm and its world (robot.kind = 'sim')\n"
    )


def test_eval_has_no_flag_to_pick_another_arm(capsys) -> None:  # type: ignore[no-untyped-def]
    """eval drives the simulated arm only: its --help used to offer --robot franka|xarm, always refused."""
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--help"])
    assert info.value.code == 0
    assert "--robot" not in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["eval", "--robot", "franka"])
    assert info.value.code == 2

"""The CLI without servers: flags become the right config; errors are one line and exit 1."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from inference_server import ServerConfig, cli


def test_flags_become_a_config(tmp_path: Path) -> None:
    with mock.patch.object(cli, "run") as run:
        cli.main(["--policy", str(tmp_path), "--port", "0", "--metrics-port", "9200", "--precision", "fp16",
                  "--device", "cuda:0", "--max-batch", "2", "--max-queue-delay-ms", "1.5"])  # fmt: skip
    config = run.call_args.args[0]
    assert config == ServerConfig(
        policy=tmp_path,
        port=0,
        metrics_port=9200,
        precision="fp16",
        device="cuda:0",
        max_batch=2,
        max_queue_delay_ms=1.5,
    )


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('policy = "b"\nport = 6000\nwarmup_iters = 9\n')
    with mock.patch.object(cli, "run") as run:
        cli.main(["--config", str(path), "--port", "6001", "--no-metrics"])
    config = run.call_args.args[0]
    assert (config.port, config.warmup_iters, config.metrics_port) == (6001, 9, None)


def test_serve_is_the_default_command_and_explicit_too(tmp_path: Path) -> None:
    with mock.patch.object(cli, "run") as run:
        cli.main(["serve", "--policy", str(tmp_path)])
    assert run.call_args.args[0].policy == tmp_path


def test_broken_config_prints_one_line_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "server.toml"
    path.write_text('policy = "b"\nmax_batch = -3\n')
    with mock.patch.object(cli, "run") as run, pytest.raises(SystemExit) as exit_info:
        cli.main(["--config", str(path)])
    assert exit_info.value.code == 1
    run.assert_not_called()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("ConfigError: config ") and "max_batch is -3" in err


def test_a_missing_bundle_is_one_line_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--policy", str(tmp_path / "none"), "--port", "0", "--no-metrics", "--log-level", "error"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().startswith("BundleError: bundle ")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text("port = 1\n")
    from inference_server import ConfigError

    with pytest.raises(ConfigError):
        cli.main(["--config", str(path), "--debug"])


@pytest.mark.parametrize(
    "make_parser", [cli.serve_parser, cli.bench_parser, cli.new_bundle_parser, cli.build_engine_parser]
)
def test_every_option_has_help_with_a_shown_default(make_parser) -> None:  # type: ignore[no-untyped-def]
    parser = make_parser()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, action.dest
        if action.option_strings:  # positionals are required by nature
            text = action.help % {"default": action.default}
            assert "default" in text or "required" in text, action.option_strings


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "--max-queue-delay-ms" in capsys.readouterr().out


def test_bench_and_new_bundle_dispatch(tmp_path: Path) -> None:
    with mock.patch("inference_server.bench.bench_model") as bench:
        cli.main(["bench", "--policy", str(tmp_path), "--batch", "2", "--iters", "5"])
    assert bench.call_args.kwargs["batch"] == 2 and bench.call_args.kwargs["iters"] == 5
    with mock.patch("inference_server.new_bundle.write_example_bundle", return_value=tmp_path) as write:
        cli.main(["new-bundle", str(tmp_path / "x"), "--backend", "onnx", "--seed", "3"])
    assert write.call_args.kwargs == {"backend": "onnx", "seed": 3, "name": "example"}


@pytest.mark.parametrize(("argv", "message"), [
    (["bench", "--policy", "b", "--iters", "0"], "argument --iters: 0 is below 1"),  # was an IndexError
    (["bench", "--policy", "b", "--batch", "0"], "argument --batch: 0 is below 1"),
    (["bench", "--policy", "b", "--warmup-iters", "-1"], "argument --warmup-iters: -1 is below 0"),
    (["bench", "--policy", "b", "--batch", "x"], "argument --batch: 'x' is not an integer"),
    (["build-engine", "a.onnx", "b.engine", "--max-batch", "0"], "argument --max-batch: 0 is below 1"),
    (["build-engine", "a.onnx", "b.engine", "--workspace-mib", "0"], "argument --workspace-mib: 0 is below 1"),
])  # fmt: skip
def test_subcommand_counts_out_of_range_name_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with mock.patch("inference_server.bench.bench_model") as bench, pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    bench.assert_not_called()
    assert capsys.readouterr().err.strip().endswith(f"error: {message}")


def test_new_bundle_onto_a_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["new-bundle", str(tmp_path / "taken")])
    assert exit_info.value.code == 1
    assert (
        capsys.readouterr().err
        == f"ServerError: new-bundle: {tmp_path / 'taken'} exists and is not a folder\n"
    )

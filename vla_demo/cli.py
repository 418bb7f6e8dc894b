"""``python -m vla_demo [demo|generate|train|evaluate]``: flags -> config -> one function.

    python -m vla_demo                                  # = make demo: serve policies/demo, 10 episodes
    python -m vla_demo train --out policies/demo        # reproduce the bundle (data, training, export)
    python -m vla_demo evaluate --episodes 50           # offline, faster than real time, no server

The only module that reads flags, configures logging, prints and exits. Errors print one line,
``TypeName: message``, and exit 1 (the traceback with ``--debug``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from robot_agent.config import BLEND_MODES
from safety.config_loader import show_default

__all__ = ["ConfigFileError", "build_parser", "main"]

COMMANDS = ("demo", "generate", "train", "evaluate")
DEFAULT_DATA = Path("build/vla_demo/data-{episodes}-s{seed}.npz")
LOG_LEVELS = ("debug", "info", "warning", "error")
DESCRIPTION = "The demo policy end to end on the simulated pick task: data, training, serving, evaluation."
EXAMPLES = """examples:
  python -m vla_demo                             # = make demo: serve policies/demo, 10 episodes
  python -m vla_demo train --out policies/demo   # reproduce the bundle (data, training, export)
  python -m vla_demo evaluate --episodes 50      # offline, faster than real time, no server

'python -m vla_demo COMMAND --help' shows each command's options; no command means demo.
Errors print one line, TypeName: message, and exit 1 (the traceback with --debug)."""


class ConfigFileError(Exception):
    """Raised when a ``--config`` file is missing, not TOML, or holds a key or value the command
    does not take; the message names the file and the key."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m vla_demo`` parser, one subparser per command; every help shows its default."""
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    from robot_agent.drivers.sim import ENGINES, TASKS
    from vla_demo.demo import DEFAULT_POLICY, DemoConfig
    from vla_demo.train import TrainConfig

    d, t = DemoConfig(), TrainConfig()

    def shown(config: DemoConfig | TrainConfig, field: str, note: str = "") -> str:
        """``(default: X)``, X the dataclass's own default: help and the value used cannot disagree."""
        return f"(default: {show_default(getattr(config, field))}{', ' + note if note else ''})"

    policy_default = f"{DEFAULT_POLICY.parent.name}/{DEFAULT_POLICY.name} of this checkout"
    parser = argparse.ArgumentParser(
        prog="python -m vla_demo",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="{demo,generate,train,evaluate}")
    commands: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        # No abbreviations: a flag is known as given by its full name (a --config value never wins).
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        p.add_argument(
            "--config",
            metavar="FILE.toml",
            help="TOML file of option = value (the long option names); flags override it (default: none)",
        )
        p.add_argument(
            "--log-level",
            default="warning",
            choices=LOG_LEVELS,
            help="log level on stderr (default: warning)",
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks of errors (default: off)")
        commands[name] = p
        return p

    demo = command("demo", "serve the bundle and run the agent on the simulated arm, episodes scored")
    demo.add_argument(
        "--policy",
        type=Path,
        default=DEFAULT_POLICY,
        help=f"policy bundle folder (default: {policy_default})",
    )
    demo.add_argument(
        "--episodes",
        type=int,
        default=d.episodes,
        help=f"number of episodes, random scenes {shown(d, 'episodes')}",
    )
    demo.add_argument(
        "--seed", type=int, default=d.seed, help=f"scene seed of the first episode {shown(d, 'seed')}"
    )
    demo.add_argument(
        "--task",
        default=d.task,
        choices=TASKS,
        help=f"pick_place, or conveyor: the named cube rides a belt (MuJoCo only) {shown(d, 'task')}",
    )
    demo.add_argument(
        "--engine",
        default=d.engine,
        choices=ENGINES,
        help=f"mujoco physics, or the kinematic touch-the-cube sim {shown(d, 'engine')}",
    )
    demo.add_argument(
        "--video",
        type=Path,
        default=d.video,
        help=f"mp4 of the first episode's front view (wrist view: <stem>_wrist.mp4), '' for none {shown(d, 'video')}",
    )
    demo.add_argument(
        "--inject-latency-ms",
        type=float,
        default=d.inject_latency_ms,
        help=f"network delay added on the agent's side {shown(d, 'inject_latency_ms')}",
    )
    demo.add_argument(
        "--inject-jitter-ms",
        type=float,
        default=d.inject_jitter_ms,
        help=f"+- jitter on that delay {shown(d, 'inject_jitter_ms')}",
    )
    demo.add_argument(
        "--blend",
        default=d.blend,
        choices=BLEND_MODES,
        help=f"how a new chunk takes over {shown(d, 'blend')}",
    )
    demo.add_argument(
        "--server",
        metavar="HOST:PORT",
        help=f"use this running inference server, no scheme {shown(d, 'server_address', 'start one on a free port')}",
    )
    demo.add_argument(
        "--min-success",
        type=float,
        default=0.0,
        help="exit 1 when the success rate (0-1) is below this (default: 0)",
    )
    demo.add_argument("--json", type=Path, help="also write the results as JSON here (default: none)")

    gen = command("generate", "record noisy expert demonstrations")
    gen.add_argument("--episodes", type=int, default=800, help="expert episodes (default: 800)")
    gen.add_argument(
        "--seed", type=int, default=0, help="first scene seed, offset from 1_000_000 (default: 0)"
    )
    gen.add_argument("--out", type=Path, help=f"npz file to write (default: {DEFAULT_DATA})")

    train = command("train", "generate data if needed, train, export the bundle")
    train.add_argument(
        "--out", type=Path, default=DEFAULT_POLICY, help=f"bundle folder to write (default: {policy_default})"
    )
    train.add_argument(
        "--data", type=Path, help=f"npz from generate, made if missing (default: {DEFAULT_DATA})"
    )
    train.add_argument(
        "--episodes", type=int, default=800, help="expert episodes when generating (default: 800)"
    )
    train.add_argument("--seed", type=int, default=t.seed, help=f"data and training seed {shown(t, 'seed')}")
    train.add_argument(
        "--epochs", type=int, default=t.epochs, help=f"passes over the data {shown(t, 'epochs')}"
    )
    train.add_argument(
        "--batch-size", type=int, default=t.batch_size, help=f"samples per step {shown(t, 'batch_size')}"
    )
    train.add_argument(
        "--lr",
        type=float,
        default=t.lr,
        help=f"peak learning rate of the one-cycle schedule {shown(t, 'lr')}",
    )
    train.add_argument(
        "--threads", type=int, default=t.threads, help=f"torch CPU threads {shown(t, 'threads')}"
    )
    train.add_argument(
        "--max-steps",
        type=int,
        default=t.max_steps,
        help=f"stop after this many steps, for quick runs {shown(t, 'max_steps', 'no limit')}",
    )

    ev = command("evaluate", "offline evaluation in the fast simulation (no server)")
    ev.add_argument(
        "--policy",
        type=Path,
        default=DEFAULT_POLICY,
        help=f"policy bundle folder (default: {policy_default})",
    )
    ev.add_argument("--episodes", type=int, default=30, help="episodes, scene seeds 0..N-1 (default: 30)")
    ev.add_argument(
        "--latency-ms", type=float, default=0.0, help="simulated delay before a chunk is used (default: 0)"
    )
    ev.add_argument(
        "--replan-ms",
        type=float,
        default=800.0,
        help="time between observations, the agent's: half of a 1.6 s chunk (default: 800)",
    )
    ev.add_argument(
        "--runtime", choices=["torch", "onnx"], help="run the model with this instead (default: the bundle's)"
    )
    ev.add_argument(
        "--task",
        default="pick_place",
        choices=TASKS,
        help="pick_place, or conveyor: the named cube rides a belt (default: pick_place)",
    )
    return parser, commands


def _apply_config(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Values from ``--config`` replace defaults; flags given on the command line win. Raises
    :class:`ConfigFileError` naming the file (and the key) when it cannot be used."""
    if not args.config:
        return
    path = args.config
    try:
        with open(path, "rb") as f:
            values = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigFileError(f"config file {path!r} does not exist") from None
    except OSError as exc:
        raise ConfigFileError(f"config file {path!r} cannot be read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path!r} is not valid TOML: {exc}") from None
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    for key, value in values.items():
        action = actions.get(key.replace("-", "_"))
        if action is None:
            known = ", ".join(sorted(a.option_strings[0][2:] for a in actions.values()))
            raise ConfigFileError(
                f"config file {path!r}: {key!r} is not an option of {args.command!r} (known: {known})"
            )
        if not given.isdisjoint(action.option_strings):
            continue
        setattr(args, action.dest, _config_value(path, key, value, action))


def _check_ranges(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Counts and rates out of range (``--episodes 0`` ran one episode, ``--min-success 1.5``
    failed a perfect run): a bad flag exits 2 naming it; a bad ``--config`` value raises
    :class:`ConfigFileError` naming the file and the key."""
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "episodes": (lambda v: v >= 1, "expected an integer >= 1"),
        "min_success": (lambda v: 0.0 <= v <= 1.0, "expected a success rate in 0..1"),
        # evaluate: 'nan' never replanned and scored 0 %, a negative latency used chunks early
        "latency_ms": (lambda v: 0.0 <= v < math.inf, "expected milliseconds >= 0"),
        "replan_ms": (lambda v: 0.0 < v < math.inf, "expected milliseconds > 0"),
    }
    if (
        args.command == "demo"
    ):  # scene seeds: '--seed -5' ended with a bare 'ValueError: expected non-negative integer'
        checks["seed"] = (lambda v: v >= 0, "expected an integer >= 0 (scene seeds)")
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    for dest, (ok, expected) in checks.items():
        value = getattr(args, dest, None)
        if value is None or ok(value):
            continue
        flag = "--" + dest.replace("_", "-")
        if flag in given or not args.config:
            parser.error(f"argument {flag}: {value!r}, {expected}")
        raise ConfigFileError(f"config file {args.config!r}: {flag[2:]} is {value!r}, {expected}")


def _config_value(path: str, key: str, value: Any, action: argparse.Action) -> Any:
    """``value`` from the file checked against what the option takes (as its flag would be)."""
    where = f"config file {path!r}: {key}"
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where} is {value!r}, expected true or false")
        return value
    kind = action.type
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigFileError(f"{where} is {value!r}, expected an integer")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigFileError(f"{where} is {value!r}, expected a number")
        value = float(value)
    if kind in (Path, None) and not isinstance(value, str):
        raise ConfigFileError(f"{where} is {value!r}, expected a string")
    if action.choices is not None and value not in action.choices:
        raise ConfigFileError(f"{where} is {value!r}, expected one of {', '.join(map(str, action.choices))}")
    return Path(value) if kind is Path else value


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "demo")
    parser, commands = _build()
    args = parser.parse_args(argv)
    try:
        _apply_config(args, commands[args.command], argv)
        _check_ranges(args, commands[args.command], argv)
        if getattr(args, "server", None):
            _check_server(args.server)
    except Exception as exc:
        if args.debug:
            raise
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    try:
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


def _check_server(address: str) -> None:
    """``--server`` as the agent's config takes it: HOST:PORT, no scheme (``ConfigError`` if not)."""
    from robot_agent.config import AgentConfig

    AgentConfig.from_mapping({"server": {"address": address}})


def _data_path(args: argparse.Namespace) -> Path:
    return (
        args.data
        if getattr(args, "data", None)
        else Path(str(DEFAULT_DATA).format(episodes=args.episodes, seed=args.seed))
    )


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from vla_demo.demo import DemoConfig, run_demo

        config = DemoConfig(
            policy=args.policy,
            episodes=args.episodes,
            seed=args.seed,
            task=args.task,
            engine=args.engine,
            video=args.video if args.video is not None and str(args.video) not in ("", ".") else None,
            inject_latency_ms=args.inject_latency_ms,
            inject_jitter_ms=args.inject_jitter_ms,
            blend=args.blend,
            server_address=args.server,
        )
        results = run_demo(config, out=lambda line: print(line, flush=True))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results.to_dict(), indent=2) + "\n")
        if results.success_rate < args.min_success:
            print(
                f"success rate {results.success_rate:.0%} is below --min-success {args.min_success:g}",
                file=sys.stderr,
                flush=True,
            )
            return 1
        return 0
    if args.command == "generate":
        from vla_demo.data import generate

        out = args.out or _data_path(args)
        data = generate(args.episodes, seed=args.seed)
        data.save(out)
        print(f"{len(data)} samples from {args.episodes} episodes -> {out}")
        return 0
    if args.command == "train":
        from vla_demo.data import Dataset, generate
        from vla_demo.train import TrainConfig, export_bundle, train

        path = _data_path(args)
        if path.exists():
            data = Dataset.load(path, seed=args.seed)
        else:
            data = generate(args.episodes, seed=args.seed)
            data.save(path)
        train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                   threads=args.threads, max_steps=args.max_steps)  # fmt: skip
        model, stats, report = train(data, train_config)
        export_bundle(model, stats, args.out, report=report)
        summary: dict[str, Any] = {k: v for k, v in report.items() if k != "config"}
        print(f"bundle written to {args.out}: {json.dumps(summary)}")
        return 0
    if args.command == "evaluate":
        from vla_demo.evaluate import evaluate_offline

        summary_eval = evaluate_offline(
            args.policy,
            args.episodes,
            latency_s=args.latency_ms / 1000,
            replan_s=args.replan_ms / 1000,
            runtime=args.runtime,
            conveyor=args.task == "conveyor",
        )
        for r in summary_eval.results:
            print(f"{r.instruction!r:<40} {r.status:<8} {r.reason}")
        print(summary_eval.line())
        return 0
    raise AssertionError(args.command)

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
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

COMMANDS = ("demo", "generate", "train", "evaluate")
DEFAULT_DATA = Path("build/vla_demo/data-{episodes}-s{seed}.npz")


def build_parser() -> argparse.ArgumentParser:
    from vla_demo.demo import DEFAULT_POLICY, DemoConfig

    d = DemoConfig()
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m vla_demo", description=__doc__.split("\n\n")[0], formatter_class=fmt
    )
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            metavar="FILE.toml",
            default=None,
            help="TOML file of option = value; flags override it",
        )
        p.add_argument(
            "--log-level", default="warning", choices=["debug", "info", "warning", "error"], help="log level"
        )
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    demo = sub.add_parser(
        "demo", help="serve the bundle and run the agent on the simulated arm", formatter_class=fmt
    )
    common(demo)
    demo.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy bundle folder")
    demo.add_argument("--episodes", type=int, default=d.episodes, help="number of episodes (random scenes)")
    demo.add_argument("--seed", type=int, default=d.seed, help="scene seed of the first episode")
    demo.add_argument("--video", type=Path, default=d.video, help="mp4 of the first episode ('' for none)")
    demo.add_argument(
        "--inject-latency-ms",
        type=float,
        default=d.inject_latency_ms,
        help="added network delay (agent side)",
    )
    demo.add_argument("--inject-jitter-ms", type=float, default=d.inject_jitter_ms, help="added delay jitter")
    demo.add_argument(
        "--blend", default=d.blend, choices=["replace", "crossfade", "ensemble"], help="chunk blending"
    )
    demo.add_argument(
        "--server", default=None, metavar="HOST:PORT", help="use this running server instead of starting one"
    )
    demo.add_argument(
        "--min-success", type=float, default=0.0, help="exit 1 when the success rate is below this"
    )
    demo.add_argument("--json", type=Path, default=None, help="write the results as JSON here")

    gen = sub.add_parser("generate", help="record noisy expert demonstrations", formatter_class=fmt)
    common(gen)
    gen.add_argument("--episodes", type=int, default=1200, help="expert episodes")
    gen.add_argument("--seed", type=int, default=0, help="first scene seed (offset from 1_000_000)")
    gen.add_argument("--out", type=Path, default=None, help=f"npz file (default: {DEFAULT_DATA})")

    train = sub.add_parser(
        "train", help="generate data if needed, train, export the bundle", formatter_class=fmt
    )
    common(train)
    train.add_argument("--out", type=Path, default=DEFAULT_POLICY, help="bundle folder to write")
    train.add_argument(
        "--data",
        type=Path,
        default=None,
        help=f"npz from generate (default: {DEFAULT_DATA}, made if missing)",
    )
    train.add_argument("--episodes", type=int, default=1200, help="expert episodes when generating")
    train.add_argument("--seed", type=int, default=0, help="data and training seed")
    train.add_argument("--epochs", type=int, default=3, help="passes over the data")
    train.add_argument("--batch-size", type=int, default=128, help="batch size")
    train.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (one-cycle)")
    train.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (quick runs)")

    ev = sub.add_parser(
        "evaluate", help="offline evaluation in the fast simulation (no server)", formatter_class=fmt
    )
    common(ev)
    ev.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy bundle folder")
    ev.add_argument("--episodes", type=int, default=30, help="episodes (scene seeds 0..N-1)")
    ev.add_argument("--latency-ms", type=float, default=0.0, help="simulated delay before a chunk is used")
    ev.add_argument("--replan-ms", type=float, default=100.0, help="time between observations")
    ev.add_argument(
        "--runtime", default=None, choices=["torch", "onnx"], help="override the bundle's runtime"
    )
    return parser


def _apply_config(args: argparse.Namespace, parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Values from ``--config`` replace defaults; flags given on the command line win."""
    if not args.config:
        return
    with open(args.config, "rb") as f:
        values = tomllib.load(f)
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    for key, value in values.items():
        name = key.replace("-", "_")
        if not hasattr(args, name):
            raise ValueError(f"{args.config}: {key!r} is not an option of {args.command!r}")
        if name not in given:
            setattr(args, name, Path(value) if isinstance(getattr(args, name), Path) else value)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv.insert(0, "demo")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    try:
        _apply_config(args, parser, argv)
        return _run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1


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
        return 0 if results.success_rate >= args.min_success else 1
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
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             threads=args.threads, max_steps=args.max_steps)  # fmt: skip
        model, stats, report = train(data, config)
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
        )
        for r in summary_eval.results:
            print(f"{r.instruction!r:<40} {r.status:<8} {r.reason}")
        print(summary_eval.line())
        return 0
    raise AssertionError(args.command)

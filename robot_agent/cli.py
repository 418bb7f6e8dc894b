"""``robot-agent``: flags -> ``AgentConfig`` -> ``Agent(config).run()``. The only module that reads
flags or the environment, configures logging, prints, and exits.

    robot-agent --server HOST:PORT --robot sim --camera sim --instruction "touch the red cube"
    robot-agent eval --episodes 30 --inject-latency-ms 100 --blend ensemble
    robot-agent check --config agent.toml
    robot-agent estop --pid 12345

Errors print one line, ``TypeName: message``, and exit 1 (the traceback only with ``--debug``).
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from robot_agent.config import BLEND_MODES, INTERPOLATIONS, AgentConfig, ControlConfig, ServerConfig
from robot_agent.errors import AgentError

__all__ = ["build_parser", "main", "run", "run_eval"]

LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"}},
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    },
    "loggers": {
        "robot_agent": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "safety": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}


def _common(parser: argparse.ArgumentParser) -> None:
    d_server, d_control = ServerConfig(), ControlConfig()
    parser.add_argument(
        "--config", metavar="FILE.toml", help="agent config file; flags override it (default: none)"
    )
    parser.add_argument(
        "--server", metavar="HOST:PORT", help=f"inference server address (default: {d_server.address})"
    )
    parser.add_argument("--robot", metavar="KIND", help="robot driver: sim | franka | xarm (default: sim)")
    parser.add_argument("--robot-ip", metavar="IP", help="robot address, for franka and xarm (default: none)")
    parser.add_argument(
        "--camera",
        metavar="KIND",
        help="kind of the cameras the policy asks for and the config does not name (default: sim)",
    )
    parser.add_argument(
        "--instruction", metavar="TEXT", help="language instruction sent with every observation (default: '')"
    )
    parser.add_argument(
        "--rate", type=float, metavar="HZ", help=f"control rate (default: {d_control.rate_hz:g})"
    )
    parser.add_argument(
        "--blend", choices=BLEND_MODES, help=f"how a new chunk takes over (default: {d_control.blend})"
    )
    parser.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        help=f"waypoints to control rate (default: {d_control.interpolation})",
    )
    parser.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="Prometheus port, 0 for none (default: 9101)"
    )
    parser.add_argument("--record", metavar="DIR", help="write an episode folder there (default: none)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="(default: info)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors (default: off)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-agent",
        description="Run a VLA policy served by an inference server on a robot arm, safely.",
        epilog="Subcommands: 'robot-agent eval --help', 'robot-agent check --help', 'robot-agent estop --help'.",
    )
    _common(parser)
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)"
    )
    return parser


def build_eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-agent eval",
        description="Run episodes on the simulated task and print success rate, time to success and holds.",
    )
    _common(parser)
    parser.add_argument("--episodes", type=int, default=10, help="number of episodes (default: 10)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the first scene; episode i uses seed+i (default: 0)"
    )
    parser.add_argument("--episode-timeout", type=float, default=15.0, metavar="S", help="(default: 15)")
    parser.add_argument(
        "--inject-latency-ms", type=float, default=0.0, help="added delay on the stream (default: 0)"
    )
    parser.add_argument(
        "--inject-jitter-ms", type=float, default=0.0, help="+- jitter on that delay (default: 0)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (default: none)")
    return parser


def build_check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-agent check", description="Preflight: config, server, robot, cameras."
    )
    _common(parser)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags that were given, as dotted config keys."""
    mapping = {
        "server": "server.address",
        "robot": "robot.kind",
        "robot_ip": "robot.ip",
        "camera": "default_camera",
        "instruction": "instruction",
        "rate": "control.rate_hz",
        "blend": "control.blend",
        "interpolation": "control.interpolation",
        "metrics_port": "metrics_port",
        "record": "record.dir",
        "duration": "duration_s",
        "inject_latency_ms": "server.inject_latency_ms",
        "inject_jitter_ms": "server.inject_jitter_ms",
    }
    out: dict[str, Any] = {}
    for attr, key in mapping.items():
        value = getattr(args, attr, None)
        if value is None or (attr.startswith("inject_") and value == 0.0):
            continue
        if attr == "metrics_port" and value == 0:
            value = None
        out[key] = value
    return out


def configure_logging(level: str) -> None:
    config = {
        **LOGGING_CONFIG,
        "loggers": {k: {**v, "level": level.upper()} for k, v in LOGGING_CONFIG["loggers"].items()},
    }
    logging.config.dictConfig(config)


def run(config: AgentConfig) -> dict[str, Any]:
    """Run the agent with ``config`` and return its summary (tests patch this)."""
    from robot_agent.agent import Agent

    return Agent(config).run()


def run_eval(config: AgentConfig, episodes: int, seed: int, episode_timeout_s: float) -> Any:
    """Run the evaluation (tests patch this)."""
    from robot_agent.evaluation import evaluate_sync

    return evaluate_sync(config, episodes=episodes, seed=seed, episode_timeout_s=episode_timeout_s)


def estop(argv: Sequence[str]) -> int:
    """``robot-agent estop --pid PID``: latch a running agent's e-stop (SIGUSR1). The latch holds
    until that agent is restarted; the arm's own e-stop button stays the first line."""
    parser = argparse.ArgumentParser(prog="robot-agent estop", description="Latch a running agent's e-stop.")
    parser.add_argument("--pid", type=int, required=True, help="process id of the running agent (required)")
    args = parser.parse_args(argv)
    try:
        os.kill(args.pid, signal.SIGUSR1)
    except (ProcessLookupError, PermissionError) as exc:
        print(
            f"{type(exc).__name__}: cannot signal agent process {args.pid}: {exc.strerror}", file=sys.stderr
        )
        return 1
    print(f"E-stop requested from agent process {args.pid} (SIGUSR1); check its log for 'E-stop latched'.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("run", "eval", "check", "estop") else "run"
    if command == "estop":
        return estop(argv)
    parser = {"run": build_parser, "eval": build_eval_parser, "check": build_check_parser}[command]()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = AgentConfig.load(args.config, overrides_from_args(args))
        if command == "run":
            from robot_agent.summary import format_summary

            summary = run(config)
            print(format_summary(summary), flush=True)
        elif command == "eval":
            from robot_agent.evaluation import format_results

            results = run_eval(config, args.episodes, args.seed, args.episode_timeout)
            print(format_results(results), flush=True)
            if args.json:
                import json
                from pathlib import Path

                Path(args.json).write_text(json.dumps(results.to_dict(), indent=2) + "\n")
        else:
            from robot_agent.check import run_check

            return run_check(config)
    except AgentError as exc:
        if args.debug:
            raise
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr, flush=True
        )
        return 1
    return 0

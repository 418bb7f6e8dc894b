"""``robot-agent``: flags -> ``AgentConfig`` -> ``Agent(config).run()``. The only module that reads
flags or the environment, configures logging, prints, and exits.

    robot-agent --server HOST:PORT --robot sim --camera sim --instruction "touch the red cube"
    robot-agent eval --episodes 30 --inject-latency-ms 100 --blend ensemble
    robot-agent check --config agent.toml
    robot-agent estop --pid 12345

Errors print one line, ``TypeName: message``, and exit 1 (the traceback only with ``--debug``).
Exit codes are :data:`EXIT_CODES`, shown by ``--help``.
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robot_agent.config import BLEND_MODES, INTERPOLATIONS, AgentConfig
from robot_agent.errors import AgentError, ConfigError, EstopRefused, RobotInUse, RunFileError
from robot_agent.runfile import (
    RunFile,
    RunRecord,
    default_run_dir,
    find_run,
    live_runs,
    looks_like_agent,
    process_identity,
    read_run,
    runs_driving,
    stale_reason,
)
from safety.config_loader import default_of, show_default

if TYPE_CHECKING:
    from robot_agent.evaluation import EvalResults

__all__ = [
    "EXIT_CODES",
    "FLAG_KEYS",
    "build_estop_parser",
    "build_parser",
    "estop",
    "main",
    "run",
    "run_eval",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ESTOP = 3
EXIT_ESTOP_UNCONFIRMED = 4
EXIT_INTERRUPTED = 130
#: Every exit status of ``robot-agent`` and its subcommands, and what it means.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done: a controlled stop (Ctrl-C, SIGTERM, --duration); estop: the latch is confirmed",
    EXIT_ERROR: "an error, printed as one line; estop: refused (no running robot-agent), nothing signalled",
    EXIT_USAGE: "bad flags",
    EXIT_ESTOP: "the e-stop latched and ended the run (arm stopped; summary printed and written)",
    EXIT_ESTOP_UNCONFIRMED: "estop: SIGUSR1 sent, but the agent did not confirm the latch in --timeout",
    EXIT_INTERRUPTED: "Ctrl-C before the agent took over its signals",
}
EXIT_CODES_HELP = "exit codes:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
RUN_DIR_HELP = (
    "where run files live: robot-agent estop finds agents there "
    "(default: $XDG_RUNTIME_DIR/vla-deploy, else <tmp>/vla-deploy-<uid>)"
)


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


#: The config key each flag sets (argparse dest -> dotted ``AgentConfig`` key): the flags given
#: override the file, and each one's help shows that key's default (:func:`_default`).
FLAG_KEYS: dict[str, str] = {
    "server": "server.address",
    "tls_ca": "server.tls_ca",
    "tls_cert": "server.tls_cert",
    "tls_key": "server.tls_key",
    "tls_server_name": "server.tls_server_name",
    "token_file": "server.token_file",
    "robot": "robot.kind",
    "robot_ip": "robot.ip",
    "camera": "default_camera",
    "instruction": "instruction",
    "rate": "control.rate_hz",
    "blend": "control.blend",
    "interpolation": "control.interpolation",
    "metrics_port": "metrics_port",
    "metrics_host": "metrics_host",
    "record": "record.dir",
    "duration": "duration_s",
    "inject_latency_ms": "server.inject_latency_ms",
    "inject_jitter_ms": "server.inject_jitter_ms",
}


def _default(dest: str, note: str = "") -> str:
    """``(default: X)`` for flag ``dest``: X is the config's own default, so help and config agree."""
    shown = show_default(default_of(AgentConfig, FLAG_KEYS[dest]))
    return f"(default: {shown}{', ' + note if note else ''})"


#: ``eval --task``: ``robot_agent.drivers.sim.TASKS`` and ``robot_agent.evaluation``'s episode
#: timeout, written out here because importing those loads the simulator (a test checks they agree).
EVAL_TASKS = ("pick_place", "conveyor")
EPISODE_TIMEOUT_S = 30.0

LOG_LEVELS = ("debug", "info", "warning", "error")
METRICS_OFF = ("off", "none")  # --metrics-port words for "no endpoint" (metrics_port = false)


def _metrics_port(text: str) -> int | str:
    """``--metrics-port``'s value: a port (0: any free one), or ``off``."""
    if text.lower() in METRICS_OFF:
        return "off"
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port 0-65535 or 'off'")
    return port


def _connection(parser: argparse.ArgumentParser, *, robot: bool = True) -> None:
    """Flags every subcommand but ``estop`` takes: what to connect to, and how to report."""
    parser.add_argument(
        "--config", metavar="FILE.toml", help="agent config file; flags override it (default: none)"
    )
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        help=f"inference server's gRPC address, no scheme {_default('server')}",
    )
    parser.add_argument(
        "--tls-ca",
        metavar="FILE.pem",
        help=f"connect with TLS, trusting this CA file only; config server.tls_ca {_default('tls_ca', 'plaintext')}",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE.pem",
        help=f"client certificate, for mTLS; config server.tls_cert {_default('tls_cert')}",
    )
    parser.add_argument(
        "--tls-key",
        metavar="FILE.key",
        help=f"the client certificate's key, for mTLS; config server.tls_key {_default('tls_key')}",
    )
    parser.add_argument(
        "--tls-server-name",
        metavar="NAME",
        help="name the server's certificate must list " + _default("tls_server_name", "--server's host"),
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="bearer token file, its first line; config server.token_file; no flag takes the token "
        f"itself, ps shows flags {_default('token_file', f'the token from ${TOKEN_ENV} if set')}",
    )
    parser.add_argument(  # else argparse would take --token for --token-file
        "--token",
        action=_NoTokenFlag,
        help=f"refused: a token on the command line shows in ps; use --token-file or ${TOKEN_ENV} (default: none)",
    )
    if robot:  # eval drives the simulated arm only: no flag to pick another
        parser.add_argument(
            "--robot", metavar="KIND", help=f"robot driver: sim | franka | xarm {_default('robot')}"
        )
        parser.add_argument(
            "--robot-ip", metavar="IP", help=f"robot address, for franka and xarm {_default('robot_ip')}"
        )
    parser.add_argument(
        "--camera",
        metavar="KIND",
        help=f"kind of the cameras the policy asks for and the config does not name {_default('camera')}",
    )
    parser.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, help="what the log shows on stderr (default: info)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors (default: off)")


def _control(parser: argparse.ArgumentParser) -> None:
    """Flags of the control loop, for the commands that move the arm (``run``, ``eval``)."""
    parser.add_argument("--rate", type=float, metavar="HZ", help=f"control rate {_default('rate')}")
    parser.add_argument(
        "--blend", choices=BLEND_MODES, help=f"how a new chunk takes over {_default('blend')}"
    )
    parser.add_argument(
        "--interpolation",
        choices=INTERPOLATIONS,
        help=f"waypoints to control rate {_default('interpolation')}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-agent",
        usage="robot-agent [run] [options]  |  robot-agent {eval,check,estop} [options]",
        description="Run a VLA policy served by an inference server on a robot arm, safely.",
        epilog="subcommands:\n"
        "  run    (the default) drive the arm with the served policy: the options below\n"
        "  eval   episodes on the simulated task: success rate, holds   (robot-agent eval --help)\n"
        "  check  preflight of config, robot, cameras, server, latency  (robot-agent check --help)\n"
        "  estop  latch a running agent's e-stop and confirm it         (robot-agent estop --help)\n\n"
        "A latched e-stop (robot-agent estop, SIGUSR1, a driver fault) stops the arm and ends the run.\n\n"
        + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection(parser)
    _control(parser)
    parser.add_argument(
        "--instruction",
        metavar="TEXT",
        help=f"language instruction sent with every observation {_default('instruction')}",
    )
    metrics = parser.add_mutually_exclusive_group()
    metrics.add_argument(
        "--metrics-port",
        type=_metrics_port,
        metavar="PORT",
        help=f"Prometheus endpoint port; 0: any free port (logged), off: none {_default('metrics_port')}",
    )
    metrics.add_argument(
        "--no-metrics",
        action="store_const",
        const="off",
        dest="metrics_port",
        help="serve no metrics endpoint, as the inference server's flag (default: off)",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="HOST",
        help="address the endpoint binds; 127.0.0.1: this machine only "
        f"{_default('metrics_host', 'every interface')}",
    )
    parser.add_argument(
        "--record",
        metavar="DIR",
        help="write an episode folder there; a folder that exists and is not empty is refused, "
        f"never overwritten {_default('record')}",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help=f"stop after S seconds {_default('duration', 'until Ctrl-C')}",
    )
    parser.add_argument("--run-dir", metavar="DIR", help=RUN_DIR_HELP)
    return parser


def _success_rate(text: str) -> float:
    """``--min-success``: a rate in 0..1 (1.5 failed every run, nan passed every one)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}, expected a success rate in 0..1")
    return value


def _positive_seconds(text: str) -> float:
    """``--episode-timeout``: finite and > 0 (0 scored every episode a timeout unseen)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}, expected seconds > 0")
    return value


def _scene_seed(text: str) -> int:
    """``--seed``: an integer >= 0 ('-1' ended the eval with a bare ValueError from numpy)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}, expected an integer >= 0 (scene seeds)")
    return value


def build_eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-agent eval",
        description="Run episodes on the simulated task and print success rate, time to success and holds.\n\n"
        "Each scene gives its episode's instruction (a config file's 'instruction' is not used);\n"
        "no metrics endpoint is served.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection(parser, robot=False)
    _control(parser)
    parser.add_argument(
        "--record",
        metavar="DIR",
        help="write DIR/episode_NNN per episode (with episode.json: seed, instruction, result) and "
        "DIR/eval.json; DIR must be new or empty (default: none)",
    )
    parser.add_argument("--episodes", type=int, default=10, help="number of episodes (default: 10)")
    parser.add_argument(
        "--seed",
        type=_scene_seed,
        default=0,
        help="seed of the first scene; episode i uses seed+i (default: 0)",
    )
    parser.add_argument(
        "--task",
        choices=EVAL_TASKS,
        help="the simulated task (sets robot.options.task of the MuJoCo arm): pick_place, or conveyor, "
        "where the named cube rides a belt (default: pick_place, or the config's robot.options.task)",
    )
    parser.add_argument(
        "--episode-timeout",
        type=_positive_seconds,
        default=EPISODE_TIMEOUT_S,
        metavar="S",
        help="an episode the world has not judged after S seconds counts as a timeout; the world's own "
        f"time limit (robot.options.time_limit_s, 25 s on MuJoCo) ends it first (default: {EPISODE_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--inject-latency-ms",
        type=float,
        metavar="MS",
        help=f"delay added to every answer on the agent's side of the stream {_default('inject_latency_ms')}",
    )
    parser.add_argument(
        "--inject-jitter-ms",
        type=float,
        metavar="MS",
        help=f"+- jitter on that delay {_default('inject_jitter_ms')}",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON (default: none)")
    parser.add_argument(
        "--min-success",
        type=_success_rate,
        default=0.0,
        metavar="RATE",
        help="exit 1 when the success rate (0-1) is below RATE (default: 0)",
    )
    return parser


def build_check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-agent check",
        description="Preflight: config, robot, cameras, server, latency. The arm is never commanded.",
    )
    _connection(parser)
    parser.add_argument("--run-dir", metavar="DIR", help=RUN_DIR_HELP)
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Only the flags that were given, as dotted config keys (:data:`FLAG_KEYS`)."""
    out: dict[str, Any] = {}
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        out[key] = None if value == "off" and attr == "metrics_port" else value
    return out


TOKEN_ENV = "VLA_TOKEN"  # the agent's bearer token; a flag would show in ps


class _NoTokenFlag(argparse.Action):
    """``--token``: refused without echoing its value, which ``ps`` would show to every user."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs="?", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        parser.error(
            "there is no --token flag (ps shows flags to every user): use --token-file FILE or $VLA_TOKEN"
        )


def token_from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """``{"server.token": ...}`` when ``$VLA_TOKEN`` is set and not empty, else ``{}``."""
    token = environ.get(TOKEN_ENV, "").strip()
    return {"server.token": token} if token else {}


def configure_logging(level: str) -> None:
    config = {
        **LOGGING_CONFIG,
        "loggers": {k: {**v, "level": level.upper()} for k, v in LOGGING_CONFIG["loggers"].items()},
    }
    logging.config.dictConfig(config)


def run(config: AgentConfig, *, run_dir: Path | None = None) -> dict[str, Any]:
    """Run the agent with ``config`` and return its summary (tests patch this). With ``run_dir``
    the agent keeps a run file there, for ``robot-agent estop``."""
    from robot_agent.agent import Agent

    run_file = None
    if run_dir is not None:
        run_file = RunFile.for_this_process(
            run_dir, server=config.server.address, robot=config.robot.kind, robot_ip=config.robot.ip
        )
    try:
        return Agent(config, run_file=run_file).run()
    finally:
        # The agent has put SIGUSR1's default (terminate) back; an estop that read the run file
        # just before the agent removed it must not kill the process while it prints the summary.
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def run_eval(config: AgentConfig, episodes: int, seed: int, episode_timeout_s: float) -> EvalResults:
    """Run the evaluation (tests patch this)."""
    from robot_agent.evaluation import evaluate_sync

    return evaluate_sync(config, episodes=episodes, seed=seed, episode_timeout_s=episode_timeout_s)


def build_estop_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-agent estop",
        description=(
            "Latch a running robot-agent's e-stop and confirm it.\n\n"
            "Only a process with a live run file (written by the agent once it handles SIGUSR1)\n"
            "is signalled; anything else is refused in one line and left alone. The agent stops\n"
            "the arm, ends the run (summary printed and written) and exits 3. This command waits\n"
            "for the run file to say the e-stop latched. The arm's own e-stop button stays the\n"
            "first line."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--pid",
        type=int,
        help="process id of the agent (default: the only running agent; refused if there are several)",
    )
    parser.add_argument("--run-dir", metavar="DIR", help=RUN_DIR_HELP)
    parser.add_argument(
        "--timeout",
        type=float,
        default=3.0,
        metavar="S",
        help="how long to wait for the agent to confirm the latch (default: 3)",
    )
    return parser


def _refuse_if_driven(run_dir: Path, config: AgentConfig) -> None:
    """Raise :class:`RobotInUse` if a live agent (by its run file) already drives this arm: a second
    connection would start another controller (Franka) or switch the mode (xArm) under it."""
    others = runs_driving(run_dir, config.robot.kind, config.robot.ip)
    if others:
        other = others[0]
        raise RobotInUse(
            f"robot {config.robot.kind}{f' at {config.robot.ip}' if config.robot.ip else ''} is driven by "
            f"robot-agent {other.describe()}; stop it first (Ctrl-C, or robot-agent estop --pid {other.pid})",
            pid=other.pid,
        )


def _command_line(cmdline: tuple[str, ...]) -> str:
    text = " ".join(cmdline) or "?"
    return text if len(text) <= 60 else text[:57] + "..."


def _estop_target(run_dir: Path, pid: int | None) -> RunRecord:
    """The running agent to signal; :class:`EstopRefused` (or ``RunFileError``) when there is none."""
    if pid is None:
        runs = live_runs(run_dir)
        if not runs:
            raise EstopRefused(
                f"no running robot-agent has a run file in {run_dir} (started with another --run-dir?)"
            )
        if len(runs) > 1:
            listed = "; ".join(r.describe() for r in runs)
            raise EstopRefused(f"{len(runs)} robot-agents are running, pick one with --pid: {listed}")
        return runs[0]
    if pid <= 0:  # kill() would signal a whole process group
        raise EstopRefused(f"--pid {pid} is not a process id; nothing signalled")
    record = find_run(run_dir, pid) if run_dir.exists() else None
    if record is None:
        identity = process_identity(pid)
        if identity is None:
            raise EstopRefused(f"no process {pid}; nothing signalled")
        if looks_like_agent(identity.cmdline):
            raise EstopRefused(
                f"process {pid} ({_command_line(identity.cmdline)}) has no run file in {run_dir} "
                "(another --run-dir, or still starting?); not signalled"
            )
        raise EstopRefused(
            f"process {pid} ({_command_line(identity.cmdline)}) is not a running robot-agent; not signalled"
        )
    reason = stale_reason(record)
    if reason is not None:
        raise EstopRefused(f"run file {record.path} is stale: {reason}; not signalled")
    return record


def estop(argv: Sequence[str]) -> int:
    """``robot-agent estop [--pid PID]``: latch a running agent's e-stop (SIGUSR1) and wait, up to
    ``--timeout``, for its run file to say ``estopped``. Returns an :data:`EXIT_CODES` status."""
    parser = build_estop_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.timeout < float("inf"):  # NaN compares false: it would wait for ever
        parser.error(f"argument --timeout: {args.timeout} is not a number of seconds >= 0")
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(os.environ)
    try:
        record = _estop_target(run_dir, args.pid)
        if record.state == "estopped":
            print(f"E-stop already latched on robot-agent {record.pid}: {record.estop_reason}", flush=True)
            return EXIT_OK
        if record.state == "stopped":
            raise EstopRefused(f"robot-agent {record.pid} is already stopping; not signalled")
    except AgentError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    try:
        os.kill(record.pid, signal.SIGUSR1)
    except OSError as exc:  # gone since the check, or another user's
        print(
            f"{type(exc).__name__}: cannot signal robot-agent {record.pid}: {exc.strerror}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_ERROR
    return _confirm_latch(record, args.timeout)


def _confirm_latch(record: RunRecord, timeout_s: float) -> int:
    """Poll the run file (every 20 ms, up to ``timeout_s``) until it says ``estopped``."""
    deadline = time.monotonic() + timeout_s
    state: str = record.state
    while True:
        # Liveness first, then the file: an agent that latched and exited in between wrote
        # "estopped" before it went, so the read below still sees it.
        alive = stale_reason(record) is None
        try:
            now = read_run(record.path)
            state = now.state
        except FileNotFoundError:
            state = "gone"  # a clean exit removes the file; a latched run keeps it
        except RunFileError as exc:
            state = f"unreadable: {exc}"
        else:
            if now.state == "estopped":
                print(f"E-stop latched on robot-agent {record.pid}: {now.estop_reason}", flush=True)
                return EXIT_OK
        if state == "gone" or not alive:
            why = f"robot-agent {record.pid} exited without confirming the e-stop; check the arm"
            break
        if time.monotonic() >= deadline:
            why = (
                f"SIGUSR1 sent to robot-agent {record.pid}, but the latch was not confirmed within "
                f"{timeout_s:g} s (run file says {state}); check the arm"
            )
            break
        time.sleep(0.02)
    print(f"EstopUnconfirmed: {why}", file=sys.stderr, flush=True)
    return EXIT_ESTOP_UNCONFIRMED


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("run", "eval", "check", "estop") else "run"
    if command == "estop":
        return estop(argv)
    parser = {"run": build_parser, "eval": build_eval_parser, "check": build_check_parser}[command]()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        overrides = {**overrides_from_args(args), **token_from_env(os.environ)}
        if getattr(args, "task", None) is not None:  # eval --task: an option of the sim robot, not a flag key
            overrides["robot.options.task"] = args.task
        config = AgentConfig.load(args.config, overrides)
        run_dir = Path(args.run_dir) if getattr(args, "run_dir", None) else default_run_dir(os.environ)
        if command in ("run", "check"):
            _refuse_if_driven(run_dir, config)
        if command == "run":
            from robot_agent.summary import format_summary

            summary = run(config, run_dir=run_dir)
            print(format_summary(summary), flush=True)
            if summary.get("estops"):
                print(
                    f"E-stop latched: {summary['estop_reason']}; the run ended (exit {EXIT_ESTOP})",
                    file=sys.stderr,
                    flush=True,
                )
                return EXIT_ESTOP
        elif command == "eval":
            from robot_agent.evaluation import format_results

            if config.instruction:
                logging.getLogger(__name__).warning(
                    "eval: instruction %r from the config is not used; each scene gives its own",
                    config.instruction,
                )

            if args.json:  # before the episodes, not after them: a path that cannot be written is named
                json_path = Path(args.json)
                try:
                    json_path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(
                        f"--json {args.json}: cannot make its folder: {exc.strerror or exc}"
                    ) from None
                if json_path.is_dir():
                    raise ConfigError(f"--json {args.json} is a folder, expected a file path")
            results = run_eval(config, args.episodes, args.seed, args.episode_timeout)
            print(format_results(results), flush=True)
            if args.json:
                import json

                Path(args.json).write_text(json.dumps(results.to_dict(), indent=2) + "\n")
            if results.success_rate < args.min_success:
                print(
                    f"eval: success rate {results.success_rate:.0%} is below --min-success {args.min_success:g}",
                    file=sys.stderr,
                    flush=True,
                )
                return EXIT_ERROR
        else:
            from robot_agent.check import run_check

            return run_check(config)
    except AgentError as exc:
        if args.debug:
            raise
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr, flush=True
        )
        return EXIT_ERROR
    return EXIT_OK

"""Served success rate against added network latency, per blend mode, on the static and the
dynamic (conveyor) pick-and-place task.

    python bench/latency_sweep.py [--tasks pick_place,conveyor] [--blends replace,crossfade,ensemble]
                                  [--latencies-ms 0,100,200,400] [--episodes 5] [--seed 0]
                                  [--policy policies/demo] [--out runs/latency_sweep] [--json PATH]

One inference server (a child process serving ``--policy``, as ``python -m vla_demo`` starts it)
for the whole sweep. For each task, added latency (injected on the agent's side of the stream,
the server untouched) and blend mode, a fresh simulated arm (MuJoCo, wall clock) and the real
agent run ``--episodes`` episodes on the same scene seeds (``--seed`` .. ``--seed + N - 1``) at
every setting, so settings differ only in latency and blend. Prints the time the sweep can take
before starting and a line per setting (with the time left), then the table: success, time to
success (median), holds (the first wait for the server not counted) and deadline misses. Writes
``latency_sweep.md`` (the table), ``latency_sweep.json`` (rows, options, machine; rewritten after
every setting, so an interrupted sweep keeps what it measured) and ``latency_sweep.png`` (success
against added latency, one panel per task, one line per blend mode, 95 % Wilson intervals) under
``--out``; ``--json PATH`` also writes the JSON there.

The served loop runs in real time: an episode lasts until the judge's word (success, failure, or
the 25 s time limit), plus about 2 s to start and stop the agent. The full default sweep is
2 tasks x 4 latencies x 3 blends = 24 settings; cut it with ``--tasks``, ``--blends``,
``--latencies-ms`` and ``--episodes``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _stats import environment

from robot_agent.config import BLEND_MODES
from robot_agent.drivers.sim import TASKS, SimRobot
from robot_agent.evaluation import EpisodeOutcome, EvalResults, evaluate_sync
from vla_demo.demo import DEFAULT_POLICY, DemoConfig, agent_config, serve_bundle

DEFAULT_TASKS: tuple[str, ...] = TASKS
DEFAULT_BLENDS: tuple[str, ...] = BLEND_MODES
DEFAULT_LATENCIES_MS: tuple[float, ...] = (0.0, 100.0, 200.0, 400.0)
DEFAULT_EPISODES = 5
#: Wall seconds an episode costs beyond its sim time: agent start (stream, first chunk) and stop.
EPISODE_OVERHEAD_S = 2.0
#: Wall seconds a setting costs beyond its episodes: building and connecting the MuJoCo arm.
SETTING_OVERHEAD_S = 1.5
TASK_TITLES = {"pick_place": "static: pick and place", "conveyor": "dynamic: cube on a conveyor"}


@dataclass(frozen=True)
class Setting:
    """One point of the sweep: the task, the added latency (ms) and the blend mode."""

    task: str
    latency_ms: float
    blend: str

    def label(self) -> str:
        return f"{self.task:<10} {self.latency_ms:>4g} ms  {self.blend:<9}"


def sweep_settings(
    tasks: Sequence[str], latencies_ms: Sequence[float], blends: Sequence[str]
) -> list[Setting]:
    """Every combination, task by task, then latency, then blend (the table's order)."""
    return [Setting(t, lat, b) for t in tasks for lat in latencies_ms for b in blends]


def time_limit_s(task: str) -> float:
    """The world's time limit of ``task`` (s): the demo's, i.e. the MuJoCo engine's default."""
    return float(DemoConfig(task=task).time_limit_s)


def wall_time_bound_s(settings: Sequence[Setting], episodes: int) -> float:
    """The most the sweep can take (s): every episode to its time limit, plus the overheads."""
    return sum(SETTING_OVERHEAD_S + episodes * (time_limit_s(s.task) + EPISODE_OVERHEAD_S) for s in settings)


def format_duration(seconds: float) -> str:
    """``95`` -> ``1 min 35 s``; ``4000`` -> ``1 h 07 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def row(setting: Setting, results: EvalResults, wall_s: float) -> dict[str, Any]:
    """The JSON row of one setting. ``holds`` excludes the first wait for the server (as
    :attr:`EvalResults.holds`); ``failures`` counts the judge's reasons (timeouts included)."""
    episodes = results.episodes
    times = results.times_to_success
    failures: dict[str, int] = {}
    for e in episodes:
        if not e.success:
            key = _reason_kind(e)
            failures[key] = failures.get(key, 0) + 1
    return {
        "task": setting.task,
        "latency_ms": setting.latency_ms,
        "blend": setting.blend,
        "episodes": len(episodes),
        "successes": sum(e.success for e in episodes),
        "success_rate": results.success_rate,
        "time_to_success_median_s": statistics.median(times) if times else None,
        "time_to_success_mean_s": statistics.fmean(times) if times else None,
        "holds": sum(results.holds.values()),
        "deadline_misses": results.deadline_misses,
        "roundtrip_p50_median_s": _median([e.roundtrip_p50_s for e in episodes]),
        "failures": dict(sorted(failures.items())),
        "seeds": [e.seed for e in episodes],
        "wall_s": round(wall_s, 1),
    }


def _reason_kind(e: EpisodeOutcome) -> str:
    """A failure's reason without its numbers: ``moved the green cube 4 cm`` -> ``moved a cube``."""
    reason = e.reason
    if e.status == "timeout" or reason.startswith("timeout"):
        return "timeout"
    if reason.startswith("moved the"):
        return "moved another cube"
    if "fell off" in reason:
        return "cube fell off the table"
    if "left the workspace" in reason:
        return "tool left the workspace"
    return str(reason or e.status)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table, one line per setting, in the rows' order."""
    lines = [
        "| task | added latency | blend | success | time to success (median) | holds | deadline misses |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = r["time_to_success_median_s"]
        lines.append(
            f"| {r['task']} | {r['latency_ms']:g} ms | {r['blend']} "
            f"| {r['successes']}/{r['episodes']} ({r['success_rate']:.0%}) "
            f"| {f'{t:.2f} s' if t is not None else '-'} | {r['holds']} | {r['deadline_misses']} |"
        )
    return "\n".join(lines) + "\n"


def progress_line(index: int, total: int, setting: Setting, r: dict[str, Any], left_s: float | None) -> str:
    """``[3/24] pick_place  100 ms  ensemble   success 4/5  median 9.10 s  holds 2  misses 0  (41 s; about 12 min left)``."""
    t = r["time_to_success_median_s"]
    median = f"{t:.2f} s" if t is not None else "-"
    left = f"; about {format_duration(left_s)} left" if left_s is not None and index < total else ""
    return (
        f"[{index}/{total}] {setting.label()}  success {r['successes']}/{r['episodes']}  median {median}  "
        f"holds {r['holds']}  misses {r['deadline_misses']}  ({r['wall_s']:.0f} s{left})"
    )


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (Wilson, JASA 22(158), 1927): ``(low, high)``
    in 0..1, 95 % for ``z = 1.96``; ``(0, 1)`` for ``n = 0``. Sound at the small n a sweep uses,
    where the normal approximation gives intervals past 0 and 1."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # the rate is inside by construction; rounding could put p = 0 a hair below the low end
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Success rate (%) against added latency (ms): one panel per task, one line per blend mode,
    each point with its 95 % Wilson interval; written to ``path`` (PNG) with matplotlib's Agg
    backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    blends = list(dict.fromkeys(r["blend"] for r in rows))
    latencies = sorted({r["latency_ms"] for r in rows})
    step = min((b - a for a, b in itertools.pairwise(latencies)), default=100.0)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.0), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        for j, blend in enumerate(blends):
            rs = sorted(
                (r for r in rows if r["task"] == task and r["blend"] == blend), key=lambda r: r["latency_ms"]
            )
            if not rs:
                continue
            dx = (
                (j - (len(blends) - 1) / 2) * step * 0.04
            )  # side by side, so the intervals do not hide each other
            x = [r["latency_ms"] + dx for r in rs]
            y = [100 * r["success_rate"] for r in rs]
            bounds = [wilson_interval(r["successes"], r["episodes"]) for r in rs]
            err = [[yi - 100 * lo for yi, (lo, _) in zip(y, bounds, strict=True)],
                   [100 * hi - yi for yi, (_, hi) in zip(y, bounds, strict=True)]]  # fmt: skip
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=blend)
        n = sorted({r["episodes"] for r in rows if r["task"] == task})
        ax.set_title(
            f"{TASK_TITLES.get(task, task)} ({'/'.join(map(str, n))} episodes per point)", fontsize=10
        )
        ax.set_xlabel("added latency (ms)")
        ax.set_xticks(latencies)
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("success rate (%)")
    axes[0][-1].legend(title="blend mode", loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def payload(rows: Sequence[dict[str, Any]], args: argparse.Namespace, *, complete: bool) -> dict[str, Any]:
    """The JSON document: the rows, the sweep's options, whether it ran to the end, the machine."""
    return {
        "rows": list(rows),
        "complete": complete,
        "tasks": list(args.tasks),
        "blends": list(args.blends),
        "latencies_ms": list(args.latencies_ms),
        "episodes": args.episodes,
        "seed": args.seed,
        "policy": str(args.policy),
        "environment": environment(),
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)


def _list_of(
    kind: Callable[[str], Any], choices: Sequence[Any] | None, what: str
) -> Callable[[str], list[Any]]:
    """An argparse type: comma-separated values of ``kind``, each in ``choices``, no repeats."""

    def parse(text: str) -> list[Any]:
        items = [v.strip() for v in text.split(",") if v.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"no {what} in {text!r}")
        values = []
        for item in items:
            try:
                value = kind(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{item!r} is not a {what}") from None
            if choices is not None and value not in choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(map(str, choices))}")
            if isinstance(value, float) and not (math.isfinite(value) and value >= 0):
                raise argparse.ArgumentTypeError(f"{item!r}: expected milliseconds >= 0")
            values.append(value)
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"{text!r} names a {what} twice")
        return values

    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}, expected an integer >= 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}, expected an integer >= 0 (scene seeds)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The sweep's flags; every help shows the default in use."""

    def csv(values: Sequence[Any]) -> str:
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

    full = sweep_settings(DEFAULT_TASKS, DEFAULT_LATENCIES_MS, DEFAULT_BLENDS)
    parser = argparse.ArgumentParser(
        prog="python bench/latency_sweep.py",
        description="Served success rate against added latency, per blend mode, static and conveyor task "
        "(real time: the sweep's duration is printed before it starts).",
        epilog=f"The defaults run {len(full)} settings x {DEFAULT_EPISODES} episodes: at most "
        f"{format_duration(wall_time_bound_s(full, DEFAULT_EPISODES))} of wall time.",
    )
    parser.add_argument("--tasks", type=_list_of(str, TASKS, "task"), default=list(DEFAULT_TASKS),
                        help=f"tasks, comma-separated (default: {csv(DEFAULT_TASKS)})")  # fmt: skip
    parser.add_argument("--blends", type=_list_of(str, BLEND_MODES, "blend mode"), default=list(DEFAULT_BLENDS),
                        help=f"blend modes, comma-separated (default: {csv(DEFAULT_BLENDS)})")  # fmt: skip
    parser.add_argument("--latencies-ms", type=_list_of(float, None, "latency in ms"), metavar="MS,MS,...",
                        default=list(DEFAULT_LATENCIES_MS),
                        help=f"added latencies in ms, comma-separated (default: {csv(DEFAULT_LATENCIES_MS)})")  # fmt: skip
    parser.add_argument("--episodes", type=_positive_int, default=DEFAULT_EPISODES,
                        help=f"episodes per setting, the same scenes at every setting (default: {DEFAULT_EPISODES})")  # fmt: skip
    parser.add_argument("--seed", type=_non_negative_int, default=0,
                        help="scene seed of the first episode (default: 0)")  # fmt: skip
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY,
                        help="policy bundle folder (default: policies/demo of this checkout)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/latency_sweep"),
                        help="output folder (default: runs/latency_sweep)")  # fmt: skip
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here (default: none)")
    return parser


def run_setting(address: str, setting: Setting, args: argparse.Namespace) -> EvalResults:
    """``args.episodes`` served episodes of ``setting`` on a fresh simulated arm."""
    config = DemoConfig(
        policy=args.policy, task=setting.task, inject_latency_ms=setting.latency_ms, blend=setting.blend
    )
    agent = agent_config(address, config)
    robot = SimRobot.from_config(agent.robot)
    robot.connect()
    try:
        return evaluate_sync(
            agent,
            episodes=args.episodes,
            seed=args.seed,
            episode_timeout_s=config.time_limit_s + 1.0,
            robot=robot,
        )
    finally:
        robot.stop()
        robot.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    settings = sweep_settings(args.tasks, args.latencies_ms, args.blends)
    bound = wall_time_bound_s(settings, args.episodes)
    print(
        f"{len(settings)} settings ({len(args.tasks)} tasks x {len(args.latencies_ms)} latencies x "
        f"{len(args.blends)} blend modes) x {args.episodes} episodes, served in real time: at most "
        f"{format_duration(bound)} (every episode to its time limit), less as episodes succeed; "
        "the time left is updated after each setting.",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    json_path = args.out / "latency_sweep.json"
    start = time.monotonic()
    with serve_bundle(args.policy) as address:
        print(
            f"inference server on {address} serving {args.policy} ({time.monotonic() - start:.0f} s to start)"
        )
        sweep_start = time.monotonic()
        for i, setting in enumerate(settings, 1):
            t0 = time.monotonic()
            results = run_setting(address, setting, args)
            rows.append(row(setting, results, time.monotonic() - t0))
            done_s = time.monotonic() - sweep_start
            left = done_s / i * (len(settings) - i)  # the mean so far; bounded by the worst case
            left = min(left, wall_time_bound_s(settings[i:], args.episodes))
            print(progress_line(i, len(settings), setting, rows[-1], left), flush=True)
            write_json(json_path, payload(rows, args, complete=False))
    table = markdown(rows)
    print()
    print(table)
    document = payload(rows, args, complete=True)
    (args.out / "latency_sweep.md").write_text(table)
    write_json(json_path, document)
    if args.json:
        write_json(args.json, document)
    plot(rows, args.out / "latency_sweep.png")
    print(f"wrote {args.out}/latency_sweep.md, .json, .png in {format_duration(time.monotonic() - start)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Served success rate and time to success against added network latency, per blend mode.

    python bench/latency_sweep.py [--episodes 10] [--latencies 0,50,100,200,400]
                                  [--blends replace,crossfade,ensemble] [--out runs/latency_sweep]

One inference server (child process, ``policies/demo``) for the whole sweep; for each added
latency (injected on the agent's side of the stream, the server untouched) and each blend mode,
the agent runs ``--episodes`` episodes of the simulated task in real time on the same scene
seeds. Writes ``latency_sweep.md`` (table), ``latency_sweep.json`` and ``latency_sweep.png``
(success rate and median time to success against latency; matplotlib when installed, else
drawn with OpenCV) under ``--out``; ``--json PATH`` also writes the JSON there.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _stats import environment

from robot_agent.drivers.sim import SimRobot
from robot_agent.evaluation import EvalResults, evaluate_sync
from vla_demo.demo import DEFAULT_POLICY, DemoConfig, agent_config, serve_bundle

COLOURS_BGR = {"replace": (40, 40, 220), "crossfade": (60, 160, 40), "ensemble": (200, 90, 30)}


def row(latency: float, blend: str, results: EvalResults, wall_s: float) -> dict[str, Any]:
    times = results.times_to_success
    return {
        "latency_ms": latency,
        "blend": blend,
        "episodes": len(results.episodes),
        "successes": sum(e.success for e in results.episodes),
        "success_rate": results.success_rate,
        "wrong_cube": sum(e.reached is not None and e.reached != e.target for e in results.episodes),
        "time_to_success_median_s": statistics.median(times) if times else None,
        "time_to_success_mean_s": statistics.fmean(times) if times else None,
        "holds": sum(results.holds.values()),
        "deadline_misses": sum(e.deadline_misses for e in results.episodes),
        "wall_s": round(wall_s, 1),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| added latency | blend | success | time to success (median) | holds | deadline misses | wrong cube |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        t = f"{r['time_to_success_median_s']:.2f} s" if r["time_to_success_median_s"] is not None else "-"
        lines.append(
            f"| {r['latency_ms']:g} ms | {r['blend']} | {r['successes']}/{r['episodes']} ({r['success_rate']:.0%}) "
            f"| {t} | {r['holds']} | {r['deadline_misses']} | {r['wrong_cube']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    blends = sorted({r["blend"] for r in rows}, key=list(COLOURS_BGR).index)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _plot_cv(rows, blends, path)
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for blend in blends:
        rs = [r for r in rows if r["blend"] == blend]
        axes[0].plot([r["latency_ms"] for r in rs], [100 * r["success_rate"] for r in rs], "o-", label=blend)
        axes[1].plot(
            [r["latency_ms"] for r in rs],
            [r["time_to_success_median_s"] or np.nan for r in rs],
            "o-",
            label=blend,
        )
    axes[0].set(xlabel="added latency (ms)", ylabel="success rate (%)", ylim=(0, 105))
    axes[1].set(xlabel="added latency (ms)", ylabel="median time to success (s)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _plot_cv(rows: list[dict[str, Any]], blends: list[str], path: Path) -> None:
    w, h, pad = 520, 360, 55
    panels = []
    max_lat = max(r["latency_ms"] for r in rows) or 1.0
    times = [r["time_to_success_median_s"] for r in rows if r["time_to_success_median_s"] is not None]
    for title, key, top in (
        ("success rate (%)", "success_rate", 100.0),
        ("median time to success (s)", "time_to_success_median_s", max(times, default=1.0) * 1.2),
    ):
        img = np.full((h, w, 3), 255, np.uint8)
        cv2.rectangle(img, (pad, 20), (w - 20, h - pad), (0, 0, 0), 1)
        cv2.putText(img, title, (pad, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for i in range(5):
            y = int(h - pad - i / 4 * (h - pad - 20))
            cv2.putText(
                img,
                f"{top * i / 4:.3g}",
                (5, y + 4),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
        for lat in sorted({r["latency_ms"] for r in rows}):
            x = int(pad + lat / max_lat * (w - 20 - pad))
            cv2.putText(
                img,
                f"{lat:g}",
                (x - 10, h - pad + 18),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (0, 0, 0),
                1,
                cv2.LINE_AA,
            )
        cv2.putText(
            img,
            "added latency (ms)",
            (w // 2 - 60, h - 12),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        for j, blend in enumerate(blends):
            pts = []
            for r in (r for r in rows if r["blend"] == blend):
                v = r[key]
                if v is None:
                    continue
                v = 100 * v if key == "success_rate" else v
                pts.append(
                    (
                        int(pad + r["latency_ms"] / max_lat * (w - 20 - pad)),
                        int(h - pad - v / top * (h - pad - 20)),
                    )
                )
            colour = COLOURS_BGR.get(blend, (0, 0, 0))
            for a, b in itertools.pairwise(pts):
                cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
            for p in pts:
                cv2.circle(img, p, 4, colour, -1, cv2.LINE_AA)
            cv2.putText(
                img,
                blend,
                (w - 130, h - pad - 60 + 18 * j),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.45,
                colour,
                1,
                cv2.LINE_AA,
            )
        panels.append(img)
    cv2.imwrite(str(path), np.hstack(panels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help="policy bundle folder")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per (latency, blend)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed of the first episode")
    parser.add_argument(
        "--latencies", default="0,50,100,200,400", help="added latencies in ms, comma-separated"
    )
    parser.add_argument("--blends", default="replace,crossfade,ensemble", help="blend modes, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("runs/latency_sweep"), help="output folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    latencies = [float(v) for v in args.latencies.split(",")]
    blends = [b.strip() for b in args.blends.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with serve_bundle(args.policy) as address:
        for latency in latencies:
            for blend in blends:
                config = DemoConfig(policy=args.policy, inject_latency_ms=latency, blend=blend)
                agent = agent_config(address, config)
                robot = SimRobot.from_config(agent.robot)
                robot.connect()
                start = time.monotonic()
                results = evaluate_sync(
                    agent, episodes=args.episodes, seed=args.seed, episode_timeout_s=16.0, robot=robot
                )
                rows.append(row(latency, blend, results, time.monotonic() - start))
                r = rows[-1]
                print(
                    f"latency {latency:5g} ms  {blend:<9}  success {r['successes']:>2}/{r['episodes']}  "
                    f"time to success median {r['time_to_success_median_s'] or float('nan'):.2f} s  holds {r['holds']}",
                    flush=True,
                )
    table = markdown(rows)
    print()
    print(table)
    payload = {
        "rows": rows,
        "episodes": args.episodes,
        "seed": args.seed,
        "policy": str(args.policy),
        "environment": environment(),
    }
    (args.out / "latency_sweep.md").write_text(table)
    (args.out / "latency_sweep.json").write_text(json.dumps(payload, indent=2) + "\n")
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    plot(rows, args.out / "latency_sweep.png")
    print(f"wrote {args.out}/latency_sweep.md, .json, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

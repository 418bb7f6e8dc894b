"""Control-loop period and jitter of the robot agent at 100 and 250 Hz while camera images stream
to an inference server at 30 fps.

The server runs in its own process (``inference-server`` with a do-nothing python policy that asks
for a 224x224 image), the agent in this one with the simulated arm and a 640x480 simulated camera
at 30 fps; observations go out every 1/30 s (``scheduler.replan_interval_s``), so resizing,
encoding and the stream all compete with the control loop for the event loop and the CPU.

    python bench/control_loop.py [--rates 100 250] [--seconds 10] [--json PATH]

Prints per rate: control period p50/p95/p99 and max, jitter (|period - nominal|) p99, overruns,
time inside a tick p50/p99, round trip p50/p99, achieved request rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _stats import summarize, write_json

from robot_agent.agent import Agent
from robot_agent.config import AgentConfig

POLICY = """
import numpy as np

class Still:
    def __init__(self, bundle_dir, manifest):
        self.h = int(manifest["chunk_length"])

    def predict(self, batch):
        out = np.zeros((len(batch["instruction"]), self.h, 7), dtype=np.float32)
        out[:, :, 6] = 1.0
        return out
"""

MANIFEST = """
name = "bench-still"
version = "0"
backend = "python"
entrypoint = "policy:Still"
precision = "fp32"
device = "cpu"
chunk_length = 10
dt_s = 0.1
action_space = "ee_delta"
action_dim = 7
state_dim = 8
state_names = ["joint_0", "joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
"""
CAMERA = """
[cameras.front]
height = 224
width = 224
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(bundle: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "inference_server", "--policy", str(bundle), "--host", "127.0.0.1",
         "--port", str(port), "--no-metrics", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if proc.poll() is not None:
            raise SystemExit(f"inference server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("inference server did not start within 60 s")


async def run_rate(port: int, rate_hz: float, seconds: float, camera: bool = True) -> dict[str, object]:
    overrides: dict[str, object] = {
        "server.address": f"127.0.0.1:{port}",
        "control.rate_hz": rate_hz,
        "duration_s": seconds,
        "metrics_port": None,
        "scheduler.replan_interval_s": 1 / 30,
    }
    if camera:
        overrides["cameras"] = {"front": {"kind": "sim", "width": 640, "height": 480, "fps": 30}}
    config = AgentConfig.load(None, overrides)
    agent = Agent(config)
    summary = await agent.serve()
    stats = agent.stats
    periods = stats.periods.values()
    # Skip the first second: startup (connect, camera open, first chunk) is not the steady state.
    skip = int(rate_hz)
    steady = periods[skip:] if periods.size > 2 * skip else periods
    nominal = 1.0 / rate_hz
    return {
        "rate_hz": rate_hz,
        "seconds": seconds,
        "ticks": summary["ticks"],
        "achieved_rate_hz": summary["achieved_rate_hz"],
        "overruns": summary["control_overruns"],
        "period_ms": summarize(steady * 1e3),
        "jitter_ms": summarize(np.abs(steady - nominal) * 1e3),
        "tick_work_ms": summarize(stats.tick_work.values() * 1e3),
        "roundtrip_ms": summarize(stats.roundtrips.values() * 1e3),
        "requests_per_s": summary["chunks"] / summary["duration_s"] if summary["duration_s"] else 0.0,
        "holds": summary["holds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[100.0, 250.0], help="(default: 100 250)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per rate (default: 10)")
    parser.add_argument(
        "--no-camera", action="store_true", help="baseline: a policy without images (default: off)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON (default: none)")
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover
        runner, loop_name = asyncio.run, "asyncio"
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        bundle.mkdir()
        (bundle / "policy.toml").write_text(MANIFEST + ("" if args.no_camera else CAMERA))
        (bundle / "policy.py").write_text(POLICY)
        port = _free_port()
        server = start_server(bundle, port)
        results = []
        try:
            for rate in args.rates:
                results.append(runner(run_rate(port, rate, args.seconds, camera=not args.no_camera)))
        finally:
            server.terminate()
            server.wait(10)
    images = "no camera" if args.no_camera else "camera 640x480 @ 30 fps -> 224x224"
    print(f"control loop on {loop_name}, {os.cpu_count()} CPUs; {images}, observations every 33 ms; "
          f"server in another process")  # fmt: skip
    header = f"{'rate':>6} {'period p50':>10} {'p95':>7} {'p99':>7} {'max':>7} {'jitter p99':>10} {'overruns':>8} " \
             f"{'tick p50':>8} {'tick p99':>8} {'rtt p50':>7} {'rtt p99':>7} {'req/s':>6}"  # fmt: skip
    print(header)
    for r in results:
        p, j, w, rt = r["period_ms"], r["jitter_ms"], r["tick_work_ms"], r["roundtrip_ms"]
        print(
            f"{r['rate_hz']:>4g}Hz {p['p50']:>8.3f}ms {p['p95']:>7.3f} {p['p99']:>7.3f} {p['max']:>7.2f} "
            f"{j['p99']:>8.3f}ms {r['overruns']:>8d} {w['p50']:>8.3f} {w['p99']:>8.3f} "
            f"{rt.get('p50', float('nan')):>7.2f} {rt.get('p99', float('nan')):>7.2f} {r['requests_per_s']:>6.1f}"
        )
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "control_loop",
                "event_loop": loop_name,
                "camera": not args.no_camera,
                "results": results,
            },
        )
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()

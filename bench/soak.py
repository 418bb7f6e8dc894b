"""Soak: an inference server and a robot agent (sim arm, sim camera) in two processes, talking
through the fault proxy for ``--minutes``, with a fault from ``--faults`` injected every
``--fault-every-s`` seconds (each at most ``--fault-s`` long). Every ``--sample-s`` seconds it
reads both processes' resident memory (``VmRSS`` in ``/proc/PID/status``), open file
descriptors (``/proc/PID/fd``) and threads (``Threads``); the agent reports each chunk's round
trip (observation capture to chunk received, its own measure). Prints one row per minute and a
verdict::

    python bench/soak.py                      # 10 minutes, the demo policy
    python bench/soak.py --minutes 60 --json soak.json

Verdict (bounds stated here and printed):
- no leak: from the end of the warm-up (``--warmup-min``, default 2 minutes) to the last minute,
  each process's RSS (per-minute median) grows less than max(5 %, 16 MiB); open fds and threads
  (per-minute median) by at most 2;
- flat latency: every full minute after the first has its round-trip p99 within 2x the median
  minute's p99. Round trips received during a fault or within ``--settle-s`` after it are left out
  of the p50/p99 (a 2 s partition makes a 2 s round trip by design) and counted apart;
- the agent kept running (no e-stop) and both processes were alive at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _stats import write_json
from faultproxy import FaultProxy, frozen

REPO = Path(__file__).resolve().parents[1]
FAULTS = ("delay", "jitter", "bandwidth", "stall", "partition", "reset", "sigstop")
MIB = 1024 * 1024


def proc_sample(pid: int) -> dict[str, int]:
    """``rss_bytes``, ``threads`` and ``fds`` of process ``pid``, from ``/proc`` (Linux).
    Raises ``FileNotFoundError`` once the process is gone."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "VmRSS":
            out["rss_bytes"] = int(value.split()[0]) * 1024
        elif key == "Threads":
            out["threads"] = int(value)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


@dataclass
class Soak:
    args: argparse.Namespace
    t0: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)
    rtts: list[tuple[float, float]] = field(default_factory=list)  # (monotonic received, seconds)
    faults: list[dict[str, Any]] = field(default_factory=list)  # kind, start, end (monotonic)
    agent_summary: dict[str, Any] | None = None
    logs: dict[str, list[str]] = field(default_factory=lambda: {"server": [], "agent": []})


async def _drain(
    stream: asyncio.StreamReader, keep: list[str], found: asyncio.Future[str] | None, needle: str
) -> None:
    while line := (await stream.readline()).decode():
        keep.append(line)
        del keep[:-200]
        if found is not None and not found.done() and needle in line:
            found.set_result(line)


async def _start_server(soak: Soak) -> tuple[asyncio.subprocess.Process, int, list[asyncio.Task[None]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inference_server", "--policy", str(soak.args.policy),
        "--host", "127.0.0.1", "--port", "0", "--no-metrics",
        cwd=REPO, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_drain(proc.stderr, soak.logs["server"], found, "gRPC listening on"))
    async with asyncio.timeout(120):
        line = await found
    port = int(line.split("gRPC listening on ")[1].split()[0].rpartition(":")[2])
    # Serving once warm: the agent waits (holding) until then anyway.
    return proc, port, [task]


async def _read_agent(soak: Soak, stdout: asyncio.StreamReader) -> None:
    while line := (await stdout.readline()).decode():
        msg = json.loads(line)
        if "rtt" in msg:
            soak.rtts.extend((msg["t"], r) for r in msg["rtt"])
        elif "summary" in msg:
            soak.agent_summary = msg["summary"]


async def _inject(soak: Soak, proxy: FaultProxy, server_pid: int, stop: asyncio.Event) -> None:
    kinds = soak.args.faults
    every, length = soak.args.fault_every_s, soak.args.fault_s
    i = 0
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every):
                await stop.wait()
        if stop.is_set():
            return
        kind = kinds[i % len(kinds)]
        i += 1
        start = time.monotonic()
        if kind == "delay":
            proxy.set_delay(0.1)
        elif kind == "jitter":
            proxy.set_delay(0.05, jitter_s=0.05)
        elif kind == "bandwidth":
            proxy.set_bandwidth(20_000)
        elif kind == "stall":
            proxy.set_stalls(0.5, 0.2)
        elif kind == "partition":
            proxy.partition()
        elif kind == "reset":
            proxy.reset()
        if kind == "sigstop":
            with frozen(server_pid):
                await asyncio.sleep(length)
        elif kind != "reset":
            await asyncio.sleep(length)
        proxy.clear()
        soak.faults.append({"kind": kind, "start": start, "end": time.monotonic()})


async def _sample(soak: Soak, pids: dict[str, int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        row: dict[str, Any] = {"t": time.monotonic() - soak.t0, "load1": os.getloadavg()[0]}
        for name, pid in pids.items():
            row[name] = proc_sample(pid)
        soak.samples.append(row)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(soak.args.sample_s):
                await stop.wait()


async def run(args: argparse.Namespace) -> Soak:
    soak = Soak(args)
    server, port, drains = await _start_server(soak)
    proxy = FaultProxy("127.0.0.1", port)
    agent: asyncio.subprocess.Process | None = None
    try:
        await proxy.start()
        agent = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).resolve()), "--agent-child", f"127.0.0.1:{proxy.port}",
            "--instruction", args.instruction,
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert agent.stdout is not None and agent.stderr is not None
        drains.append(asyncio.create_task(_drain(agent.stderr, soak.logs["agent"], None, "")))
        reader = asyncio.create_task(_read_agent(soak, agent.stdout))
        soak.t0 = time.monotonic()
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(_sample(soak, {"server": server.pid, "agent": agent.pid}, stop)),
            asyncio.create_task(_inject(soak, proxy, server.pid, stop)),
        ]
        ended = asyncio.create_task(
            asyncio.wait(
                {asyncio.create_task(server.wait()), asyncio.create_task(agent.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.minutes * 60):
                await ended
        soak.alive = server.returncode is None and agent.returncode is None  # type: ignore[attr-defined]
        stop.set()
        await asyncio.gather(*workers)
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await reader
            await agent.wait()
    finally:
        for proc in (agent, server):
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    async with asyncio.timeout(20):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        await proxy.close()
        for task in drains:
            task.cancel()
    return soak


def report(soak: Soak) -> dict[str, Any]:
    """Per-minute rows and the verdict, as printed and as ``--json`` writes them."""
    args = soak.args
    settle = args.settle_s
    windows = [(f["start"], f["end"] + settle) for f in soak.faults]
    minutes: list[dict[str, Any]] = []
    n_min = int(np.ceil(max((s["t"] for s in soak.samples), default=0) / 60 + 1e-9))
    for m in range(n_min):
        lo, hi = soak.t0 + 60 * m, soak.t0 + 60 * (m + 1)
        rtt = [r for t, r in soak.rtts if lo <= t < hi and not any(a <= t <= b for a, b in windows)]
        during = sum(1 for t, _ in soak.rtts if lo <= t < hi and any(a <= t <= b for a, b in windows))
        rows = [s for s in soak.samples if 60 * m <= s["t"] < 60 * (m + 1)]
        # The minute's 3 slowest counted round trips and how long after the last fault each came
        # (None: before any): tells a fault's tail from a busy machine.
        worst = sorted(
            ((r, t) for t, r in soak.rtts if lo <= t < hi and not any(a <= t <= b for a, b in windows)),
            reverse=True,
        )[:3]
        ends = [f["end"] for f in soak.faults]
        row: dict[str, Any] = {
            "minute": m + 1,
            "full": rows[-1]["t"] >= 60 * (m + 1) - 2 * args.sample_s if rows else False,
            "chunks": len(rtt),
            "chunks_during_faults": during,
            "rtt_p50_ms": float(np.percentile(rtt, 50) * 1000) if rtt else None,
            "rtt_p99_ms": float(np.percentile(rtt, 99) * 1000) if rtt else None,
            "faults": [f["kind"] for f in soak.faults if lo <= f["start"] < hi],
            "load1_max": max((s["load1"] for s in rows), default=None),  # the machine's 1-min load
            "slowest": [
                {
                    "rtt_ms": r * 1000,
                    "s_after_fault": min((t - e for e in ends if e <= t), default=None),
                }
                for r, t in worst
            ],
        }
        for proc in ("server", "agent"):
            if rows:
                row[proc] = {
                    k: statistics.median(s[proc][k] for s in rows) for k in ("rss_bytes", "fds", "threads")
                }
        minutes.append(row)

    checks: dict[str, Any] = {}
    warm = args.warmup_min
    full = [r for r in minutes if r["full"]]
    if len(full) > warm:
        base, last = full[max(warm, 1) - 1], full[-1]
        for proc in ("server", "agent"):
            growth = last[proc]["rss_bytes"] - base[proc]["rss_bytes"]
            bound = max(0.05 * base[proc]["rss_bytes"], 16 * MIB)
            checks[f"{proc}_rss_growth_mib"] = {
                "value": growth / MIB,
                "bound": bound / MIB,
                "ok": growth < bound,
            }
            for k in ("fds", "threads"):
                d = last[proc][k] - base[proc][k]
                checks[f"{proc}_{k}_growth"] = {"value": d, "bound": 2, "ok": d <= 2}
    else:
        checks["growth"] = {"ok": None, "why": f"needs more than {warm} full minutes"}
    p99s = [r["rtt_p99_ms"] for r in full[1:] if r["rtt_p99_ms"] is not None]
    if p99s:
        med = statistics.median(p99s)
        worst = max(p99s)
        checks["rtt_p99_flat"] = {
            "value": worst / med,
            "bound": 2.0,
            "ok": worst <= 2 * med,
            "median_ms": med,
        }
    summary = soak.agent_summary or {}
    checks["agent_no_estop"] = {"value": summary.get("estops"), "ok": summary.get("estops") == 0}
    checks["both_alive"] = {"ok": bool(getattr(soak, "alive", False))}
    verdict = all(c["ok"] is not False for c in checks.values())
    agent_keys = ("ticks", "chunks", "holds", "reconnects", "deadline_misses", "estops", "rejected_chunks")
    return {
        "minutes_requested": args.minutes,
        "fault_every_s": args.fault_every_s,
        "fault_s": args.fault_s,
        "faults_injected": [f["kind"] for f in soak.faults],
        "per_minute": minutes,
        "checks": checks,
        "verdict": "PASS" if verdict else "FAIL",
        "agent_summary": {k: summary.get(k) for k in agent_keys},
    }


def print_report(result: dict[str, Any]) -> None:
    print(f"{'min':>3} {'srv RSS':>9} {'fd':>3} {'thr':>3} {'agt RSS':>9} {'fd':>3} {'thr':>3} "
          f"{'chunks':>6} {'p50 ms':>7} {'p99 ms':>7} {'in-fault':>8} {'load':>5}  faults")  # fmt: skip
    for r in result["per_minute"]:
        s, a = r.get("server", {}), r.get("agent", {})
        p50 = f"{r['rtt_p50_ms']:7.1f}" if r["rtt_p50_ms"] is not None else "      -"
        p99 = f"{r['rtt_p99_ms']:7.1f}" if r["rtt_p99_ms"] is not None else "      -"
        print(
            f"{r['minute']:>3} {s.get('rss_bytes', 0) / MIB:7.1f}Mi {s.get('fds', 0):>3.0f} {s.get('threads', 0):>3.0f} "
            f"{a.get('rss_bytes', 0) / MIB:7.1f}Mi {a.get('fds', 0):>3.0f} {a.get('threads', 0):>3.0f} "
            f"{r['chunks']:>6} {p50} {p99} {r['chunks_during_faults']:>8} {r['load1_max'] or 0:5.1f}  {','.join(r['faults'])}"
            + ("" if r["full"] else "  (partial)")
        )
    for r in result["per_minute"]:
        if r["rtt_p99_ms"] is not None and r["slowest"]:
            after = [
                f"{w['rtt_ms']:.0f} ms"
                + (f" ({w['s_after_fault']:.1f} s after a fault)" if w["s_after_fault"] is not None else "")
                for w in r["slowest"]
            ]
            print(f"  minute {r['minute']:>2} slowest: {', '.join(after)}")
    for name, c in result["checks"].items():
        detail = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items() if k != "ok"
        )
        print(f"  {name:<24} {'ok' if c['ok'] else ('n/a' if c['ok'] is None else 'FAIL')}  {detail}")
    print(f"agent: {result['agent_summary']}")
    print(f"verdict: {result['verdict']}")


# --- the agent's process ----------------------------------------------------------------------------
async def agent_child(address: str, instruction: str) -> None:
    """Run an :class:`Agent` on the sim arm against ``address``; print each new round trip as
    ``{"t": monotonic, "rtt": [s, ...]}`` lines on stdout, then ``{"summary": ...}`` on SIGTERM."""
    from robot_agent.agent import Agent
    from robot_agent.config import AgentConfig

    config = AgentConfig.load(
        None,
        {
            "server.address": address,
            "metrics_port": None,
            "instruction": instruction,
            "server.backoff_initial_s": 0.05,
            "server.backoff_max_s": 0.5,
        },
    )
    agent = Agent(config)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, agent.request_stop)
    task = asyncio.create_task(agent.serve())
    seen = 0
    while not task.done():
        await asyncio.wait({task}, timeout=0.25)
        n = len(agent.stats.roundtrips)
        if n > seen:
            new = agent.stats.roundtrips.values()[seen:n]
            print(json.dumps({"t": time.monotonic(), "rtt": new.tolist()}), flush=True)
            seen = n
    summary = task.result()
    print(json.dumps({"summary": summary}, default=str), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default: %(default)s)")
    parser.add_argument(
        "--policy", type=Path, default=REPO / "policies" / "demo", help="bundle (default: demo)"
    )
    parser.add_argument("--instruction", default="touch the red cube", help="(default: %(default)r)")
    parser.add_argument(
        "--fault-every-s", type=float, default=30.0, help="fault period (default: %(default)s)"
    )
    parser.add_argument(
        "--fault-s", type=float, default=2.0, help="each fault's length (default: %(default)s)"
    )
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help="comma-separated, cycled in order (default: %(default)s)"
    )
    parser.add_argument("--sample-s", type=float, default=5.0, help="sampling period (default: %(default)s)")
    parser.add_argument(
        "--settle-s", type=float, default=3.0, help="after a fault, left out (default: %(default)s)"
    )
    parser.add_argument("--warmup-min", type=int, default=2, help="warm-up minutes (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="write the results there (default: none)")
    parser.add_argument("--agent-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.agent_child:
        asyncio.run(agent_child(args.agent_child, args.instruction))
        return
    args.faults = [f for f in args.faults.split(",") if f]
    unknown = set(args.faults) - set(FAULTS)
    if unknown or not args.faults or args.fault_s >= args.fault_every_s or args.minutes <= 0:
        parser.error(f"--faults from {','.join(FAULTS)}; 0 < --fault-s < --fault-every-s; --minutes > 0")
    with tempfile.TemporaryDirectory():
        soak = asyncio.run(run(args))
    result = report(soak)
    print_report(result)
    if args.json:
        write_json(args.json, result)
    if result["verdict"] != "PASS":
        for name in ("server", "agent"):
            print(f"--- last {name} log lines ---\n" + "".join(soak.logs[name][-20:]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Control-loop period and jitter of the robot agent at 100, 250 and 500 Hz while camera images
stream to an inference server at 30 fps, with and without CPU-bound processes beside it, and where
each tick's delay came from.

The server runs in its own process (``inference-server`` with a do-nothing python policy that asks
for a 224x224 image), the agent in this one with the simulated arm and a 640x480 simulated camera
at 30 fps; observations go out every 1/30 s (``scheduler.replan_interval_s``), so resizing,
encoding and the stream all compete with the control loop for the event loop and the CPU.

    python bench/control_loop.py [--rates 100 250 500] [--hogs 0 2] [--seconds 10]
        [--control event_loop dedicated dedicated-rt] [--switch-interval-ms MS] [--json PATH]

One cell per rate x hogs x control mode, in that order, modes innermost (so the modes of a rate
see the same load as nearly as a shared machine allows). ``--hogs N``: N processes spinning pure
Python (nice 0), started before and killed after each cell. Control modes: ``event_loop`` is the
agent's (``robot_agent/control.py``: the tick on the event loop, the driver thread waking at the
deadline); ``dedicated`` and ``dedicated-rt`` are a prototype (``_control_timing.py``): the same
tick in a thread of its own at absolute deadlines, driver calls direct, the plan behind a per-call
lock; ``-rt`` puts that thread at SCHED_FIFO 80 (root, CAP_SYS_NICE or an rtprio limit; else
nice -10, else nothing: the output says which applied).

Prints per cell: achieved rate, control period p50/p99/max, jitter (|period - nominal|) p99,
overruns, time inside a tick p50/p99, round trip p50, request rate, load average; then where the
delay came from, p99 in ms: ``start`` (deadline to the tick starting) split into ``behind`` (the
wait began late: the previous tick ran over), ``wake`` (the waiting thread woke late: the OS
scheduler and the GIL) and ``handoff`` (woken, until the tick started: the event loop busy with
the stream, the scheduler, gRPC, encoding's share of the GIL); ``command`` (deadline to the driver
command); ``lock`` (the prototype's wait on the plan); ``loop lag`` (a callback posted to the
event loop every 10 ms from a thread, how long it waited); ``process wake`` (a separate process,
own interpreter and GIL, sleeping to the same deadlines at the same scheduling: what the OS alone
costs); and per thread kind the CPU and the run-queue wait (runnable, waiting for a CPU: taken by
other processes and threads), ms per second, from ``/proc/self/task/*/schedstat``. Timings skip the
first second of each cell; overruns count the whole cell.

``--tick-only`` measures the tick's own cost instead, in this process, without a server, a camera
or the sim's physics: the agent's plan, shield (with the sim arm's IK), event bus, metrics and run
statistics, on a robot whose ``read_state`` hands back one fixed reading (time stamped now) and
whose commands do nothing. Ticks run back to back on a virtual clock at the control rate;
observations go out every ``--replan-ms`` (default 33: one per camera frame) and each is answered
``--rtt-ms`` later (default 5) with a 10-step chunk. Prints the tick (target, shield and IK,
command, bookkeeping: ``ControlLoop.tick``), the scheduler task's check per tick, building the
request's inputs (``Plan.request_inputs``) and taking the chunk in (``Plan.accept``), p50/p99/max
in microseconds, and the whole per-tick cost on the event loop (tick + check, + request and
intake on the ticks that have them).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _children import die_with_parent, exit_on_sigterm
from _control_timing import MODES, BenchAgent, LagProbe, Sentinel, cpu_hogs, thread_times, thread_usage
from _stats import summarize, write_json

from robot_agent.config import AgentConfig

MAX_HOGS = 64  # CPU-bound processes beside the agent: far past any machine's saturation here

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
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent(),
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


def _ms(values: Any) -> dict[str, float]:
    return summarize(np.asarray(values, dtype=np.float64) * 1e3)


async def run_cell(
    port: int,
    rate_hz: float,
    seconds: float,
    *,
    hogs: int,
    mode: str,
    camera: bool = True,
    engine: str = "kinematic",
) -> dict[str, object]:
    """One cell: the agent for ``seconds`` at ``rate_hz`` with control ``mode`` (``_control_timing.MODES``)
    while ``hogs`` CPU-bound processes run (started by the caller). Timings skip the first second
    (connect, camera open, first chunk) and the last half second."""
    overrides: dict[str, object] = {
        "robot.options": {"engine": engine},
        "server.address": f"127.0.0.1:{port}",
        "control.rate_hz": rate_hz,
        "duration_s": seconds,
        "metrics_port": None,
        "scheduler.replan_interval_s": 1 / 30,
    }
    if camera:
        overrides["cameras"] = {"front": {"kind": "sim", "width": 640, "height": 480, "fps": 30}}
    config = AgentConfig.load(None, overrides)
    agent = BenchAgent(config, mode)
    window: dict[str, Any] = {}

    async def measure() -> None:
        await agent.started.wait()
        await asyncio.sleep(1.0)
        window["start"], before = time.monotonic(), thread_times()
        await asyncio.sleep(max(0.5, seconds - 1.5))
        window["end"], after = time.monotonic(), thread_times()
        window["threads"] = thread_usage(before, after, window["end"] - window["start"])

    with LagProbe(asyncio.get_running_loop()) as probe:
        measuring = asyncio.create_task(measure())
        summary = await agent.serve()
        if not measuring.done():
            measuring.cancel()
    stats, times = agent.stats, agent.times
    periods = stats.periods.values()
    # Skip the first second: startup (connect, camera open, first chunk) is not the steady state.
    skip = int(rate_hz)
    steady = periods[skip:] if periods.size > 2 * skip else periods
    nominal = 1.0 / rate_hz
    start, end = window.get("start", -np.inf), window.get("end", np.inf)
    deadline = np.asarray(times.deadline)
    n = min(deadline.size, len(times.entered), len(times.woke), len(times.started))
    deadline = deadline[:n]
    entered, woke, started = (np.asarray(x[:n]) for x in (times.entered, times.woke, times.started))
    keep = (deadline >= start) & (deadline <= end)
    deadline, entered, woke, started = deadline[keep], entered[keep], woke[keep], started[keep]
    return {
        "rate_hz": rate_hz,
        "seconds": seconds,
        "hogs": hogs,
        "control": mode,
        "sched": times.sched or "default",
        "load_average": os.getloadavg(),
        "ticks": summary["ticks"],
        "achieved_rate_hz": summary["achieved_rate_hz"],
        "overruns": summary["control_overruns"],
        "period_ms": summarize(steady * 1e3),
        "jitter_ms": summarize(np.abs(steady - nominal) * 1e3),
        "tick_work_ms": summarize(stats.tick_work.values() * 1e3),
        "roundtrip_ms": summarize(stats.roundtrips.values() * 1e3),
        "requests_per_s": summary["chunks"] / summary["duration_s"] if summary["duration_s"] else 0.0,
        "holds": summary["holds"],
        "late_ms": {
            "start": _ms(started - deadline),
            "behind": _ms(np.maximum(0.0, entered - deadline)),
            "wake": _ms(woke - np.maximum(deadline, entered)),
            "handoff": _ms(started - woke),
            "command": _ms([d for t, d in times.command if start <= t <= end]),
            "lock_wait": _ms([d for t, d in times.lock_wait if start <= t <= end]),
        },
        "loop_lag_ms": _ms([lag for t, lag in probe.lags if start <= t <= end]),
        "threads": window.get("threads", {}),
    }


class _StillRobot:
    """The sim arm without its physics: ``read_state`` is one fixed reading stamped ``now``
    (set by the bench), commands do nothing; IK and FK are the sim arm's (the shield uses them)."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim
        self.home_joints = sim.home_joints
        self.inverse_kinematics = sim.inverse_kinematics
        self.forward_kinematics = sim.forward_kinematics
        self._state = sim.read_state()
        self.now = self._state.time_s

    def read_state(self) -> Any:
        return dataclasses.replace(self._state, time_s=self.now)

    def command_ee(self, pose: Any) -> None:
        pass

    def command_joints(self, joints: Any) -> None:
        pass

    def command_gripper(self, opening: float) -> None:
        pass

    def hold(self) -> None:
        pass

    def emergency_stop(self) -> None:
        pass


async def run_tick_only(
    rate_hz: float, seconds: float, replan_s: float, rtt_s: float, profile: str | None = None,
    engine: str = "kinematic", clock_name: str = "wall",
) -> dict[str, object]:
    """The tick's own cost (see the module docstring), ``seconds`` of virtual time at ``rate_hz``;
    ``clock_name`` ``wall`` (``time.perf_counter``) or ``thread`` (``time.thread_time``: this
    thread's CPU time, which other processes' preemptions on a busy machine do not add to)."""
    from prometheus_client import CollectorRegistry

    from robot_agent import startup
    from robot_agent.control import ControlLoop
    from robot_agent.drivers import create_robot
    from robot_agent.events import EventBus
    from robot_agent.metrics import AgentMetrics
    from robot_agent.plan import Plan, trajectory_for
    from robot_agent.policy_client import Backoff, Chunk
    from robot_agent.scheduler import Scheduler
    from robot_agent.summary import RunStats
    from safety import EStop
    from vla.v1 import policy_pb2 as pb

    config = AgentConfig.load(
        None,
        {"control.rate_hz": rate_hz, "metrics_port": None, "scheduler.replan_interval_s": replan_s,
         "robot.options": {"engine": engine}},
    )  # fmt: skip
    robot = _StillRobot(create_robot(config.robot))
    state = robot.read_state()
    estop = EStop()
    shield = startup.build_shield(
        startup.load_safety(config.safety),
        robot,
        state,
        kind="sim",
        estop=estop,  # type: ignore[arg-type]
    )
    stats = RunStats(rate_hz=rate_hz, instruction="", server_address="bench")
    events = EventBus([AgentMetrics(CollectorRegistry()), stats])
    scheduler = Scheduler(config.scheduler, request_timeout_s=config.server.request_timeout_ms / 1000)
    plan = Plan(events=events, scheduler=scheduler, backoff=Backoff(0.1, 2.0, 5.0, 0.0))
    spec = pb.PolicySpec(
        action_space="ee_delta", action_dim=7, state_dim=8, chunk_length=10, dt_s=0.1,
        state_names=[f"joint_{i}" for i in range(7)] + ["gripper"],
    )  # fmt: skip
    space = startup.fit_policy(
        spec, previous=None, robot=robot, robot_kind="sim", safety=shield.config,  # type: ignore[arg-type]
        reference=state.ee.quaternion, address="bench",
    )  # fmt: skip
    plan.configure(space, trajectory_for(space, config.control))
    plan.use_state_names(tuple(spec.state_names))
    plan.observe(state)
    plan.stream_up()

    async def call(fn: Any, *args: Any) -> Any:  # the driver inline: no thread hop in the figure
        return fn(*args)

    loop = ControlLoop(
        robot=robot, call_driver=call, shield=shield, plan=plan, events=events, estop=estop,  # type: ignore[arg-type]
        rate_hz=rate_hz,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    period = 1.0 / rate_hz
    t0 = time.monotonic()
    ticks = int(seconds * rate_hz)
    tick_us, check_us, request_us, accept_us, total_us = [], [], [], [], []
    answer: tuple[float, int, float] | None = None  # (due, request id, capture time)
    request_id = 0
    holding_ticks = 0
    clock = time.perf_counter if clock_name == "wall" else time.thread_time
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for k in range(ticks):
        now = t0 + k * period
        robot.now = now
        reading = robot.read_state()
        extra = 0.0
        if answer is not None and answer[0] <= now:
            actions = np.zeros((10, 7), dtype=np.float32)
            actions[:, :3] = rng.normal(0.0, 0.002, (10, 3))
            actions[:, 6] = 1.0
            chunk = Chunk(answer[1], "OK", "", actions, 0.1, answer[2], now, 1.0)
            a = clock()
            plan.accept(chunk, now)
            accept_us.append((clock() - a) * 1e6)
            extra += accept_us[-1]
            answer = None
        a = clock()
        await loop.tick(now, period, reading)
        b = clock()
        wants = plan.wants_observation(now)  # the scheduler task's check, woken by the tick
        c = clock()
        tick_us.append((b - a) * 1e6)
        holding_ticks += loop.holding
        check_us.append((c - b) * 1e6)
        if wants and not estop.active:
            a = clock()
            plan.sending(now)
            plan.request_inputs(now, reading)
            request_id += 1
            plan.sent(request_id, reading)
            request_us.append((clock() - a) * 1e6)
            extra += request_us[-1]
            answer = (now + rtt_s, request_id, reading.time_s)
        total_us.append(tick_us[-1] + check_us[-1] + extra)
    if profiler is not None:
        import pstats

        profiler.disable()
        profiler.dump_stats(profile)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return {
        "rate_hz": rate_hz,
        "ticks": ticks,
        "clock": clock_name,
        "replan_s": replan_s,
        "requests": request_id,
        "chunks": plan.status.chunks,
        "holding_ticks": holding_ticks,
        "tick_us": summarize(tick_us),
        "check_us": summarize(check_us),
        "request_us": summarize(request_us),
        "accept_us": summarize(accept_us),
        "total_us": summarize(total_us),
    }


def _print_tick_only(results: list[dict[str, Any]]) -> None:
    clock = "this thread's CPU time" if results and results[0].get("clock") == "thread" else "wall clock"
    print(f"tick cost without the sim's physics, server or camera (driver inline); microseconds, {clock}")
    for r in results:
        print(f"{r['rate_hz']:g} Hz: {r['ticks']} ticks, {r['requests']} requests, {r['chunks']} chunks, "
              f"{r['holding_ticks']} ticks holding")  # fmt: skip
    print(f"{'rate':>6} {'req/s':>6} {'part':<10} {'p50':>8} {'p99':>8} {'max':>8} {'n':>6}")
    for r in results:
        per_s = r["requests"] / (r["ticks"] / r["rate_hz"])
        for part in ("tick", "check", "request", "accept", "total"):
            s = r[f"{part}_us"]
            if not s.get("count"):
                continue
            print(f"{r['rate_hz']:>4g}Hz {per_s:>6.1f} {part:<10} {s['p50']:>8.1f} {s['p99']:>8.1f} "
                  f"{s['max']:>8.1f} {int(s['count']):>6d}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[100.0, 250.0, 500.0],
        help="control rates, Hz, a cell each (default: 100 250 500)",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10.0, help="per cell (default: 10)")
    parser.add_argument(
        "--hogs", type=int, nargs="+", default=[0, 2], metavar="N",
        help="run each rate with N CPU-bound processes (pure Python spinning, nice 0) beside the agent, "
        "started before and killed after each cell (default: 0 2)",
    )  # fmt: skip
    parser.add_argument(
        "--control", nargs="+", choices=MODES, default=list(MODES), metavar="MODE",
        help="control modes to compare: event_loop (the agent's), dedicated (prototype: the tick in "
        "its own thread), dedicated-rt (that thread at SCHED_FIFO, else nice -10) (default: all three)",
    )  # fmt: skip
    parser.add_argument(
        "--switch-interval-ms", type=float, default=None,
        help="sys.setswitchinterval for the run: how long a thread may hold the GIL while another "
        "waits (default: Python's, 5 ms)",
    )  # fmt: skip
    parser.add_argument(
        "--no-camera", action="store_true", help="baseline: a policy without images (default: off)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON (default: none)")
    parser.add_argument(
        "--tick-only", action="store_true",
        help="the tick's own cost in this process: no server, camera or sim physics (default: off)",
    )  # fmt: skip
    parser.add_argument(
        "--replan-ms", type=float, default=1000 / 30, help="--tick-only: request every (default: 33.3)"
    )
    parser.add_argument("--rtt-ms", type=float, default=5.0, help="--tick-only: answer after (default: 5)")
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="--tick-only: cProfile the ticks into PATH, print the top (default: none)",
    )
    parser.add_argument(
        "--engine", choices=("kinematic", "mujoco"), default="kinematic",
        help="the sim arm: kinematic (its physics costs microseconds, so the figures are the "
        "agent's) or mujoco (2 ms rigid-body steps on the driver thread) (default: kinematic)",
    )  # fmt: skip
    parser.add_argument(
        "--clock", choices=("wall", "thread"), default="wall",
        help="--tick-only: time with the wall clock, or with this thread's CPU time (what the agent's "
        "code costs, without the preemptions of other processes on a busy machine) (default: wall)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    _check_args(parser, args)
    exit_on_sigterm()  # kill PID: the server and the hogs are stopped as on Ctrl-C
    if args.tick_only:
        results_t = [
            asyncio.run(
                run_tick_only(
                    rate, args.seconds, args.replan_ms / 1000, args.rtt_ms / 1000, args.profile, args.engine,
                    args.clock,
                )
            )
            for rate in args.rates
        ]
        _print_tick_only(results_t)
        if args.json:
            write_json(args.json, {"benchmark": "control_loop_tick_only", "results": results_t})
        return
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    try:
        import uvloop

        runner = uvloop.run
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover
        runner, loop_name = asyncio.run, "asyncio"
    cells = [(rate, hogs, mode) for rate in args.rates for hogs in args.hogs for mode in args.control]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "bundle"
        bundle.mkdir()
        (bundle / "policy.toml").write_text(MANIFEST + ("" if args.no_camera else CAMERA))
        (bundle / "policy.py").write_text(POLICY)
        port = _free_port()
        server = start_server(bundle, port)
        try:
            for i, (rate, hogs, mode) in enumerate(cells, 1):
                print(f"[{i}/{len(cells)}] {rate:g} Hz, {hogs} CPU hogs, control {mode}, {args.seconds:g} s ...",
                      file=sys.stderr, flush=True)  # fmt: skip
                with cpu_hogs(hogs), Sentinel(rate, realtime=mode == "dedicated-rt") as sentinel:
                    cell = runner(
                        run_cell(port, rate, args.seconds, hogs=hogs, mode=mode, camera=not args.no_camera,
                                 engine=args.engine)
                    )  # fmt: skip
                cell["sentinel_wake_ms"] = sentinel.result
                results.append(cell)
                print(f"    jitter p99 {cell['jitter_ms']['p99']:.3f} ms, {cell['overruns']} overruns, "
                      f"{cell['achieved_rate_hz']:.1f} Hz, load {cell['load_average'][0]:.2f}",
                      file=sys.stderr, flush=True)  # fmt: skip
        finally:
            server.terminate()
            server.wait(10)
    images = "no camera" if args.no_camera else "camera 640x480 @ 30 fps -> 224x224"
    switch = sys.getswitchinterval() * 1000
    print(f"control loop on {loop_name}, {os.cpu_count()} CPUs, GIL switch interval {switch:g} ms; {images}, "
          f"observations every 33 ms; server in another process; CPU hogs: pure-Python spinning processes "
          f"(nice 0) started before and killed after each cell; load average at the end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    _print_cells(results)
    if args.json:
        write_json(
            args.json,
            {
                "benchmark": "control_loop",
                "event_loop": loop_name,
                "camera": not args.no_camera,
                "switch_interval_ms": switch,
                "results": results,
            },
        )
        print(f"wrote {args.json}")


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One line naming the flag (``parser.error``, exit 2) for a value the run cannot use, before
    anything starts: 0 s or 0 Hz divided by zero, NaN seconds failed in ``int()``, a negative hog
    count ran as none, a missing --json folder failed after the run."""
    finite = math.isfinite
    if not all(finite(r) and r > 0 for r in args.rates):
        parser.error(f"--rates: {' '.join(f'{r:g}' for r in args.rates)}; each must be a finite rate > 0 Hz")
    if not (finite(args.seconds) and args.seconds > 0):
        parser.error(f"--seconds: {args.seconds:g}; must be finite and > 0")
    if not all(0 <= n <= MAX_HOGS for n in args.hogs):
        parser.error(f"--hogs: {' '.join(map(str, args.hogs))}; each must be 0..{MAX_HOGS} (a process each)")
    if not (finite(args.replan_ms) and args.replan_ms > 0):
        parser.error(f"--replan-ms: {args.replan_ms:g}; must be finite and > 0")
    if not (finite(args.rtt_ms) and args.rtt_ms >= 0):
        parser.error(f"--rtt-ms: {args.rtt_ms:g}; must be finite and >= 0")
    if args.switch_interval_ms is not None and not (
        finite(args.switch_interval_ms) and args.switch_interval_ms > 0
    ):
        parser.error(f"--switch-interval-ms: {args.switch_interval_ms:g}; must be finite and > 0")
    for flag, path in (("--json", args.json), ("--profile", args.profile)):
        if path is not None and not Path(path).absolute().parent.is_dir():
            parser.error(f"{flag}: no folder {Path(path).parent} to write {Path(path).name} in")


def _print_cells(results: list[dict[str, Any]]) -> None:
    """The jitter table, then where the delay came from (see ``_control_timing``)."""
    print("\nperiod and jitter (ms; jitter = |period - nominal|; overruns over the whole run)")
    print(f"{'rate':>6} {'hogs':>4} {'control':<12} {'achieved':>8} {'period p50':>10} {'p99':>7} {'max':>7} "
          f"{'jitter p99':>10} {'overruns':>8} {'tick p50':>8} {'tick p99':>8} {'rtt p50':>7} {'req/s':>6} "
          f"{'load':>5}")  # fmt: skip
    for r in results:
        p, j, w, rt = r["period_ms"], r["jitter_ms"], r["tick_work_ms"], r["roundtrip_ms"]
        print(
            f"{r['rate_hz']:>4g}Hz {r['hogs']:>4d} {r['control']:<12} {r['achieved_rate_hz']:>6.1f}Hz "
            f"{p['p50']:>10.3f} {p['p99']:>7.3f} {p['max']:>7.2f} {j['p99']:>10.3f} {r['overruns']:>8d} "
            f"{w['p50']:>8.3f} {w['p99']:>8.3f} {rt.get('p50', float('nan')):>7.2f} {r['requests_per_s']:>6.1f} "
            f"{r['load_average'][0]:>5.2f}"
        )
    print(
        "\nwhere the delay came from, p99 ms (start: deadline -> tick starts = behind + wake + handoff; "
        "command: deadline -> driver command; loop lag: a callback posted to the event loop every 10 ms; "
        "process wake: a separate process waking at the same rate and scheduling, how late)"
    )
    print(f"{'rate':>6} {'hogs':>4} {'control':<12} {'start':>6} {'behind':>6} {'wake':>6} {'handoff':>7} "
          f"{'command':>7} {'lock':>6} {'loop lag':>8} {'process wake':>12} | CPU ms/s (run-queue wait ms/s): "
          f"loop, driver, control, encode, camera, other")  # fmt: skip
    for r in results:
        late, th = r["late_ms"], r["threads"]

        def p99(s: dict[str, float]) -> str:
            return f"{s['p99']:.2f}" if s.get("count") else "-"

        use = "  ".join(
            f"{th[k]['cpu_ms_per_s']:.0f} ({th[k]['runq_ms_per_s']:.0f})" if k in th else "-"
            for k in ("loop", "driver", "control", "encode", "camera", "other")
        )
        print(
            f"{r['rate_hz']:>4g}Hz {r['hogs']:>4d} {r['control']:<12} {p99(late['start']):>6} {p99(late['behind']):>6} "
            f"{p99(late['wake']):>6} {p99(late['handoff']):>7} {p99(late['command']):>7} {p99(late['lock_wait']):>6} "
            f"{p99(r['loop_lag_ms']):>8} {p99(r['sentinel_wake_ms']):>12} | {use}"
        )
    for sched in sorted({r["sched"] for r in results if r["control"] == "dedicated-rt"}):
        print(f"dedicated-rt control thread: {sched}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("control_loop: interrupted; the server, the hogs and the sentinel were stopped")

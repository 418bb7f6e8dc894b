"""Network faults between a real agent (sim arm, in-process) and a real inference server on
loopback, injected by the fault proxy (``bench/faultproxy.py``): delay, jitter, a bandwidth cap,
burst stalls, a partition that keeps the sockets open, connection resets, and a server process
frozen with SIGSTOP. For each: no action executed after its time, a hold at the first control
tick past the end of the plan, the agent resuming after the fault, and a whole recording (one
step per tick, every event timed)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_agent.agent import Agent
from robot_agent.events import ChunkAccepted, Event, Subscriber
from robot_agent.reasons import PLAN_KEEPING_REASONS
from tests.e2e._agent_helpers import REPO, agent_config, bundle, read_jsonl, running, server_on
from tests.faultproxy import FaultProxy, frozen
from tests.utils import poll_until

#: Holds that mean "the plan ran out" (control.py's watchdog): each must come at the first tick
#: past the plan's end, neither earlier (wasting good actions) nor later (acting past their time).
RUN_OUT = frozenset({"late", "stream_down", "chunk_exhausted"})


def check_recording(record: Path, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The recording's invariants under any fault; returns the steps."""
    steps = read_jsonl(record / "steps.jsonl")
    assert len(steps) == summary["ticks"]  # every tick recorded
    times = np.array([s["time"] for s in steps])
    assert np.all(np.diff(times) > 0)
    events = read_jsonl(record / "events.jsonl")
    assert events and all(isinstance(e.get("time"), float) for e in events), events
    executed = [s for s in steps if s["safe"] is not None]
    assert executed
    # No action after its time: each executed target is for its own tick, within its plan.
    assert all(s["safe"]["time"] == s["time"] <= s["plan_end"] + 1e-9 for s in executed)
    for last, first, between in run_out_holds(steps):
        # The plan was used to its end: a hold before it could only be one that keeps the plan
        # (a late tick: "stall"; a stale reading); the first tick past its end held (any label).
        assert last["time"] <= last["plan_end"] < first["time"], (last, first)
        early = [(s["time"], s["hold_reason"]) for s in between if s["time"] <= last["plan_end"]]
        assert all(reason in PLAN_KEEPING_REASONS for _, reason in early), (last["plan_end"], early)
    return steps


def run_out_holds(
    steps: list[dict[str, Any]], start: float = -np.inf, end: float = np.inf
) -> list[tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]]:
    """Each plan-ran-out hold that began between ``start`` and ``end`` (agent's clock), as
    (the last executed step before it, its first step, the steps in between)."""
    out = []
    last: int | None = None
    for i, step in enumerate(steps):
        if step["safe"] is not None:
            last = i
        elif (
            step["hold_reason"] in RUN_OUT
            and steps[i - 1]["hold_reason"] not in RUN_OUT
            and last is not None
            and start <= step["time"] <= end
        ):
            out.append((steps[last], step, steps[last + 1 : i]))
    return out


@contextlib.asynccontextmanager
async def agent_via_proxy(
    upstream_port: int, record: Path, subscribers: Sequence[Subscriber] = ()
) -> AsyncIterator[tuple[Agent, FaultProxy]]:
    """A running agent talking to ``upstream_port`` through a fault proxy, with 3 chunks in."""
    async with FaultProxy("127.0.0.1", upstream_port) as proxy:
        agent = Agent(agent_config(proxy.port, **{"record.dir": str(record)}), subscribers=subscribers)
        async with running(agent):
            await poll_until(lambda: agent.status().chunks >= 3 and not agent.status().holding, timeout=10)
            yield agent, proxy


async def resumed(agent: Agent, more: int = 3, timeout: float = 10) -> None:
    """Wait until ``more`` new chunks arrived and the arm moves again."""
    chunks = agent.status().chunks
    await poll_until(
        lambda: agent.status().chunks >= chunks + more and not agent.status().holding, timeout=timeout
    )


async def fault_window(
    tmp_path: Path,
    fault: Callable[[Agent, FaultProxy], Awaitable[None]],
    subscribers: Sequence[Subscriber] = (),
) -> tuple[Agent, list[dict[str, Any]], float, float]:
    """Run ``fault`` on a steady agent (Circle policy), wait for it to resume; the recording's
    steps and the fault's start and end on the agent's clock."""
    record = tmp_path / "episode"
    policy = bundle(tmp_path / "circle", "Circle", name="faults")
    async with (
        server_on(policy) as server,
        agent_via_proxy(server.port, record, subscribers) as (agent, proxy),
    ):
        start = time.monotonic()
        await fault(agent, proxy)
        proxy.clear()
        end = time.monotonic()
        await resumed(agent)
    steps = check_recording(record, agent.summary)
    assert agent.summary["estops"] == 0
    return agent, steps, start, end


class RoundTrips:
    """A subscriber of the agent's events: the round trip of every chunk answered OK (s)."""

    name = "roundtrips"

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_event(self, event: Event) -> None:
        if isinstance(event, ChunkAccepted):
            self.values.append(event.roundtrip_s)

    def since(self, count_before: int) -> np.ndarray:
        return np.asarray(self.values[count_before:])


async def test_fixed_delay_lengthens_the_round_trip_and_the_arm_keeps_going(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    roundtrips = RoundTrips()

    async def delay(agent: Agent, proxy: FaultProxy) -> None:
        before = len(roundtrips.values)
        proxy.set_delay(0.08)  # each way: the round trip grows by >= 160 ms
        chunks = agent.status().chunks
        await poll_until(lambda: agent.status().chunks >= chunks + 3, timeout=10)
        seen["rtt"] = roundtrips.since(before)

    await fault_window(tmp_path, delay, [roundtrips])
    assert seen["rtt"].size >= 3
    assert np.min(seen["rtt"][1:]) >= 0.16  # the first may have been on its way already


async def test_jitter_never_reorders_and_actions_stay_within_their_time(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    roundtrips = RoundTrips()

    async def jitter(agent: Agent, proxy: FaultProxy) -> None:
        before = len(roundtrips.values)
        proxy.set_delay(0.06, jitter_s=0.05)
        chunks = agent.status().chunks
        await poll_until(lambda: agent.status().chunks >= chunks + 4, timeout=10)
        seen["rtt"] = roundtrips.since(before)

    agent, _, _, _ = await fault_window(tmp_path, jitter, [roundtrips])
    assert agent.summary["rejected_chunks"] == {}  # nothing garbled: bytes stay in order
    assert np.max(seen["rtt"]) >= 0.08 and np.ptp(seen["rtt"]) > 0.005  # delayed, and not evenly


async def test_a_bandwidth_cap_slows_requests_to_late_holds_then_recovers(tmp_path: Path) -> None:
    # A raw 48x64 RGB frame is ~9 KB: at 12 KB/s an observation takes ~0.75 s to go up, longer
    # than a chunk lasts (0.5 s), so the plan runs out while the request is on its way.
    async def capped(agent: Agent, proxy: FaultProxy) -> None:
        proxy.set_bandwidth(12_000)
        await poll_until(lambda: agent.status().holding and agent.status().hold_reason == "late", timeout=10)

    agent, steps, start, end = await fault_window(tmp_path, capped)
    assert run_out_holds(steps, start, end)
    assert agent.summary["holds"].get("late", 0) >= 1


async def test_burst_stalls_hold_at_the_plan_end_and_resume_between_bursts(tmp_path: Path) -> None:
    async def stalls(agent: Agent, proxy: FaultProxy) -> None:
        proxy.set_stalls(1.0, 0.8)  # 0.8 s of silence every second: longer than a chunk
        await poll_until(lambda: agent.status().holds.get("late", 0) >= 1, timeout=10)
        chunks = agent.status().chunks
        await poll_until(lambda: agent.status().chunks > chunks, timeout=10)  # a burst got through

    _, steps, start, end = await fault_window(tmp_path, stalls)
    assert run_out_holds(steps, start, end)


async def test_a_partition_keeps_the_socket_holds_at_the_plan_end_and_resumes(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def partition(agent: Agent, proxy: FaultProxy) -> None:
        proxy.partition()
        seen["plan_end"] = agent.status().plan_end
        await poll_until(lambda: agent.status().hold_reason in RUN_OUT, timeout=5)
        seen["reason"] = agent.status().hold_reason
        await asyncio.sleep(0.5)  # the partition lasts: the arm stays held, the socket stays open
        assert agent.status().hold_reason in RUN_OUT
        assert proxy.connections == 1 and proxy.accepted == 1

    _, steps, start, end = await fault_window(tmp_path, partition)
    assert seen["reason"] == "late"
    holds = run_out_holds(steps, start, end)
    # The plan that ran out is the one in hand when the fault began (none arrived during it), and
    # the hold came at the first tick past its end (check_recording).
    assert holds and holds[0][0]["plan_end"] <= seen["plan_end"] + 1e-9
    assert not any(s["safe"] is not None for s in steps if holds[0][1]["time"] <= s["time"] <= end)


async def test_a_reset_connection_is_redialled_and_the_run_carries_on(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def reset(agent: Agent, proxy: FaultProxy) -> None:
        assert proxy.reset() == 1
        await poll_until(lambda: proxy.accepted >= 2, timeout=10)  # the agent dialled again
        seen["accepted"] = proxy.accepted

    agent, _, _, _ = await fault_window(tmp_path, reset)
    assert agent.summary["reconnects"] >= 1
    events = [e["event"] for e in read_jsonl(tmp_path / "episode" / "events.jsonl")]
    assert "stream_down" in events and "reconnect" in events


async def _server_process(policy: Path) -> tuple[asyncio.subprocess.Process, int, asyncio.Task[bytes]]:
    """``python -m inference_server`` on ``policy``: the process, its port, the task draining its
    stderr (a chatty server must not block on a full pipe)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "inference_server", "--policy", str(policy),
        "--host", "127.0.0.1", "--port", "0", "--no-metrics", "--log-level", "info",
        cwd=REPO, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stderr is not None
    async with asyncio.timeout(60):
        while line := (await proc.stderr.readline()).decode():
            if "gRPC listening on" in line:
                port = int(line.split("gRPC listening on ")[1].split()[0].rpartition(":")[2])
                break
        else:
            raise AssertionError(f"inference server exited with {await proc.wait()}")
    return proc, port, asyncio.create_task(proc.stderr.read())


async def test_a_server_frozen_with_sigstop_is_waited_out_and_the_run_resumes(tmp_path: Path) -> None:
    proc, port, drain = await _server_process(bundle(tmp_path / "circle", "Circle", name="frozen"))
    record = tmp_path / "episode"
    seen: dict[str, Any] = {}
    try:
        async with agent_via_proxy(port, record) as (agent, _):
            start = time.monotonic()
            with frozen(proc.pid):
                seen["plan_end"] = agent.status().plan_end
                await poll_until(lambda: agent.status().hold_reason in RUN_OUT, timeout=5)
                seen["reason"] = agent.status().hold_reason
                await asyncio.sleep(0.5)
            end = time.monotonic()
            await resumed(agent)
    finally:
        proc.terminate()
        async with asyncio.timeout(20):
            await proc.wait()
            await drain
    steps = check_recording(record, agent.summary)
    assert seen["reason"] == "late"
    holds = run_out_holds(steps, start, end)
    # The plan that ran out is the one in hand when the fault began (none arrived during it), and
    # the hold came at the first tick past its end (check_recording).
    assert holds and holds[0][0]["plan_end"] <= seen["plan_end"] + 1e-9
    assert agent.summary["estops"] == 0


async def test_the_proxy_refuses_anything_but_loopback() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.5' is not a loopback address"):
        FaultProxy("10.0.0.5", 50051)
    with pytest.raises(ValueError, match=r"listen address '0\.0\.0\.0' is not a loopback"):
        FaultProxy("127.0.0.1", 50051, host="0.0.0.0")

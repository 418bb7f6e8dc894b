"""The agent against a real inference server on loopback: steady state, a slow policy, the server
going away and coming back, and no server at all."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from robot_agent.agent import Agent
from tests.e2e import agent_policies
from tests.e2e._agent_helpers import agent_config, bundle, read_jsonl, running, server_on
from tests.utils import poll_until


async def test_steady_state_holds_never_after_the_first_chunk(tmp_path: Path) -> None:
    policy = bundle(tmp_path / "circle", "Circle", name="steady")
    record = tmp_path / "episode"
    async with server_on(policy) as server:
        agent = Agent(agent_config(server.port, duration_s=5.0, **{"record.dir": str(record)}))
        summary = await agent.serve()

    assert summary["ticks"] >= 450  # 5 s at 100 Hz, a few lost to a busy machine at most
    assert summary["chunks"] >= 10
    assert summary["holds_after_first_chunk"] == 0
    assert summary["holds"] == {"waiting_for_server": 1}
    assert summary["rejected_chunks"] == {}
    assert summary["estops"] == 0
    steps = read_jsonl(record / "steps.jsonl")
    first_move = next(i for i, s in enumerate(steps) if not s["holding"])
    assert not any(s["holding"] for s in steps[first_move:-1])
    moved = [s for s in steps if s["safe"] is not None]
    xy = np.array([s["measured"]["ee"][:2] for s in moved])
    assert np.ptp(xy[:, 1]) > 0.02  # the arm really followed the circle
    events = read_jsonl(record / "events.jsonl")
    assert [e["event"] for e in events][:1] == ["hold"]
    assert any(e["event"] == "connect" for e in events)
    assert (record / "summary.json").exists() and (record / "safety_limits.json").exists()
    assert (record / "front.mp4").stat().st_size > 0


async def test_slow_policy_holds_late_and_executes_nothing_past_its_time(tmp_path: Path) -> None:
    gate = threading.Event()
    gate.set()
    agent_policies.GATES["slow"] = gate
    policy = bundle(tmp_path / "slow", "Circle", name="slow", chunk_length=6, dt_s=0.05)
    record = tmp_path / "episode"
    try:
        async with server_on(policy) as server:
            agent = Agent(agent_config(server.port, **{"record.dir": str(record)}))
            async with running(agent):
                await poll_until(lambda: agent.status().chunks >= 2, timeout=10)
                gate.clear()  # the next predict blocks: longer than a chunk lasts
                await poll_until(lambda: agent.status().holding, timeout=5)
                assert agent.status().hold_reason == "late"
                chunks = agent.status().chunks
                gate.set()
                await poll_until(
                    lambda: agent.status().chunks > chunks and not agent.status().holding, timeout=5
                )
    finally:
        gate.set()
        agent_policies.GATES.pop("slow", None)

    assert agent.summary["deadline_misses"] >= 1
    assert agent.summary["holds"].get("late", 0) >= 1
    steps = read_jsonl(record / "steps.jsonl")
    executed = [s for s in steps if s["safe"] is not None]
    assert executed
    # Every executed target was for its own tick and within the plan that produced it.
    assert all(s["safe"]["time"] == s["time"] <= s["plan_end"] + 1e-9 for s in executed)
    late_holds = [s for s in steps if s["hold_reason"] == "late"]
    assert late_holds and all(s["safe"] is None for s in late_holds)


async def test_a_policy_slower_than_its_chunks_drops_stale_actions_and_holds_late(tmp_path: Path) -> None:
    # 10 actions x 50 ms = 0.5 s per chunk, 0.3 s to compute: 6 actions are past on arrival,
    # 4 remain, and the next chunk cannot arrive before they run out.
    policy = bundle(tmp_path / "slow", "Circle", name="sleepy", chunk_length=10, dt_s=0.05, delay_s=0.3)
    record = tmp_path / "episode"
    async with server_on(policy) as server:
        agent = Agent(agent_config(server.port, **{"record.dir": str(record)}))
        async with running(agent):
            await poll_until(lambda: agent.status().holds.get("late", 0) >= 2, timeout=10)

    summary = agent.summary
    assert summary["deadline_misses"] >= 2
    assert summary["stale_actions_dropped"] >= 6 * summary["chunks"]
    steps = read_jsonl(record / "steps.jsonl")
    executed = [s for s in steps if s["safe"] is not None]
    assert executed  # it does move, on the part of each chunk that is still in the future
    assert all(s["time"] <= s["plan_end"] + 1e-9 for s in executed)


async def test_server_killed_holds_then_reconnects_and_carries_on(tmp_path: Path) -> None:
    policy = bundle(tmp_path / "circle", "Circle", name="killed", chunk_length=10, dt_s=0.05)
    record = tmp_path / "episode"
    first_server = server_on(policy)
    server = await first_server.__aenter__()
    port = server.port
    agent = Agent(agent_config(port, **{"record.dir": str(record)}))
    try:
        async with running(agent):
            await poll_until(lambda: agent.status().chunks >= 3, timeout=10)
            await first_server.__aexit__(None, None, None)  # the server goes away
            killed_plan_end = agent.status().plan_end
            await poll_until(lambda: agent.status().holding, timeout=5)
            assert agent.status().hold_reason == "stream_down"
            # Held by the time the chunk's valid actions ran out (plus a tick).
            assert agent.status().state_time_s <= killed_plan_end + 0.03
            chunks = agent.status().chunks
            async with server_on(policy, port=port):
                await poll_until(
                    lambda: agent.status().chunks > chunks + 2 and not agent.status().holding, timeout=10
                )
    finally:
        await first_server.__aexit__(None, None, None)

    assert agent.summary["reconnects"] == 1
    assert agent.summary["holds"].get("stream_down") == 1
    events = [e["event"] for e in read_jsonl(record / "events.jsonl")]
    assert "stream_down" in events and "reconnect" in events
    steps = read_jsonl(record / "steps.jsonl")
    down = next(s for s in steps if s["hold_reason"] == "stream_down")
    assert down["time"] <= killed_plan_end + 0.03


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_no_server_at_start_arm_never_moves_and_agent_says_what_it_waits_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()
    record = tmp_path / "episode"
    agent = Agent(agent_config(port, **{"record.dir": str(record)}))
    with caplog.at_level(logging.WARNING, logger="robot_agent"):
        async with running(agent):
            home = agent.robot.true_joints()
            await poll_until(
                lambda: any(
                    f"at 127.0.0.1:{port} (attempt 3, next in" in r.getMessage() for r in caplog.records
                ),
                timeout=10,
            )
            assert agent.status().holding and agent.status().hold_reason == "waiting_for_server"
            np.testing.assert_allclose(agent.robot.true_joints(), home, atol=1e-9)
            # The server appears: the agent connects on its own and starts moving.
            async with server_on(bundle(tmp_path / "late", "Circle", name="late"), port=port):
                await poll_until(
                    lambda: agent.status().chunks >= 1 and not agent.status().holding, timeout=10
                )
    message = next(r.getMessage() for r in caplog.records if "Waiting for inference server" in r.getMessage())
    assert message.startswith(f"Waiting for inference server at 127.0.0.1:{port} (attempt 1, next in")
    steps = read_jsonl(record / "steps.jsonl")
    first_move = next(i for i, s in enumerate(steps) if s["safe"] is not None)
    assert first_move > 0 and all(s["holding"] for s in steps[:first_move])


async def test_a_slow_smooth_policy_passes_the_shield_untouched(tmp_path: Path) -> None:
    """3 cm/s along y, well inside every limit: after the first chunk no safety rule fires at all,
    so ``vla_agent_safety_interventions_total`` stays flat and can serve as an alarm. The first
    chunk may be trimmed for a few ticks (the plan leaves the held pose at rest and must reach
    3 cm/s within its first action); every later chunk switch is a smooth fade, and ee_delta
    chunks (relative to the lagging measured pose) start a millimetre or two behind the plan."""
    policy = bundle(tmp_path / "drift", "Drift", speed=0.03)
    record = tmp_path / "episode"
    async with server_on(policy) as server:
        agent = Agent(agent_config(server.port, duration_s=4.0, **{"record.dir": str(record)}))
        summary = await agent.serve()

    assert summary["chunks"] >= 6 and summary["holds_after_first_chunk"] == 0
    steps = read_jsonl(record / "steps.jsonl")
    moving = [s for s in steps if s["safe"] is not None]
    first_plan_end = moving[0]["plan_end"]
    start = next(i for i, s in enumerate(moving) if s["plan_end"] != first_plan_end)
    later = moving[start:]
    assert len(later) > 250  # >= 3 s of steady motion after the first chunk
    # Bound: zero on regular ticks. The rate limits are finite differences at each tick's real
    # dt, so a tick that comes late and the short one after it (the event loop busy with an
    # arriving chunk) turn the plan's acceleration during a chunk fade into an apparent jerk of
    # ~acceleration / dt: those two ticks may fire "jerk", nothing else may.
    dts = np.diff([s["time"] for s in moving])
    regular = np.concatenate(
        [[False, False], (np.abs(dts[1:] - 0.01) < 0.002) & (np.abs(dts[:-1] - 0.01) < 0.002)]
    )
    fired_later = [(i, s["fired"]) for i, s in enumerate(moving) if i >= start and s["fired"]]
    assert [(i, f) for i, f in fired_later if regular[i] or set(f) != {"jerk"}] == []
    assert len(fired_later) <= 3
    first = [s for s in moving if s["plan_end"] == first_plan_end and s["fired"]]
    assert len(first) <= 20
    # Every intervention counted is one recorded: on the first plan, or a late tick's jerk above.
    recorded = sum(len(s["fired"]) for s in first) + sum(len(f) for _, f in fired_later)
    assert sum(summary["safety_interventions"].values()) == recorded
    y = np.array([s["measured"]["ee"][1] for s in later])
    assert np.all(np.diff(y) > -1e-4) and y[-1] - y[0] > 0.05  # it really drifted, steadily

"""A buggy server: NaN or wrong-shape chunks from a deliberately rogue ``PolicyServiceServicer``
(a real grpc.aio server on loopback). The agent must drop them, hold, count, and keep running."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robot_agent.agent import Agent
from robot_agent.events import ChunkAccepted, Event
from robot_agent.policy_client import CHUNK_PROBLEM_KINDS, ChunkProblemKind
from tests.e2e._agent_helpers import agent_config, read_jsonl, running
from tests.e2e._rogue_server import DT, H, RogueServicer, nan_chunk, rogue_server
from tests.utils import poll_until


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (nan_chunk(), "non_finite"),  # one NaN in an otherwise fine chunk
        (np.full((H, 7), np.inf, dtype=np.float32), "non_finite"),  # all inf
        (np.zeros((H, 6), dtype=np.float32), "invalid_chunk"),  # action_dim 6, spec says 7
        (np.zeros((H + 4, 7), dtype=np.float32), "invalid_chunk"),  # longer than chunk_length
        (np.zeros((H * 7,), dtype=np.float32), "invalid_chunk"),  # flat, not [H, action_dim]
    ],
)
async def test_bad_chunk_is_dropped_counted_and_held(
    tmp_path: Path, bad: np.ndarray, reason: ChunkProblemKind
) -> None:
    assert reason in CHUNK_PROBLEM_KINDS  # the policy client's verdict is the hold's label
    servicer = RogueServicer(bad)
    record = tmp_path / "episode"
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port, **{"record.dir": str(record)}))
        async with running(agent):
            await poll_until(lambda: agent.status().chunks >= 1, timeout=10)
            await poll_until(
                lambda: agent.status().holding and agent.status().hold_reason == reason, timeout=5
            )
            rejected = agent.status().rejected_chunks[reason]
            await poll_until(
                lambda: agent.status().rejected_chunks[reason] > rejected, timeout=5
            )  # still running
            assert agent.status().holding and not agent.status().estopped

    summary = agent.summary
    assert summary["rejected_chunks"][reason] >= 2
    assert summary["holds"][reason] == 1
    assert summary["estops"] == 0
    steps = read_jsonl(record / "steps.jsonl")
    for step in steps:
        for key in ("raw", "safe"):
            if step[key] is not None:
                assert all(np.isfinite(step[key]["ee"])), step
    events = read_jsonl(record / "events.jsonl")
    rejected_events = [e for e in events if e["event"] == "chunk_rejected" and e["reason"] == reason]
    assert rejected_events
    # kind and detail travel apart: the detail says what, without repeating the kind as a prefix
    assert not any(e["detail"].startswith(f"{reason}:") for e in rejected_events), rejected_events[0]


@pytest.mark.parametrize("offset_s", [1000.0, -1000.0])
async def test_a_lying_capture_time_echo_changes_nothing(tmp_path: Path, offset_s: float) -> None:
    """Action times come from the agent's own record of the capture, not from the server."""
    servicer = RogueServicer(np.zeros((H, 7), dtype=np.float32), good=10**6, capture_offset_s=offset_s)
    async with rogue_server(servicer) as port:
        roundtrips: list[float] = []

        class RoundTrips:
            name = "roundtrips"

            def on_event(self, event: Event) -> None:
                if isinstance(event, ChunkAccepted):
                    roundtrips.append(event.roundtrip_s)

        agent = Agent(agent_config(port), subscribers=[RoundTrips()])
        async with running(agent):
            await poll_until(lambda: agent.status().chunks >= 3 and not agent.status().holding, timeout=10)
            assert agent.status().plan_end < agent.status().state_time_s + H * DT + 0.5
    assert len(roundtrips) >= 3 and max(roundtrips) < 1.0


async def test_ruckig_refusing_a_far_chunk_holds_and_the_agent_keeps_running(tmp_path: Path) -> None:
    """Issue 10, kind 1: interpolation = "ruckig" and a finite ee_delta chunk with x = 1e4 m made
    Ruckig's update return an error code not in ruckig.Result (ValueError: -101 is not a valid
    Result) and the agent died. Now the tick holds (trajectory_error) and the run goes on."""
    far = np.zeros((H, 7), dtype=np.float32)
    far[:, 0] = 1e4 * np.arange(H)
    far[:, 6] = 1.0
    servicer = RogueServicer(far)
    record = tmp_path / "episode"
    overrides = {"control.interpolation": "ruckig", "record.dir": str(record)}
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port, **overrides))
        async with running(agent):
            # More bad plans than control.max_consecutive_faults (5): each is dropped and the next
            # request waits (backoff), so the faults never come tick after tick and the e-stop
            # (for a fault the loop cannot get out of) stays off.
            await poll_until(lambda: agent.status().tick_faults["trajectory"] >= 7, timeout=15)
            assert agent.status().hold_reason in (None, "trajectory_error") and not agent.status().estopped
            faults = agent.status().tick_faults["trajectory"]
            assert servicer.answered <= servicer.good + faults + 2, (servicer.answered, faults)
    summary = agent.summary
    assert summary["holds"]["trajectory_error"] >= 1 and summary["estops"] == 0
    assert (record / "summary.json").stat().st_size > 0
    for step in read_jsonl(record / "steps.jsonl"):
        if step["safe"] is not None:
            assert abs(step["safe"]["ee"][0]) < 2.0, step  # nothing far was ever commanded

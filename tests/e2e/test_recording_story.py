"""Issue 11 on the real agent, server and sim arm: the recording tells the whole story (times on
one clock, the run's identity and outcome), a recording is never overwritten, and another policy
after a reconnect is never adopted silently."""

from __future__ import annotations

import asyncio
import datetime
import json
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from robot_agent.agent import Agent
from robot_agent.errors import ConfigError, SpecMismatch
from tests.e2e._agent_helpers import (
    agent_config,
    bundle,
    read_jsonl,
    run_cli_with_signals,
    running,
    server_on,
)
from tests.e2e._rogue_server import RogueServicer, rogue_server
from tests.utils import poll_until

REPO = Path(__file__).resolve().parents[2]


async def test_summary_and_records_tell_the_whole_story(tmp_path: Path) -> None:
    record = tmp_path / "episode"
    async with server_on(bundle(tmp_path / "still", "Still")) as server:
        config = agent_config(
            server.port, duration_s=2.0, instruction="pick up the red cube", **{"record.dir": str(record)}
        )
        summary = await Agent(config).serve()

    assert json.loads((record / "summary.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["instruction"] == "pick up the red cube"
    assert summary["server_address"] == f"127.0.0.1:{server.port}"
    policy = summary["policy"]
    assert (policy["name"], policy["backend"], policy["action_space"]) == (
        "test-policy",
        "python",
        "ee_delta",
    )
    assert policy["version"]
    assert (summary["exit_reason"], summary["exit_detail"]) == ("duration", "2 s")
    # One clock: steps and events lie inside the run; the anchor maps it to wall-clock time.
    start, end = summary["started_s"], summary["ended_s"]
    steps, events = read_jsonl(record / "steps.jsonl"), read_jsonl(record / "events.jsonl")
    assert steps and events and all(start <= s["time"] <= end for s in steps)
    assert all(start - 0.5 <= e["time"] <= end for e in events), events  # 'waiting' may precede start
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    frames = read_jsonl(record / "frames.jsonl")
    assert [f["index"] for f in frames] == list(range(len(frames))) and len(frames) > 10
    assert all(start - 1.0 <= f["time"] <= end for f in frames)  # cameras open before control starts
    video = cv2.VideoCapture(str(record / "front.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)
    video.release()
    connect = next(e for e in events if e["event"] == "connect")
    assert connect["policy"] == "test-policy"
    clock = summary["clock"]
    started = datetime.datetime.fromisoformat(summary["started_at"]).timestamp()
    assert started == pytest.approx(clock["unix_s"] + start - clock["monotonic_s"], abs=1e-3)
    assert abs(datetime.datetime.now(datetime.UTC).timestamp() - started) < 60


async def test_an_estop_is_the_exit_reason(tmp_path: Path) -> None:
    async with server_on(bundle(tmp_path / "still", "Still")) as server:
        agent = Agent(agent_config(server.port))
        async with running(agent) as task:
            await poll_until(lambda: agent.status().chunks >= 1, timeout=10)
            agent.trigger_estop("operator says stop")
            async with asyncio.timeout(10):
                await asyncio.wait({task})
    assert (agent.summary["exit_reason"], agent.summary["exit_detail"]) == ("estop", "operator says stop")
    assert agent.summary["estops"] == 1 and agent.summary["safety_interventions"].get("estop", 0) <= 1


async def test_sigint_is_the_exit_reason(tmp_path: Path) -> None:
    record = tmp_path / "run"
    async with server_on(bundle(tmp_path / "still", "Still")) as server:
        run = await run_cli_with_signals(
            server.port, "--log-level", "info", "--record", str(record),
            steps=[("First chunk received", [signal.SIGINT])],
        )  # fmt: skip
    assert run.returncode == 0, run.log
    summary = json.loads((record / "summary.json").read_text())
    assert (summary["exit_reason"], summary["exit_detail"]) == ("signal", "SIGINT")
    assert summary["instruction"] == "stay"
    assert "ended by signal (SIGINT)" in run.stdout


def test_record_into_an_existing_recording_is_refused(tmp_path: Path) -> None:
    """No server, no arm needed: the folder is checked before anything starts."""
    folder = tmp_path / "ep1"
    folder.mkdir()
    (folder / "summary.json").write_text('{"ticks": 3}\n')
    run = subprocess.run(
        [sys.executable, "-m", "robot_agent", "--server", "127.0.0.1:9", "--metrics-port", "0",
         "--duration", "1", "--record", str(folder)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"ConfigError: record.dir {str(folder)!r} is not empty (summary.json): a recording is never "
        "overwritten; record into a new folder"
    ]
    assert (folder / "summary.json").read_text() == '{"ticks": 3}\n'  # untouched


async def test_record_into_an_existing_recording_is_refused_by_the_agent(tmp_path: Path) -> None:
    (tmp_path / "ep" / "x").mkdir(parents=True)
    agent = Agent(agent_config(9, **{"record.dir": str(tmp_path / "ep")}))
    with pytest.raises(ConfigError, match="is not empty"):
        await agent.serve()
    assert agent.summary is not None and agent.summary["exit_reason"] == "error"
    assert "ConfigError: record.dir" in agent.summary["exit_detail"]


async def _reconnect_with(servicer: RogueServicer, agent: Agent, port: int, **overrides: object) -> None:
    """The server goes away once chunks flow and comes back on the same port with ``overrides``."""
    async with rogue_server(servicer, port=port):
        await poll_until(lambda: agent.status().chunks >= 2, timeout=10)
    await poll_until(lambda: not agent.status().stream_up, timeout=10)
    servicer.spec_overrides = dict(overrides)


@pytest.mark.parametrize(
    ("overrides", "now"),
    [
        ({"version": "1"}, "rogue 1 (ee_delta, 7 actions, python)"),
        ({"name": "other"}, "other 0 (ee_delta, 7 actions, python)"),
        ({"action_space": "ee_absolute"}, "rogue 0 (ee_absolute, 7 actions, python)"),
    ],
)
async def test_another_policy_after_a_reconnect_stops_the_run(
    tmp_path: Path, overrides: dict[str, object], now: str
) -> None:
    servicer = RogueServicer(np.zeros((8, 7), dtype=np.float32), good=10**6)
    record = tmp_path / "ep"
    async with rogue_server(servicer) as port:
        pass  # a free port for the server to come back on
    agent = Agent(agent_config(port, **{"record.dir": str(record)}))
    task = asyncio.create_task(agent.serve())
    await _reconnect_with(servicer, agent, port, **overrides)
    async with rogue_server(servicer, port=port):
        with pytest.raises(SpecMismatch) as info:
            async with asyncio.timeout(10):
                await task
    assert str(info.value) == (
        f"policy at 127.0.0.1:{port} changed on reconnect: was rogue 0 (ee_delta, 7 actions, python), "
        f"now {now}; the run stops (set [server] allow_policy_change = true to accept it)"
    )
    assert agent.summary["exit_reason"] == "error" and agent.summary["reconnects"] == 0
    assert agent.summary["policy"]["name"] == "rogue" and agent.summary["policy"]["version"] == "0"
    (change,) = [e for e in read_jsonl(record / "events.jsonl") if e["event"] == "policy_change"]
    assert change["reason"] == "refused"
    assert change["previous"]["version"] == "0" and change["policy"] == {**change["previous"], **overrides}


async def test_a_policy_change_is_accepted_when_the_config_allows_it(tmp_path: Path) -> None:
    servicer = RogueServicer(np.zeros((8, 7), dtype=np.float32), good=10**6)
    record = tmp_path / "ep"
    async with rogue_server(servicer) as port:
        pass
    agent = Agent(agent_config(port, **{"record.dir": str(record), "server.allow_policy_change": True}))
    async with running(agent):
        await _reconnect_with(servicer, agent, port, version="2")
        async with rogue_server(servicer, port=port):
            await poll_until(
                lambda: agent.status().reconnects >= 1 and agent.status().chunks >= 4, timeout=10
            )
    assert agent.summary["policy"]["version"] == "2" and agent.summary["exit_reason"] == "stop"
    events = read_jsonl(record / "events.jsonl")
    changes = [e for e in events if e["event"] == "policy_change"]
    assert len(changes) == 1, [(e["event"], e["reason"]) for e in events]
    change = changes[0]
    assert change["reason"] == "allowed"
    assert (change["previous"]["version"], change["policy"]["version"]) == ("0", "2")
    # The same policy again after a reconnect is no change: no event.
    assert [e["event"] for e in events].count("reconnect") == 1

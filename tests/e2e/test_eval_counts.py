"""Issue 11: ``robot-agent eval --inject-latency-ms 2000``: every chunk comes after its actions
were due and the arm never moves. The result must say so (holds, deadline misses, no chunk used),
and the recorded episode folder holds its seed, instruction and result."""

from __future__ import annotations

import json
from pathlib import Path

from robot_agent.config import RobotConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.evaluation import evaluate, format_results
from tests.e2e import agent_policies
from tests.e2e._agent_helpers import agent_config, bundle, read_jsonl, server_on


async def test_every_chunk_late_shows_holds_and_misses_and_is_recorded(tmp_path: Path) -> None:
    robot = SimRobot.from_config(RobotConfig(kind="sim", options={"engine": "kinematic"}))
    robot.connect()
    agent_policies.WORLDS["oracle"] = robot.world
    record = tmp_path / "runs"
    try:
        async with server_on(
            bundle(tmp_path / "oracle", "Oracle", name="oracle", chunk_length=10, dt_s=0.1)
        ) as server:
            config = agent_config(
                server.port, **{"server.inject_latency_ms": 2000.0, "record.dir": str(record)}
            )
            results = await evaluate(config, episodes=1, seed=7, robot=robot, episode_timeout_s=5.0)
    finally:
        agent_policies.WORLDS.pop("oracle", None)
        robot.close()

    (episode,) = results.episodes
    table = format_results(results)
    assert episode.status == "timeout" and episode.chunks == 0, table
    assert episode.holds.get("late", 0) == 1 and episode.holds_after_start >= 1, episode.holds
    assert episode.deadline_misses >= 1 and results.deadline_misses == episode.deadline_misses
    assert f"holds             {episode.holds_after_start} (late 1)" in table, table
    assert f"deadline misses   {episode.deadline_misses}" in table, table

    folder = record / "episode_000"
    saved = json.loads((folder / "episode.json").read_text())
    assert saved["seed"] == 7 and saved["instruction"] == episode.instruction
    assert (saved["status"], saved["success"], saved["chunks"]) == ("timeout", False, 0)
    assert saved["holds"] == episode.holds and saved["deadline_misses"] == episode.deadline_misses
    assert saved["steps"] == len(read_jsonl(folder / "steps.jsonl")) > 0
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["instruction"] == episode.instruction and summary["exit_reason"] == "stop"
    assert json.loads((record / "eval.json").read_text())["deadline_misses"] == episode.deadline_misses

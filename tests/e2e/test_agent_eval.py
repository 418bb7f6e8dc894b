"""``robot-agent eval`` as a function: episodes on the simulated task, judged by the world."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_agent.config import RobotConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.evaluation import evaluate, format_results
from tests.e2e import agent_policies
from tests.e2e._agent_helpers import agent_config, bundle, server_on


@pytest.mark.parametrize(
    ("latency_ms", "blend"),
    [
        (0.0, "crossfade"),  # plain
        (100.0, "ensemble"),  # the network is slower: chunks are asked for earlier and blended
    ],
)
async def test_eval_with_a_policy_that_solves_the_task(tmp_path: Path, latency_ms: float, blend: str) -> None:
    # The kinematic arm's touch-a-cube world: what the Oracle policy solves.
    robot = SimRobot.from_config(RobotConfig(kind="sim", options={"engine": "kinematic"}))
    robot.connect()
    agent_policies.WORLDS["oracle"] = robot.world
    try:
        async with server_on(
            bundle(tmp_path / "oracle", "Oracle", name="oracle", chunk_length=10, dt_s=0.1)
        ) as server:
            config = agent_config(
                server.port,
                **{
                    "server.inject_latency_ms": latency_ms,
                    "control.blend": blend,
                    "scheduler.replan_interval_s": 0.3,
                },
            )
            results = await evaluate(config, episodes=2, seed=7, robot=robot, episode_timeout_s=15.0)
    finally:
        agent_policies.WORLDS.pop("oracle", None)
        robot.close()

    assert [e.status for e in results.episodes] == ["success", "success"], format_results(results)
    for episode in results.episodes:
        assert episode.reached == episode.target  # the cube named in the instruction
        assert episode.target in episode.instruction
        assert episode.roundtrip_p50_s is not None and episode.roundtrip_p50_s >= latency_ms / 1000
    assert [e.seed for e in results.episodes] == [7, 8]
    assert results.success_rate == 1.0
    table = format_results(results)
    assert "success rate      2/2 (100%)" in table
    assert f"added latency {latency_ms:g} ms" in table and f"blend {blend}" in table
    assert results.to_dict()["success_rate"] == 1.0


async def test_eval_refuses_a_robot_without_a_world(tmp_path: Path) -> None:
    from robot_agent.errors import ConfigError

    class NoWorld:
        pass

    with pytest.raises(ConfigError, match="eval needs the simulated arm"):
        await evaluate(agent_config(1), episodes=1, robot=NoWorld())  # type: ignore[arg-type]


async def test_eval_runs_the_mujoco_conveyor_task_it_builds_from_the_config(tmp_path: Path) -> None:
    """The default engine end to end: eval builds the MuJoCo arm from ``[robot]`` (task =
    "conveyor", as ``--task conveyor`` sets it), the sim camera renders its scene for the policy,
    and the pick-and-place judge scores each episode (a policy that stays put runs out of time)."""
    from robot_agent.sim.mujoco_task import PICK_PLACE_TEMPLATES

    async with server_on(bundle(tmp_path / "still", "Still", name="still-mujoco")) as server:
        config = agent_config(
            server.port, **{"robot.options": {"task": "conveyor", "time_limit_s": 1.5, "seed": 0}}
        )
        results = await evaluate(config, episodes=2, seed=4, episode_timeout_s=20.0)
    assert [e.status for e in results.episodes] == ["failure", "failure"], format_results(results)
    for episode in results.episodes:
        assert episode.reason == "timeout after 1.5 s"
        assert episode.time_to_success_s is None and episode.chunks > 0
        phrasings = {t.format(colour=episode.target) for t in PICK_PLACE_TEMPLATES}
        assert episode.instruction in phrasings  # the pick-and-place world's, not touch-a-cube
    assert agent_policies.CALLS["still-mujoco"]  # the policy was asked, with MuJoCo frames
    assert "success rate      0/2 (0%)" in format_results(results)

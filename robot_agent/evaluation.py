"""``robot-agent eval``: episodes on the simulated task, scored by the world's judge.

For each episode: ``instruction = robot.world.reset(seed + i)`` (new scene, arm home), run the
agent with that instruction until the world says success or failure (or the episode times out),
then collect the result and the agent's holds. One simulated arm serves every episode; each
episode is a fresh agent session (new stream, new trajectory). ``evaluate`` returns the results so
a benchmark script can call it; ``format_results`` prints the table.

It lives beside the agent, not in the simulator package ``robot_agent.sim``: it runs the
``Agent``, and the simulator stays below the drivers and cameras that adapt it, importing nothing
of the agent. Of the simulator it uses only the world's ``reset`` and ``evaluate`` (the judge,
:class:`EpisodeWorld`): the MuJoCo arm's pick-and-place world
(``robot.options.task = "pick_place"`` or ``"conveyor"``) or the kinematic arm's touch-a-cube one.

Holds and deadline misses are counted per episode and in total: ``holds`` counts every hold once
the policy was expected to answer (the first wait for the server is not one), ``misses`` every
answer that came after its actions were due. An episode in which every chunk came too late
shows its holds, its misses and ``0`` chunks, never a clean row.

With ``record.dir`` (``--record DIR``), DIR must be new or empty (a recording is never
overwritten); episode ``i`` is recorded in ``DIR/episode_{i:03d}`` (the agent's episode folder)
with ``episode.json``: its seed, instruction and result (status, success, reason, steps, chunks,
holds, deadline misses); ``DIR/eval.json`` holds :meth:`EvalResults.to_dict`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from prometheus_client import CollectorRegistry

from robot_agent.agent import Agent
from robot_agent.config import AgentConfig
from robot_agent.drivers import create_robot
from robot_agent.drivers.base import Robot
from robot_agent.errors import ConfigError
from robot_agent.metrics import AgentMetrics
from robot_agent.recorder import check_new_folder, jsonable, write_atomically
from robot_agent.sim.world import EpisodeResult
from vla import eventloop

__all__ = [
    "EPISODE_TIMEOUT_S",
    "EpisodeOutcome",
    "EpisodeWorld",
    "EvalResults",
    "evaluate",
    "evaluate_sync",
    "format_results",
]

logger = logging.getLogger(__name__)

#: Wall-clock seconds after which an episode the world has not judged counts as a timeout: the
#: MuJoCo pick-and-place world's own limit (25 s of sim time) plus 5 s, so its judge ends an
#: episode first.
EPISODE_TIMEOUT_S = 30.0


@runtime_checkable
class EpisodeWorld(Protocol):
    """What an evaluation asks of a simulated task: a new scene, and the judge's word on it."""

    def reset(self, seed: int | None = None) -> str:
        """New scene, arm home; returns the instruction."""
        ...

    def evaluate(self) -> EpisodeResult:
        """Running, or the episode's final success / failure."""
        ...


@dataclass(frozen=True)
class EpisodeOutcome:
    """One episode: what was asked, what the judge said, and how often the arm had to hold."""

    episode: int
    seed: int
    instruction: str
    target: str
    status: str  # success | failure | timeout
    reason: str
    reached: str | None
    time_to_success_s: float | None
    holds: dict[str, int]
    deadline_misses: int
    roundtrip_p50_s: float | None
    safety_interventions: int
    steps: int = 0  # control ticks run
    chunks: int = 0  # chunks the arm could use (arrived before their actions were all due)

    @property
    def success(self) -> bool:
        return self.status == "success"

    @property
    def holds_after_start(self) -> int:
        """Holds once the policy was answering (the initial wait for the server not counted)."""
        return sum(n for reason, n in self.holds.items() if reason != "waiting_for_server")

    def to_dict(self) -> dict[str, Any]:
        """The episode as JSON values, with ``success`` and ``holds_after_start``."""
        return {
            **dataclasses.asdict(self),
            "success": self.success,
            "holds_after_start": self.holds_after_start,
        }


@dataclass(frozen=True)
class EvalResults:
    episodes: tuple[EpisodeOutcome, ...]
    latency_ms: float
    jitter_ms: float
    blend: str
    interpolation: str

    @property
    def success_rate(self) -> float:
        return sum(e.success for e in self.episodes) / len(self.episodes) if self.episodes else 0.0

    @property
    def times_to_success(self) -> list[float]:
        return [e.time_to_success_s for e in self.episodes if e.time_to_success_s is not None]

    @property
    def holds(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for e in self.episodes:
            total.update({k: v for k, v in e.holds.items() if k != "waiting_for_server"})
        return total

    @property
    def deadline_misses(self) -> int:
        return sum(e.deadline_misses for e in self.episodes)

    def to_dict(self) -> dict[str, Any]:
        times = self.times_to_success
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "blend": self.blend,
            "interpolation": self.interpolation,
            "episodes": [e.to_dict() for e in self.episodes],
            "success_rate": self.success_rate,
            "time_to_success_median_s": statistics.median(times) if times else None,
            "time_to_success_mean_s": statistics.fmean(times) if times else None,
            "holds": dict(self.holds),
            "deadline_misses": self.deadline_misses,
        }


async def evaluate(
    config: AgentConfig,
    *,
    episodes: int,
    seed: int = 0,
    episode_timeout_s: float = EPISODE_TIMEOUT_S,
    robot: Robot | None = None,
    metrics: AgentMetrics | None = None,
    on_episode: Callable[[EpisodeOutcome], None] | None = None,
) -> EvalResults:
    """Run ``episodes`` episodes on the simulated arm; the caller's ``robot`` is left connected.

    Raises :class:`ConfigError` for ``episodes < 1``, a robot that is not the simulated arm (no
    ``world`` with ``reset`` and ``evaluate``), or a camera that is not simulated."""
    if episodes < 1:
        raise ConfigError(f"episodes is {episodes}, must be >= 1", field="episodes")
    if config.record.dir:  # before any arm is touched: a recording is never overwritten
        check_new_folder(config.record.dir)
    owns_robot = robot is None
    if robot is None:
        if config.robot.kind != "sim":  # refused before connecting: never start a real arm's controller
            raise ConfigError(
                f"robot.kind is {config.robot.kind!r}: eval needs the simulated arm and its world (robot.kind = 'sim')",
                field="robot.kind",
            )
        # The world is scored on what its own cameras render: a real camera would show the
        # policy a scene the score knows nothing of (--camera usb opened /dev/video0 for an eval).
        for name, camera in sorted(config.cameras.items()):
            if camera.kind != "sim":
                raise ConfigError(
                    f"cameras.{name}.kind is {camera.kind!r}: eval renders the simulated world's cameras "
                    "(kind = 'sim')",
                    field=f"cameras.{name}.kind",
                )
        if config.default_camera != "sim":
            raise ConfigError(
                f"default_camera is {config.default_camera!r}: eval renders the simulated world's cameras "
                "(--camera sim)",
                field="default_camera",
            )
        robot = create_robot(config.robot)
        await asyncio.to_thread(robot.connect)
    world = getattr(robot, "world", None)  # the simulated arm's (SimRobot.world)
    if not isinstance(world, EpisodeWorld):
        raise ConfigError(
            f"robot.kind is {config.robot.kind!r}: eval needs the simulated arm and its world (robot.kind = 'sim')",
            field="robot.kind",
        )
    metrics = metrics if metrics is not None else AgentMetrics(CollectorRegistry())
    outcomes: list[EpisodeOutcome] = []
    try:
        for i in range(episodes):
            outcome = await _episode(config, robot, world, metrics, i, seed + i, episode_timeout_s)
            outcomes.append(outcome)
            if on_episode is not None:
                on_episode(outcome)
    finally:
        if owns_robot:
            await asyncio.to_thread(robot.stop)
            await asyncio.to_thread(robot.close)
    results = EvalResults(
        episodes=tuple(outcomes),
        latency_ms=config.server.inject_latency_ms,
        jitter_ms=config.server.inject_jitter_ms,
        blend=config.control.blend,
        interpolation=config.control.interpolation,
    )
    if config.record.dir:
        _write_json(Path(config.record.dir) / "eval.json", results.to_dict())
    return results


def _write_json(path: Path, value: Any) -> None:
    """A result file next to the recordings; a write that fails is a warning (as the recorder's)."""
    try:
        write_atomically(path, json.dumps(jsonable(value), indent=2) + "\n")
    except OSError as exc:
        logger.warning("eval: cannot write %s (%s)", path, exc)


async def _episode(
    config: AgentConfig,
    robot: Robot,
    world: EpisodeWorld,
    metrics: AgentMetrics,
    index: int,
    seed: int,
    timeout_s: float,
) -> EpisodeOutcome:
    instruction = await asyncio.to_thread(world.reset, seed)
    record = config.record
    if record.dir:
        record = dataclasses.replace(record, dir=str(Path(record.dir) / f"episode_{index:03d}"))
    episode_config = dataclasses.replace(
        config, instruction=instruction, duration_s=None, metrics_port=None, record=record
    )
    agent = Agent(episode_config, robot=robot, metrics=metrics)
    task = asyncio.create_task(agent.serve(), name=f"episode-{index}")
    deadline = time.monotonic() + timeout_s
    result = world.evaluate()
    try:
        while not task.done() and not result.done and time.monotonic() < deadline:
            await asyncio.wait({task}, timeout=0.02)
            result = world.evaluate()
    finally:
        agent.request_stop()
        await asyncio.wait({task})
    task.result()  # an agent error ends the evaluation with it
    summary = agent.summary or {}
    status, reason = (
        (result.status, result.reason) if result.done else ("timeout", f"no result after {timeout_s:g} s")
    )
    outcome = EpisodeOutcome(
        episode=index,
        seed=seed,
        instruction=instruction,
        target=result.target,
        status=status,
        reason=reason,
        reached=result.reached,
        time_to_success_s=result.time_to_success_s,
        holds=dict(summary.get("holds", {})),
        deadline_misses=int(summary.get("deadline_misses", 0)),
        roundtrip_p50_s=summary.get("roundtrip_s", {}).get("p50"),
        safety_interventions=sum(summary.get("safety_interventions", {}).values()),
        steps=int(summary.get("ticks", 0)),
        chunks=int(summary.get("chunks", 0)),
    )
    if record.dir:
        _write_json(Path(record.dir) / "episode.json", outcome.to_dict())
    logger.info("Episode %d (%r): %s %s", index, instruction, status, reason)
    return outcome


def evaluate_sync(
    config: AgentConfig,
    *,
    episodes: int,
    seed: int = 0,
    episode_timeout_s: float = EPISODE_TIMEOUT_S,
    robot: Robot | None = None,
    metrics: AgentMetrics | None = None,
    on_episode: Callable[[EpisodeOutcome], None] | None = None,
) -> EvalResults:
    """:func:`evaluate` (same arguments) on a fresh event loop (uvloop when installed)."""
    run = evaluate(
        config,
        episodes=episodes,
        seed=seed,
        episode_timeout_s=episode_timeout_s,
        robot=robot,
        metrics=metrics,
        on_episode=on_episode,
    )
    return eventloop.run(run)


def format_results(results: EvalResults) -> str:
    """The table ``robot-agent eval`` prints."""
    lines = [
        f"Evaluation: {len(results.episodes)} episodes, added latency {results.latency_ms:g} ms "
        f"(jitter {results.jitter_ms:g} ms), blend {results.blend}, interpolation {results.interpolation}",
        f"{'ep':>3} {'seed':>5}  {'instruction':<28} {'result':<8} {'time':>7} {'holds':>5} {'misses':>6} "
        f"{'chunks':>6} {'rtt p50':>8}  reason",
    ]
    for e in results.episodes:
        t = f"{e.time_to_success_s:.2f}s" if e.time_to_success_s is not None else "-"
        rtt = f"{e.roundtrip_p50_s * 1000:.0f}ms" if e.roundtrip_p50_s is not None else "-"
        lines.append(
            f"{e.episode:>3} {e.seed:>5}  {e.instruction[:28]:<28} {e.status:<8} {t:>7} {e.holds_after_start:>5} "
            f"{e.deadline_misses:>6} {e.chunks:>6} {rtt:>8}  {e.reason}"
        )
    times = results.times_to_success
    successes = sum(e.success for e in results.episodes)
    time_text = (
        f"median {statistics.median(times):.2f} s, mean {statistics.fmean(times):.2f} s" if times else "-"
    )
    holds = ", ".join(f"{k} {v}" for k, v in sorted(results.holds.items())) or "none"
    lines += [
        f"success rate      {successes}/{len(results.episodes)} ({results.success_rate:.0%})",
        f"time to success   {time_text}",
        f"holds             {sum(results.holds.values())} ({holds})",
        f"deadline misses   {results.deadline_misses}",
    ]
    return "\n".join(lines)

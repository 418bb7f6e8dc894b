"""``make demo``: serve the demo bundle on localhost and run the agent on the simulated arm.

Starts ``inference-server`` as a child process on a free loopback port (as on a real setup, the
policy runs in another process than the control loop), waits for its health check to say
SERVING, then runs ``robot_agent.evaluation.evaluate`` for N episodes of the chosen task
(``pick_place``, or ``conveyor``: the named cube rides a belt) on the chosen engine (``mujoco``,
or the ``kinematic`` sim) with random scenes and instructions, prints each result, the success
rate and the latency summary, and saves the video of the first episode: the front camera (the
whole arm, the cubes and the pad) in ``video`` and the wrist camera beside it
(``episode_000_wrist.mp4``), with the instruction and the status drawn over them. The video is
recorded as snapshots while the agent runs and rendered once the episodes are over
(:mod:`vla_demo.video` says why). The server is stopped in ``finally``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from robot_agent.config import AgentConfig, ControlConfig, RobotConfig, ServerConfig
from robot_agent.drivers.sim import DEFAULTS, ENGINES, TASKS, SimRobot
from robot_agent.evaluation import EpisodeOutcome, EvalResults, evaluate_sync
from robot_agent.metrics import AgentMetrics
from vla_demo.video import (
    EpisodeRecorder,
    SceneSource,
    VideoError,
    scene_source,
    write_episode_videos,
)

__all__ = ["ENGINES", "TASKS", "DemoConfig", "DemoError", "latency_summary", "run_demo", "serve_bundle"]

logger = logging.getLogger(__name__)

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "demo"


class DemoError(Exception):
    """Raised when the demo cannot run: no bundle, or the server does not come up."""


@dataclass(frozen=True)
class DemoConfig:
    """What ``python -m vla_demo`` runs. ``task``: ``pick_place`` or ``conveyor`` (MuJoCo only;
    the kinematic engine has its touch-the-cube task); ``video``: the front view of the first
    episode (the wrist view goes beside it, ``<stem>_wrist.mp4``), None for none; ``video_fps``:
    frames per second of sim time; ``episode_timeout_s``: the world's time limit per episode,
    None for the engine's (25 s MuJoCo, 15 s kinematic; the evaluation waits 1 s more). Raises
    ``ValueError`` naming a field out of range."""

    policy: Path = DEFAULT_POLICY
    episodes: int = 10
    seed: int = 0
    task: str = "pick_place"
    engine: str = "mujoco"
    video: Path | None = Path("runs/demo/episode_000.mp4")
    video_fps: float = 15.0
    inject_latency_ms: float = 0.0
    inject_jitter_ms: float = 0.0
    blend: str = "crossfade"
    interpolation: str = "minimum_jerk"
    episode_timeout_s: float | None = None
    server_start_timeout_s: float = 120.0
    server_address: str | None = None  # an already running server: start none

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"DemoConfig.task is {self.task!r}: must be one of {TASKS!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"DemoConfig.engine is {self.engine!r}: must be one of {ENGINES!r}")
        if self.engine == "kinematic" and self.task != "pick_place":
            raise ValueError(
                f'DemoConfig.task is {self.task!r}: the kinematic engine has one task; use engine "mujoco"'
            )
        for name in ("video_fps", "episode_timeout_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"DemoConfig.{name} is {value!r}: must be a finite number > 0")

    @property
    def time_limit_s(self) -> float:
        """The episode's time limit (s): ``episode_timeout_s``, else the engine's default."""
        if self.episode_timeout_s is not None:
            return self.episode_timeout_s
        return float(DEFAULTS[self.engine]["time_limit_s"])  # type: ignore[index, arg-type]

    @property
    def task_name(self) -> str:
        """The task as printed: ``pick_place``, ``conveyor``, or ``touch`` (kinematic engine)."""
        return self.task if self.engine == "mujoco" else "touch"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_bundle(
    policy: Path, *, timeout_s: float = 120.0, extra_args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Run ``inference-server`` on ``policy`` in a child process; yield its address once SERVING."""
    if not (policy / "policy.toml").exists():
        raise DemoError(
            f"no policy bundle at {policy} (policy.toml missing); build it: python -m vla_demo train --out {policy}"
        )
    port = _free_port()
    address = f"127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "inference_server", "--policy", str(policy), "--host", "127.0.0.1",
           "--port", str(port), "--no-metrics", "--log-level", "warning", *extra_args]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr_tail: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(proc, stderr_tail), daemon=True)
    reader.start()
    try:
        _wait_serving(address, proc, stderr_tail, timeout_s)
        logger.info("Inference server on %s serving %s", address, policy)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drain(proc: subprocess.Popen[bytes], tail: list[bytes]) -> None:
    assert proc.stderr is not None
    for line in proc.stderr:
        tail.append(line)
        del tail[:-20]


def _wait_serving(address: str, proc: subprocess.Popen[bytes], tail: list[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc.poll() is not None:
                text = b"".join(tail).decode(errors="replace").strip()
                raise DemoError(f"the inference server exited with code {proc.returncode}: {text[-2000:]}")
            with contextlib.suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise DemoError(f"the inference server at {address} was not SERVING after {timeout_s:g} s")
            time.sleep(0.1)


def _quantile_from_histogram(metrics: AgentMetrics, q: float) -> float | None:
    """Upper bucket bound holding quantile ``q`` of ``vla_agent_roundtrip_seconds``."""
    buckets: list[tuple[float, float]] = []
    for metric in metrics.roundtrip_seconds.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= q * total:
            return le
    return math.inf


def latency_summary(results: EvalResults, metrics: AgentMetrics | None = None) -> str:
    rtts = sorted(e.roundtrip_p50_s for e in results.episodes if e.roundtrip_p50_s is not None)
    holds = results.holds
    misses = sum(e.deadline_misses for e in results.episodes)
    parts = []
    if rtts:
        parts.append(
            f"round trip p50 per episode: median {rtts[len(rtts) // 2] * 1000:.1f} ms, "
            f"worst {rtts[-1] * 1000:.1f} ms"
        )
    if metrics is not None:
        bounds = [(q, _quantile_from_histogram(metrics, q)) for q in (0.5, 0.95, 0.99)]
        parts.append(
            "all requests "
            + ", ".join(f"p{int(q * 100)} <= {b * 1000:.0f} ms" for q, b in bounds if b is not None)
        )
    by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(holds.items())) or "none"
    parts.append(f"deadline misses {misses}, holds {sum(holds.values())} ({by_reason})")
    return "; ".join(parts)


def format_episode(e: EpisodeOutcome) -> str:
    t = f"{e.time_to_success_s:5.2f} s" if e.time_to_success_s is not None else "   -   "
    mark = "ok  " if e.success else "FAIL"
    reached = f"reached {e.reached}" if e.reached else "reached nothing"
    return f"episode {e.episode:>2} seed {e.seed:>4}  {mark} {t}  {e.instruction!r:<40} {reached}; {e.reason}"


def sim_options(config: DemoConfig) -> dict[str, Any]:
    """``[robot.options]`` of the simulated arm for ``config``: wall clock, engine, task (MuJoCo
    only), time limit."""
    options: dict[str, Any] = {"realtime": True, "engine": config.engine, "time_limit_s": config.time_limit_s}
    if config.engine == "mujoco":
        options["task"] = config.task
    return options


def agent_config(address: str, config: DemoConfig) -> AgentConfig:
    """The agent's config for the demo: the server at ``address`` (with the injected latency),
    the simulated arm (:func:`sim_options`), the blend and interpolation, no metrics port."""
    return AgentConfig(
        server=ServerConfig(
            address=address,
            inject_latency_ms=config.inject_latency_ms,
            inject_jitter_ms=config.inject_jitter_ms,
        ),
        robot=RobotConfig(kind="sim", options=sim_options(config)),
        control=ControlConfig(blend=config.blend, interpolation=config.interpolation),
        metrics_port=None,
    )


def run_demo(config: DemoConfig, *, out: Callable[[str], Any] = print) -> EvalResults:
    """Serve (unless ``server_address``), evaluate, print; then render the first episode's video
    (``config.video``; a video that cannot be written is a warning line, not an error). Returns
    the results. Raises :class:`DemoError` when the server does not come up."""
    with contextlib.ExitStack() as stack:
        address = config.server_address
        if address is None:
            out(f"Starting the inference server on {config.policy} ...")
            address = stack.enter_context(
                serve_bundle(config.policy, timeout_s=config.server_start_timeout_s)
            )
        agent = agent_config(address, config)
        robot = SimRobot.from_config(agent.robot)
        robot.connect()
        metrics = AgentMetrics(CollectorRegistry())
        out(
            f"Running {config.episodes} {config.task_name} episodes on the simulated arm ({config.engine}; "
            f"added latency {config.inject_latency_ms:g} ms, blend {config.blend}) ..."
        )
        source = scene_source(robot) if config.video is not None else None
        recorder = EpisodeRecorder(source, robot.world, metrics, fps=config.video_fps) if source else None
        results: list[EpisodeOutcome] = []
        first = _episodes(agent, config, robot, metrics, config.seed, 1, out, recorder=recorder)
        results += first.episodes
        if config.episodes > 1:
            rest = _episodes(
                agent, config, robot, metrics, config.seed + 1, config.episodes - 1, out, recorder=None
            )
            results += [replace(e, episode=e.episode + 1) for e in rest.episodes]
        robot.stop()
        final = replace(first, episodes=tuple(results))
        n_ok = sum(e.success for e in results)
        times = sorted(final.times_to_success)
        wrong = sum(e.reached is not None and e.reached != e.target for e in results)
        median = f"{times[len(times) // 2]:.2f} s" if times else "-"
        out(
            f"success rate {n_ok}/{len(results)} ({final.success_rate:.0%}); wrong cube {wrong}; "
            f"time to success median {median}"
        )
        out("latency: " + latency_summary(final, metrics))
        if recorder is not None and source is not None and config.video is not None:
            _write_video(recorder, source, config.video, config.video_fps, out)
        return final


def _write_video(
    recorder: EpisodeRecorder, source: SceneSource, path: Path, fps: float, out: Callable[[str], Any]
) -> None:
    """Render the recorded first episode (after the run: no control tick waits on a renderer)."""
    snapshots = recorder.episode()
    start = time.monotonic()
    try:
        written = write_episode_videos(snapshots, source, path, fps=fps)
    except VideoError as exc:
        out(f"no video: {exc}")
        return
    finally:
        source.close()
    took = time.monotonic() - start
    files = ", ".join(f"{view} {p} ({n} frames)" for view, (p, n) in written.items())
    late = f"; {recorder.late} snapshots late" if recorder.late else ""
    out(f"video of episode 0 at {fps:g} fps: {files}; rendered in {took:.1f} s{late}")


def _episodes(
    agent: AgentConfig,
    config: DemoConfig,
    robot: SimRobot,
    metrics: AgentMetrics,
    seed: int,
    n: int,
    out: Callable[[str], Any],
    *,
    recorder: EpisodeRecorder | None,
) -> EvalResults:
    offset = seed - config.seed

    def on_episode(e: EpisodeOutcome) -> None:
        out(format_episode(replace(e, episode=e.episode + offset)))

    if recorder is not None:
        recorder.start()
    try:
        return evaluate_sync(
            agent, episodes=n, seed=seed, episode_timeout_s=config.time_limit_s + 1.0, robot=robot,
            metrics=metrics, on_episode=on_episode,
        )  # fmt: skip
    finally:
        if recorder is not None:
            recorder.stop()

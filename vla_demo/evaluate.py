"""Offline evaluation of a bundle in the fast simulation: the bundle runs in-process through the
server's own loader and backend (same normalisation, same plugin), chunks are executed as the
agent would after a simulated latency. For iterating on data and model; the served loop is the
judge (``python -m vla_demo``, ``bench/latency_sweep.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference_server.backends import Batch, create_backend
from inference_server.bundle import load_bundle
from robot_agent.sim.mujoco_render import SceneRenderer
from robot_agent.sim.world import EpisodeResult
from vla_demo.rollout import Observation, run_episode
from vla_demo.task import CAMERA, make_sim_robot

__all__ = ["BundlePolicy", "EvalSummary", "evaluate_offline"]

#: Scene seeds for evaluation, as `robot-agent eval` numbers them; training scenes start at 1_000_000.
EVAL_SEED_BASE = 0


class BundlePolicy:
    """A bundle as a function of one observation, through the server's loader and backend."""

    def __init__(self, path: Path | str, *, runtime: str | None = None) -> None:
        self.bundle = load_bundle(path)
        if runtime is not None:
            self.bundle.manifest.setdefault("extra", {})["runtime"] = runtime
        self.backend = create_backend(self.bundle)
        self.image_size = self.bundle.cameras[0].height

    def __call__(self, obs: Observation) -> np.ndarray:
        assert obs.image is not None
        batch = Batch(
            images={CAMERA: obs.image[None]},
            state=self.bundle.normalizer.normalize_state(obs.state[None].astype(np.float32)),
            instruction=[obs.instruction],
            prev_actions=[None],
            inference_delay_steps=[None],
        )
        return self.bundle.normalizer.unnormalize_actions(np.asarray(self.backend.predict(batch)))[0]


@dataclass(frozen=True)
class EvalSummary:
    results: tuple[EpisodeResult, ...]

    @property
    def success_rate(self) -> float:
        return sum(r.success for r in self.results) / max(1, len(self.results))

    @property
    def wrong_cube(self) -> int:
        return sum(r.reached is not None and r.reached != r.target for r in self.results)

    def line(self) -> str:
        times = [r.time_to_success_s for r in self.results if r.time_to_success_s is not None]
        reasons: dict[str, int] = {}
        for r in self.results:
            if not r.success:
                key = r.reason.split(" (")[0]
                reasons[key] = reasons.get(key, 0) + 1
        return (
            f"success {sum(r.success for r in self.results)}/{len(self.results)} ({self.success_rate:.0%}), "
            f"time to success p50 {np.median(times) if times else float('nan'):.2f} s, failures {reasons}"
        )


def evaluate_offline(
    bundle: Path | str,
    episodes: int = 30,
    *,
    latency_s: float = 0.0,
    replan_s: float = 0.8,
    seeds: Sequence[int] | None = None,
    runtime: str | None = None,
    progress: bool = True,
    conveyor: bool = False,
) -> EvalSummary:
    """Run ``bundle`` on scene seeds ``seeds`` (default ``0 .. episodes - 1``) of the static
    pick-and-place task, or the conveyor task with ``conveyor``; chunks arrive ``latency_s``
    after their observation, one is asked for every ``replan_s`` (default 0.8 s: the agent's
    schedule, ``scheduler.execution_horizon`` 0.5 of a 1.6 s chunk). Replanning every 0.1 s with
    no latency is a stress case: each chunk is cut after its first, slowest step, re-anchored at
    the lagging measured tool, and the arm can stall short of the cube."""
    policy = BundlePolicy(bundle, runtime=runtime)
    robot = make_sim_robot(conveyor=conveyor, seed=0)
    renderer = SceneRenderer(robot.arm.model)  # type: ignore[attr-defined]
    seeds = list(seeds) if seeds is not None else [EVAL_SEED_BASE + i for i in range(episodes)]
    results = []
    for seed in tqdm(seeds, desc="offline eval", unit="ep", disable=not progress):
        results.append(
            run_episode(
                robot,
                policy,
                seed=seed,
                latency_s=latency_s,
                replan_s=replan_s,
                image_size=policy.image_size,
                renderer=renderer,
            )
        )
    return EvalSummary(tuple(results))

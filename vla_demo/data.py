"""Demonstrations for behaviour cloning: the scripted pick-and-place expert, perturbed, in the
manual-clock MuJoCo simulation.

Each episode draws its own execution conditions (static or conveyor task, how often a new chunk
is asked for, how late it arrives, how hard the executed targets are pushed around), so the
recorded states cover what the served loop meets, including the way back from a push. Labels are
always the clean expert chunk from the state actually reached, never the noisy command.
Episodes run in worker processes (one MuJoCo model and renderer each).
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vla_demo.rollout import Noise, Observation, run_episode
from vla_demo.task import IMAGE_SIZE, tokenize

__all__ = ["CONVEYOR_SHARE", "TRAIN_SEED_BASE", "Dataset", "generate"]

logger = logging.getLogger(__name__)

#: Training scenes use seeds from here on, so evaluation seeds (0, 1, 2, ... in ``robot-agent
#: eval`` and :mod:`vla_demo.evaluate`) are scenes the policy has never seen.
TRAIN_SEED_BASE = 1_000_000
#: The share of episodes on the conveyor task, so ``eval --task conveyor`` has a policy that tries.
CONVEYOR_SHARE = 0.3
TARGET_NAMES = ("cube_x", "cube_y", "cube_z", "pad_x", "pad_y")


@dataclass(frozen=True)
class Dataset:
    """Samples ``N``: images uint8 ``[N, S, S, 3]``, state float32 ``[N, 4]``, tokens int64
    ``[N, T]``, actions float32 ``[N, H, 7]`` (ee_delta, gripper absolute), episode index ``[N]``,
    and ``target`` float32 ``[N, 5]`` (``TARGET_NAMES``: the named cube's centre and the pad's
    centre; privileged, an auxiliary training target, never an input)."""

    images: np.ndarray
    state: np.ndarray
    tokens: np.ndarray
    actions: np.ndarray
    episode: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return int(self.state.shape[0])

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=self.images, state=self.state, tokens=self.tokens, actions=self.actions,
                 episode=self.episode, target=self.target)  # fmt: skip

    @classmethod
    def load(cls, path: Path, *, seed: int = 0) -> Dataset:
        """Read ``path`` (written by :meth:`save`); ``seed`` is unused (kept for the CLI)."""
        del seed
        with np.load(path) as f:
            return cls(**{k: f[k] for k in ("images", "state", "tokens", "actions", "episode", "target")})

    @classmethod
    def concat(cls, parts: list[Dataset]) -> Dataset:
        """One dataset of ``parts``, episode indices renumbered to stay distinct."""
        offset = 0
        episodes = []
        for part in parts:
            episodes.append(part.episode + offset)
            offset += int(part.episode.max(initial=-1)) + 1
        return cls(
            images=np.concatenate([p.images for p in parts]),
            state=np.concatenate([p.state for p in parts]),
            tokens=np.concatenate([p.tokens for p in parts]),
            actions=np.concatenate([p.actions for p in parts]),
            episode=np.concatenate(episodes),
            target=np.concatenate([p.target for p in parts]),
        )


@dataclass(frozen=True)
class _Job:
    episode: int
    seed: int
    image_size: int
    policy: str | None = None  # a bundle to act (DAgger); None: the expert acts
    expert_share: float = 0.0  # with a bundle: the share of chunks the expert still gives


_ROBOTS: dict[bool, object] = {}
_POLICIES: dict[str, object] = {}


def _bundle_policy(path: str):  # type: ignore[no-untyped-def]
    """The worker's copy of a bundle as a policy (loaded once per process)."""
    if path not in _POLICIES:
        from vla_demo.evaluate import BundlePolicy

        _POLICIES[path] = BundlePolicy(path)
    return _POLICIES[path]


def _robot(conveyor: bool):  # type: ignore[no-untyped-def]
    """The worker's robot for a task (made once per process: a MuJoCo model and renderer)."""
    from robot_agent.sim.mujoco_render import SceneRenderer
    from vla_demo.task import make_sim_robot

    if conveyor not in _ROBOTS:
        robot = make_sim_robot(conveyor=conveyor)
        _ROBOTS[conveyor] = (robot, SceneRenderer(robot.arm.model))  # type: ignore[attr-defined]
    return _ROBOTS[conveyor]


def _episode(job: _Job) -> tuple[int, dict[str, np.ndarray], bool]:
    """One perturbed expert episode; its samples as arrays, and whether it succeeded."""
    from vla_demo.expert import scene_of
    from vla_demo.rollout import expert_policy

    rng = np.random.default_rng([job.seed, job.episode])
    conveyor = bool(rng.random() < CONVEYOR_SHARE)
    robot, renderer = _robot(conveyor)
    scale = 0.0 if rng.random() < 0.2 else rng.uniform(0.5, 1.5)
    noise = None if scale == 0 else Noise(std_m=0.008 * scale, kick_probability_per_s=0.15 * scale)
    rows: dict[str, list[np.ndarray]] = {k: [] for k in ("images", "state", "tokens", "actions", "target")}

    def record(obs: Observation, chunk: np.ndarray) -> None:
        assert obs.image is not None
        scene = scene_of(robot.world)
        rows["images"].append(obs.image)
        rows["state"].append(obs.state)
        rows["tokens"].append(tokenize(obs.instruction))
        rows["actions"].append(chunk)
        rows["target"].append(np.array([*scene.cube, *scene.pad[:2]], dtype=np.float32))

    policy = expert_policy(robot)
    if job.policy is not None:
        learned, expert = _bundle_policy(job.policy), policy
        share = job.expert_share

        def policy(obs: Observation) -> np.ndarray:
            return expert(obs) if rng.random() < share else learned(obs)

        noise = None if scale == 0 else Noise(std_m=0.004 * scale, kick_probability_per_s=0.05 * scale)
    result = run_episode(
        robot,
        policy,
        seed=TRAIN_SEED_BASE + job.seed * 100_000 + job.episode,
        replan_s=float(rng.choice([0.1, 0.2, 0.3, 0.5])),
        latency_s=float(rng.uniform(0.0, 0.3)),
        noise=noise,
        record=record,
        image_size=job.image_size,
        needs_image=job.policy is not None,
        renderer=renderer,
        dwell_after_success_s=float(rng.uniform(0.3, 1.0)),
    )
    arrays = {k: np.stack(v) for k, v in rows.items()}
    return job.episode, arrays, result.success


def generate(
    episodes: int,
    *,
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    progress: bool = True,
    workers: int = 2,
    policy: Path | str | None = None,
    expert_share: float = 0.3,
) -> Dataset:
    """Record ``episodes`` perturbed expert episodes (scene seeds ``TRAIN_SEED_BASE + seed * 100000
    + i``, a ``CONVEYOR_SHARE`` of them on the conveyor) in ``workers`` processes (1: in this one).

    With ``policy`` (a bundle folder), that policy acts instead, the expert giving an
    ``expert_share`` of the chunks, and every visited state is still labelled by the expert
    (DAgger, Ross et al. 2011): the data then covers the states the learned policy reaches."""
    bundle = str(policy) if policy is not None else None
    jobs = [_Job(i, seed, image_size, bundle, expert_share) for i in range(episodes)]
    results: list[tuple[int, dict[str, np.ndarray], bool]] = []
    bar = tqdm(total=episodes, desc="expert episodes", unit="ep", disable=not progress)
    if workers <= 1:
        for job in jobs:
            results.append(_episode(job))
            bar.update(1)
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for out in pool.imap_unordered(_episode, jobs, chunksize=4):
                results.append(out)
                bar.update(1)
    bar.close()
    results.sort(key=lambda r: r[0])
    failures = sum(not ok for _, _, ok in results)
    if failures:
        logger.info(
            "%d of %d expert episodes failed (perturbed); their samples are kept.", failures, episodes
        )
    return Dataset(
        images=np.concatenate([r[1]["images"] for r in results]),
        state=np.concatenate([r[1]["state"] for r in results]).astype(np.float32),
        tokens=np.concatenate([r[1]["tokens"] for r in results]),
        actions=np.concatenate([r[1]["actions"] for r in results]).astype(np.float32),
        episode=np.concatenate([np.full(len(r[1]["state"]), r[0], dtype=np.int32) for r in results]),
        target=np.concatenate([r[1]["target"] for r in results]),
    )

"""Demonstrations for behaviour cloning: the scripted expert, perturbed, in the fast simulation.

Each episode draws its own execution conditions (how often a new chunk is asked for, how late
it arrives, how hard the executed targets are pushed around, where the arm starts), so the
recorded states cover what the served loop meets, including the way back from a push. Labels are
always the clean expert chunk from the state actually reached, never the noisy command.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from robot_agent.sim.clock import ManualClock
from robot_agent.sim.render import render
from robot_agent.sim.world import SimWorld
from vla_demo.rollout import Noise, Observation, run_episode
from vla_demo.task import IMAGE_SIZE, make_sim_robot, tokenize

__all__ = ["Dataset", "generate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Samples ``N``: images uint8 ``[N, S, S, 3]``, state float32 ``[N, 3]``, tokens int64
    ``[N, T]``, actions float32 ``[N, H, 7]`` (ee_delta), episode index ``[N]``, and the named
    cube's top centre ``[N, 3]`` (privileged: an auxiliary training target, never an input)."""

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
        """Read ``path``; data saved without targets gets them from the scene seeds (``seed`` as
        given to :func:`generate`)."""
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        if "target" not in arrays:
            arrays["target"] = _targets(arrays["episode"], seed)
        return cls(**{k: arrays[k] for k in ("images", "state", "tokens", "actions", "episode", "target")})


def _targets(episode: np.ndarray, seed: int) -> np.ndarray:
    world = SimWorld(clock=ManualClock())
    tops = {}
    for ep in np.unique(episode):
        world.reset(TRAIN_SEED_BASE + seed + int(ep))
        tops[int(ep)] = world.target_cube.top.astype(np.float32)
    return np.stack([tops[int(ep)] for ep in episode])


#: Training scenes use seeds from here on, so evaluation seeds (0, 1, 2, ... by default in
#: ``robot-agent eval``) are scenes the policy has never seen.
TRAIN_SEED_BASE = 1_000_000


def generate(episodes: int, *, seed: int = 0, image_size: int = IMAGE_SIZE, progress: bool = True) -> Dataset:
    """Record ``episodes`` perturbed expert episodes (scene seeds ``TRAIN_SEED_BASE + seed + i``)."""
    robot = make_sim_robot(realtime=False, seed=seed, physics_dt_s=0.005)
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    states: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    actions: list[np.ndarray] = []
    index: list[int] = []
    targets: list[np.ndarray] = []
    failures = 0
    for ep in tqdm(range(episodes), desc="expert episodes", unit="ep", disable=not progress):
        scale = 0.0 if rng.random() < 0.15 else rng.uniform(0.5, 1.5)
        noise = None if scale == 0 else Noise(std_m=0.015 * scale, kick_probability_per_s=0.3 * scale)
        # A fifth of the episodes render a 640x480 render shrunk to the input size, as the agent
        # does with a default-sized camera, so both routes look familiar to the policy.
        big = rng.random() < 0.2

        def record(obs: Observation, chunk: np.ndarray, ep: int = ep, big: bool = big) -> None:
            image = obs.image
            if big:
                ee, gripper, _ = robot.snapshot()
                image = cv2.resize(
                    render(robot.world, ee, gripper, 640, 480),
                    (image_size, image_size),
                    interpolation=cv2.INTER_AREA,
                )
            assert image is not None
            images.append(image)
            states.append(obs.state)
            tokens.append(tokenize(obs.instruction))
            actions.append(chunk)
            index.append(ep)
            targets.append(robot.world.target_cube.top.astype(np.float32))

        result = run_episode(
            robot,
            lambda obs: _expert(robot, obs),
            seed=TRAIN_SEED_BASE + seed + ep,
            replan_s=float(rng.choice([0.1, 0.2, 0.3, 0.5])),
            latency_s=float(rng.uniform(0.0, 0.4)),
            noise=noise,
            record=record,
            image_size=image_size,
            needs_image=False,
            dwell_after_success_s=float(rng.uniform(0.3, 1.0)),
            start_offset_m=0.15 if rng.random() < 0.4 else 0.0,
        )
        failures += not result.success
    if failures:
        logger.info(
            "%d of %d expert episodes failed (perturbed); their samples are kept.", failures, episodes
        )
    return Dataset(
        images=np.stack(images),
        state=np.stack(states).astype(np.float32),
        tokens=np.stack(tokens),
        actions=np.stack(actions).astype(np.float32),
        episode=np.array(index, dtype=np.int32),
        target=np.stack(targets),
    )


def _expert(robot, obs: Observation) -> np.ndarray:  # type: ignore[no-untyped-def]
    from vla_demo.expert import expert_chunk

    return expert_chunk(obs.state, robot.world.target_cube.top)

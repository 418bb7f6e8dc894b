"""Run pick-and-place episodes in the manual-clock MuJoCo simulation, faster than real time.

Chunks are executed the way the agent does (robot_agent/control.py): action k is the target at
capture time + k*dt, relative to the tool at capture, linearly interpolated at the control rate;
its gripper value (absolute opening) goes to ``command_gripper`` when it changes; a new chunk
replaces the old one when it arrives after a simulated latency. Data generation and offline
evaluation see the same closed loop as the served demo, minus the network and the blending.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_agent.drivers.sim import SimRobot
from robot_agent.sim.clock import ManualClock
from robot_agent.sim.mujoco_render import SceneRenderer
from robot_agent.sim.world import EpisodeResult
from safety.types import Pose
from vla_demo.expert import world_chunk
from vla_demo.task import CAMERA, DT_S, IMAGE_SIZE, state_of

__all__ = ["Noise", "Observation", "Policy", "expert_policy", "run_episode"]


@dataclass(frozen=True)
class Observation:
    """What a policy gets: the front image ``[S, S, 3]`` uint8 (``None`` when not rendered), the
    state ``[4]`` (``STATE_NAMES``), the instruction, the episode time (s)."""

    image: np.ndarray | None
    state: np.ndarray
    instruction: str
    time_s: float


#: observation -> chunk ``[H, 7]`` (ee_delta, gripper absolute)
Policy = Callable[[Observation], np.ndarray]


@dataclass(frozen=True)
class Noise:
    """Perturbations of the executed tool targets (never of the labels): a slowly wandering offset
    (Ornstein-Uhlenbeck, ``std_m``, ``tau_s``) and now and then a push of ``kick_m`` held for
    ``kick_s``, so the recorded states include the way back. Scaled by ``low_scale`` while the
    target is below ``low_z_m`` (near the cubes a push knocks them over rather than teaching)."""

    std_m: float = 0.008
    tau_s: float = 0.4
    kick_probability_per_s: float = 0.15
    kick_m: tuple[float, float] = (0.02, 0.05)
    kick_s: tuple[float, float] = (0.2, 0.5)
    low_z_m: float = 0.09
    low_scale: float = 0.3


def run_episode(
    robot: SimRobot,
    policy: Policy,
    *,
    seed: int,
    control_dt_s: float = 0.02,
    replan_s: float = 0.1,
    latency_s: float = 0.0,
    noise: Noise | None = None,
    record: Callable[[Observation, np.ndarray], None] | None = None,
    record_every_s: float = DT_S,
    image_size: int = IMAGE_SIZE,
    needs_image: bool = True,
    renderer: SceneRenderer | None = None,
    dwell_after_success_s: float = 0.0,
) -> EpisodeResult:
    """One episode from ``world.reset(seed)`` until the world judges it (plus an optional dwell
    after success, for data). ``record(observation, expert_chunk)`` gets labelled samples: the
    clean expert chunk from the state reached. Raises ``RuntimeError`` on a real-time robot."""
    if not isinstance(robot.clock, ManualClock):
        raise RuntimeError("run_episode needs a manual-clock SimRobot")
    arm = robot.arm
    renderer = renderer if renderer is not None else SceneRenderer(arm.model)  # type: ignore[attr-defined]
    rng = np.random.default_rng(seed + 1_000_003)
    world = robot.world
    world.reset(seed)
    quat = robot.true_ee().quaternion
    t0 = robot.clock.now()
    offset = np.zeros(3)
    kick = np.zeros(3)
    kick_until = -1.0
    next_obs = 0.0
    next_record = 0.0
    pending: list[tuple[float, float, np.ndarray, np.ndarray]] = []  # (arrival, capture, tip, chunk)
    active: tuple[float, np.ndarray, np.ndarray] | None = None
    last_gripper: float | None = None
    success_at: float | None = None
    while True:
        t = robot.clock.now() - t0
        result = world.evaluate()
        if result.done:
            if not result.success or success_at is None:
                success_at = t
            if not result.success or t - success_at >= dwell_after_success_s:
                return result
        want_obs = t >= next_obs - 1e-9
        want_record = record is not None and t >= next_record - 1e-9
        if want_obs or want_record:
            state = state_of(robot)
            image = None
            if needs_image or want_record:
                image = renderer.render(arm.physics_state(), CAMERA, image_size, image_size)  # type: ignore[attr-defined]
            obs = Observation(image, state, world.instruction, t)
            if want_obs:
                chunk = np.asarray(policy(obs), dtype=float)
                pending.append((t + latency_s, t, state[:3].astype(float), chunk))
                next_obs += replan_s
            if want_record:
                assert record is not None
                record(obs, world_chunk(world, state[:3], float(state[3])))
                next_record += record_every_s
        while pending and pending[0][0] <= t + 1e-9:
            _, capture, tip, chunk = pending.pop(0)
            active = (capture, tip, chunk)
        if noise is not None:
            a = control_dt_s / noise.tau_s
            offset += -a * offset + noise.std_m * np.sqrt(2 * a) * rng.normal(size=3)
            if t > kick_until and rng.random() < noise.kick_probability_per_s * control_dt_s:
                direction = rng.normal(size=3)
                direction[2] *= 0.3
                kick = direction / np.linalg.norm(direction) * rng.uniform(*noise.kick_m)
                kick_until = t + rng.uniform(*noise.kick_s)
        if active is not None:
            capture, tip, chunk = active
            k = (t + control_dt_s - capture) / DT_S  # the target for the end of this tick
            idx = np.arange(len(chunk))
            action = np.array([np.interp(k, idx, chunk[:, i]) for i in range(chunk.shape[1])])
            target = tip + action[:3]
            if noise is not None:
                push = offset + (kick if t <= kick_until else 0.0)
                if target[2] < noise.low_z_m:
                    push = push * noise.low_scale
                target = target + push
            robot.command_ee(Pose(target, quat))
            gripper = float(np.clip(action[6], 0.0, 1.0))
            if last_gripper is None or abs(gripper - last_gripper) > 1e-3:
                robot.command_gripper(gripper)
                last_gripper = gripper
        robot.step(control_dt_s)


def expert_policy(robot: SimRobot) -> Policy:
    """The scripted expert as a policy (reads the world's true scene)."""
    return lambda obs: world_chunk(robot.world, obs.state[:3], float(obs.state[3]))

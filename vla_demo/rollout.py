"""Run episodes in the manual-clock simulation, much faster than real time.

It executes action chunks the way the agent does (action k at capture time + k*dt, relative to
the tip at capture, linearly interpolated at the control rate, a new chunk replacing the old
when it arrives after a simulated latency), so data generation and offline evaluation see the
same closed loop as the served demo, minus the network. The served loop (``python -m vla_demo``,
``robot-agent eval``) is what the success targets are measured on; this is for iterating fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_agent.drivers.sim import SimRobot
from robot_agent.sim.clock import ManualClock
from robot_agent.sim.render import render
from robot_agent.sim.world import EpisodeResult
from safety.types import Pose
from vla_demo.expert import expert_chunk
from vla_demo.task import DT_S, IMAGE_SIZE

__all__ = ["Noise", "Observation", "run_episode"]

#: (image [H, W, 3] uint8 or None, state [3] float32, instruction) -> chunk [H, 7] (ee_delta)
Policy = Callable[["Observation"], np.ndarray]


@dataclass(frozen=True)
class Observation:
    image: np.ndarray | None
    state: np.ndarray
    instruction: str
    time_s: float


@dataclass(frozen=True)
class Noise:
    """Perturbations added to the executed end-effector targets (not to the labels): a slowly
    wandering offset (Ornstein-Uhlenbeck, ``std_m``, ``tau_s``) and, now and then, a push of
    ``kick_m`` held for ``kick_s``, so the recorded states include the way back."""

    std_m: float = 0.015
    tau_s: float = 0.4
    kick_probability_per_s: float = 0.25
    kick_m: tuple[float, float] = (0.03, 0.08)
    kick_s: tuple[float, float] = (0.2, 0.6)


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
    dwell_after_success_s: float = 0.0,
    start_offset_m: float = 0.0,
) -> EpisodeResult:
    """One episode from ``world.reset(seed)`` until the world judges it (plus an optional dwell
    after success, for data). ``record(observation, expert_chunk)`` gets labelled samples."""
    if not isinstance(robot.clock, ManualClock):
        raise RuntimeError("run_episode needs a manual-clock SimRobot (realtime = false)")
    rng = np.random.default_rng(seed + 1_000_003)
    world = robot.world
    world.reset(seed)
    quat = robot.true_ee().quaternion
    if start_offset_m > 0:  # start from somewhere else than home: more varied states for data
        start = robot.true_ee().position + rng.uniform(-1, 1, 3) * [
            start_offset_m,
            start_offset_m,
            start_offset_m / 2,
        ]
        start[2] = max(start[2], 0.15)
        _move_to(robot, start, quat, control_dt_s)
        world.set_scene(world.cubes, world.target, world.instruction)  # restart the episode clock here
    t0 = robot.clock.now()
    offset = np.zeros(3)
    kick = np.zeros(3)
    kick_until = -1.0
    next_obs = 0.0
    next_record = 0.0
    pending: list[tuple[float, float, np.ndarray, np.ndarray]] = []  # (arrival, capture, tip, chunk)
    active: tuple[float, np.ndarray, np.ndarray] | None = None
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
            state = np.asarray(robot.read_state().ee.position, dtype=np.float32)
            image = None
            if needs_image or want_record:
                ee, gripper, _ = robot.snapshot()
                image = render(world, ee, gripper, image_size, image_size)
            obs = Observation(image, state, world.instruction, t)
            if want_obs:
                pending.append((t + latency_s, t, state.astype(float), np.asarray(policy(obs), dtype=float)))
                next_obs += replan_s
            if want_record:
                assert record is not None
                record(obs, expert_chunk(state, world.target_cube.top))
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
            target = tip + np.array([np.interp(k, idx, chunk[:, i]) for i in range(3)])
            if noise is not None:
                target = target + offset + (kick if t <= kick_until else 0.0)
                target[2] = max(target[2], 0.06)  # noise never pushes the tip into the cubes
            robot.command_ee(Pose(target, quat))
        robot.step(control_dt_s)


def _move_to(robot: SimRobot, goal: np.ndarray, quat: np.ndarray, dt: float) -> None:
    start = robot.true_ee().position
    n = max(1, int(np.linalg.norm(goal - start) / 0.005))
    for s in np.linspace(0, 1, n + 1)[1:]:
        robot.command_ee(Pose(start + (goal - start) * s, quat))
        robot.step(dt)
    for _ in range(int(0.5 / dt)):
        robot.step(dt)


def expert_policy(robot: SimRobot) -> Policy:
    """The scripted expert as a policy (reads the world's true cube positions)."""
    return lambda obs: expert_chunk(obs.state, robot.world.target_cube.top)

"""The scripted experts, reading the true scene.

:func:`pick_place_chunk` (the MuJoCo pick-and-place task, static and conveyor): approach over the
named cube, descend, close, lift, carry over the pad, lower, open, retreat. Its chunk is a pure
function of what it is given, the tip position and the measured gripper opening (the policy's
state) plus the true cube centre, cube yaw, cube velocity and pad position, and it holds no
memory: the phase is decided from the state each time, then the plan is simulated forward
(tip, gripper opening, the cube riding on the belt or in the hand) for the chunk's horizon, so
a phase switch inside the horizon shows in the chunk the same way it will happen. Phases are
chosen from what the policy can see too: the gripper opening (open, closing, closed on a cube,
closed on nothing) is in the state, where the cube is relative to the fingers is in the image.

- approach (gripper 1): a smooth velocity field towards the cube (plus the belt's velocity as
  feed-forward, so a moving cube is met, not chased), at hover height while far, down to the
  grasp height as it comes within a few centimetres;
- close (gripper 0): hold on the cube (following the belt) until the opening reaches the cube's
  width across the fingers (``0.04 (|cos yaw| + |sin yaw|)`` m: yaw-agnostic, no wrist turn);
- carry (gripper 0): rise to the carry height first, then over the pad, then down to the place
  height; at it, release (gripper 1), wait for the fingers to open, retreat up.

:func:`expert_chunk` is the old touch-the-cube field (kept for the kinematic sim's tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vla_demo.task import ACTION_DIM, CHUNK_LENGTH, DT_S

__all__ = [
    "GOAL_ABOVE_M",
    "HOVER_ABOVE_M",
    "Scene",
    "expert_chunk",
    "pick_place_chunk",
    "plan_positions",
    "scene_of",
    "world_chunk",
]

HOVER_ABOVE_M = 0.08  # travel height above the cube top: clear of the other cubes
GOAL_ABOVE_M = 0.01  # final tip height above the top (success needs within 3 cm)
ALIGN_INNER_M = 0.01  # horizontally this close: go all the way down
ALIGN_OUTER_M = 0.04  # farther than this: stay at hover height
TRAVEL_SPEED = 0.30  # m/s, horizontal (touch task)
DESCENT_SPEED = 0.15  # m/s, vertical (touch task)
GAIN = 4.0  # 1/s: the last centimetres are approached exponentially (no overshoot)
_SUBSTEP_S = 0.02
_TOUCH_SUBSTEP_S = 0.01  # the touch expert's integration step

# Pick and place (metres, base frame; the tool centre point between the fingertips).
CUBE_HALF_M = 0.02
FULL_OPENING_M = 0.08  # gripper opening 1.0
GRASP_ABOVE_CENTRE_M = 0.003  # tip height at the grasp, above the cube centre
CARRY_Z_M = 0.16  # tip height while carrying: the held cube clears the others
LIFT_CLEAR_Z_M = 0.11  # below this the carry does not move sideways yet
PLACE_ABOVE_PAD_M = CUBE_HALF_M + 0.02  # tip height when releasing: the cube drops ~1 cm
RETREAT_Z_M = 0.20
ALIGN_M = 0.006  # horizontal error that counts as "over it"
ARRIVE_M = 0.005  # vertical error that counts as "there"
UNDERSHOOT_M = 0.008  # vertical goals aim this far past the switch height, so they are reached
OPEN_M = 0.9  # opening fraction that counts as open
GRIPPER_TAU_S = 0.12  # the Franka Hand in the sim closes and opens with about this time constant
CARRY_SPEED = 0.40  # m/s
# The plan's speeds and gain are higher than the motion wanted: the agent re-anchors every chunk
# at the measured tool, which lags the impedance-tracked target, so about half is achieved.
PP_TRAVEL_SPEED = 0.45  # m/s, horizontal
PP_DESCENT_SPEED = 0.30  # m/s, vertical
PP_GAIN = 6.0  # 1/s
PAD_ALIGN_M = 0.02  # the held cube this close to the pad centre (12 cm square): let go
BETWEEN_FINGERS_M = (0.015, 0.015)  # (horizontal, vertical) cube centre to tip: it is in the hand
IN_HAND_M = 0.03  # a closed hand this close to the cube centre is holding it
CLOSED_EMPTY = 0.2  # below this opening the hand closed on nothing


class _Cube(Protocol):
    @property
    def position(self) -> tuple[float, float, float]: ...
    @property
    def yaw(self) -> float: ...


@dataclass(frozen=True)
class Scene:
    """What the pick-and-place expert knows of the scene (metres, base frame): the named cube's
    centre ``[3]``, its yaw (rad), its velocity ``[3]`` (m/s; the belt's while it lies on it),
    the pad's top centre ``[3]``."""

    cube: np.ndarray
    yaw: float
    cube_velocity: np.ndarray
    pad: np.ndarray


def cube_width_fraction(yaw: float) -> float:
    """The opening (fraction of 8 cm) at which the fingers, closing along the base y axis, meet a
    4 cm cube of this yaw: its width across them, ``0.04 (|cos yaw| + |sin yaw|)``."""
    return 2 * CUBE_HALF_M * (abs(math.cos(yaw)) + abs(math.sin(yaw))) / FULL_OPENING_M


def _lift_threshold(yaw: float) -> float:
    """Closing this far means the fingers hold the cube: time to lift."""
    return min(cube_width_fraction(yaw) + 0.04, 0.8)


def scene_of(world: object) -> Scene:
    """The :class:`Scene` of a ``PickPlaceWorld`` now (its named cube's live pose, the belt's
    velocity while the cube lies on it, the live pad)."""
    from robot_agent.sim.mujoco_scene import BELT_HALF_WIDTH_M, BELT_THICKNESS_M, BELT_X_M

    cube: _Cube = world.target_cube  # type: ignore[attr-defined]
    centre = np.asarray(cube.position, dtype=float)
    velocity = np.zeros(3)
    speed = float(getattr(world, "conveyor_speed", 0.0))
    on_belt = (
        speed > 0
        and abs(centre[0] - BELT_X_M) <= BELT_HALF_WIDTH_M
        and abs(centre[2] - (BELT_THICKNESS_M + CUBE_HALF_M)) < 0.006
    )
    if on_belt:
        velocity[1] = speed
    pad = np.asarray(world.pad_position, dtype=float)  # type: ignore[attr-defined]
    return Scene(centre, float(cube.yaw), velocity, pad)


def _toward(pos: float, goal: float, max_speed: float, dt: float) -> float:
    return pos + min(max_speed, max(-max_speed, PP_GAIN * (goal - pos))) * dt


def _initial_phase(tip: np.ndarray, opening: float, scene: Scene) -> str:
    rel = scene.cube - tip
    horizontal = float(np.hypot(rel[0], rel[1]))
    lift_at = _lift_threshold(scene.yaw)
    if CLOSED_EMPTY < opening <= lift_at and float(np.linalg.norm(rel)) < IN_HAND_M:
        return "carry"
    between = horizontal < BETWEEN_FINGERS_M[0] and abs(rel[2] + GRASP_ABOVE_CENTRE_M) < BETWEEN_FINGERS_M[1]
    if lift_at < opening < OPEN_M and between:
        return "close"
    pad_rel = scene.cube[:2] - scene.pad[:2]
    on_pad = float(np.abs(pad_rel).max()) < 0.055 and scene.cube[2] < scene.pad[2] + CUBE_HALF_M + 0.015
    if on_pad:
        low = tip[2] < scene.pad[2] + PLACE_ABOVE_PAD_M + 0.03
        return "release" if low and opening < OPEN_M else "retreat"
    return "approach"


def pick_place_plan(
    tip: np.ndarray, opening: float, scene: Scene, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The plan from now: tip positions ``[len(times), 3]`` and gripper commands ``[len(times)]``
    (0 closed .. 1 open) at ``times`` (seconds from now, ascending, >= 0)."""
    times = np.asarray(times, dtype=float)
    p = np.asarray(tip, dtype=float).copy()
    g = float(opening)
    cube = scene.cube.astype(float).copy()
    phase = _initial_phase(p, g, scene)
    lift_at = _lift_threshold(scene.yaw)
    width = cube_width_fraction(scene.yaw)
    hand_offset = cube - p
    decay = 1.0 - math.exp(-_SUBSTEP_S / GRIPPER_TAU_S)
    positions = np.empty((len(times), 3))
    commands = np.empty(len(times))
    t = 0.0
    i = 0
    end = float(times.max(initial=0.0))
    while True:
        # Phase switches at this instant, then the command in force.
        if phase == "approach":
            rel = cube - p
            if (
                g >= OPEN_M
                and math.hypot(rel[0], rel[1]) < ALIGN_M
                and p[2] - (cube[2] + GRASP_ABOVE_CENTRE_M) < ARRIVE_M
            ):
                phase = "close"
        if phase == "close" and g <= lift_at:
            phase = "carry"
            hand_offset = cube - p
        if phase == "carry":
            d = float(np.hypot(*(p[:2] + hand_offset[:2] - scene.pad[:2])))
            if d < PAD_ALIGN_M and p[2] - (scene.pad[2] + PLACE_ABOVE_PAD_M) < ARRIVE_M:
                phase = "release"
        if phase == "release" and g >= OPEN_M:
            phase = "retreat"
        command = 0.0 if phase in ("close", "carry") else 1.0
        while i < len(times) and times[i] <= t + 1e-9:
            positions[i] = p
            commands[i] = command
            i += 1
        if i >= len(times) or t > end:
            break
        dt = _SUBSTEP_S
        # Motion.
        if phase == "approach":
            rel = cube - p
            d = math.hypot(rel[0], rel[1])
            ff = scene.cube_velocity[:2]
            if d > 1e-9:
                speed = min(PP_TRAVEL_SPEED, PP_GAIN * d)
                p[0] += (rel[0] / d * speed + ff[0]) * dt
                p[1] += (rel[1] / d * speed + ff[1]) * dt
            s = min(1.0, max(0.0, (d - ALIGN_INNER_M) / (ALIGN_OUTER_M - ALIGN_INNER_M)))
            s = s * s * (3 - 2 * s)
            if g < OPEN_M:
                s = 1.0  # open first (at hover height), then go down
            grasp = cube[2] + GRASP_ABOVE_CENTRE_M
            hover = cube[2] + CUBE_HALF_M + HOVER_ABOVE_M
            z_goal = (grasp - UNDERSHOOT_M) + s * (hover - grasp + UNDERSHOOT_M)
            p[2] = _toward(p[2], z_goal, PP_DESCENT_SPEED, dt)
        elif phase == "close":
            rel = cube - p
            p[0] += (PP_GAIN * rel[0] + scene.cube_velocity[0]) * dt
            p[1] += (PP_GAIN * rel[1] + scene.cube_velocity[1]) * dt
        elif phase == "carry":
            goal_xy = scene.pad[:2] - hand_offset[:2]
            rel_xy = goal_xy - p[:2]
            d = float(np.hypot(*rel_xy))
            clear = min(1.0, max(0.0, (p[2] - LIFT_CLEAR_Z_M) / 0.03))
            if d > 1e-9:
                speed = min(CARRY_SPEED, PP_GAIN * d) * (clear if d > 0.03 else 1.0)
                p[:2] += rel_xy / d * speed * dt
            s = min(1.0, max(0.0, (d - ALIGN_INNER_M) / (ALIGN_OUTER_M - ALIGN_INNER_M)))
            s = s * s * (3 - 2 * s)
            place = scene.pad[2] + PLACE_ABOVE_PAD_M
            z_goal = (place - UNDERSHOOT_M) + s * (CARRY_Z_M - place + UNDERSHOOT_M)
            p[2] = _toward(p[2], z_goal, PP_DESCENT_SPEED, dt)
        elif phase == "retreat":
            p[2] = _toward(p[2], RETREAT_Z_M, PP_DESCENT_SPEED, dt)
        # Gripper and cube.
        if command < 0.5:
            floor = width if phase in ("close", "carry") else 0.0
            g = max(floor, g + (0.0 - g) * decay)
        else:
            g = g + (1.0 - g) * decay
        if phase == "carry":
            cube = p + hand_offset
        elif phase in ("approach", "close"):
            cube = cube + scene.cube_velocity * dt
        t += dt
    return positions, commands


def pick_place_chunk(
    tip: np.ndarray,
    opening: float,
    scene: Scene,
    chunk_length: int = CHUNK_LENGTH,
    dt_s: float = DT_S,
) -> np.ndarray:
    """The pick-and-place expert's chunk ``[chunk_length, 7]`` in ``ee_delta``: displacement from
    ``tip`` at 0, dt, 2 dt, ... (metres), no rotation, the gripper as an absolute opening in
    ``[0, 1]``. ``tip`` ``[3]``: the tool centre point; ``opening``: the measured gripper opening."""
    positions, commands = pick_place_plan(tip, opening, scene, np.arange(chunk_length) * dt_s)
    out = np.zeros((chunk_length, ACTION_DIM), dtype=np.float32)
    out[:, :3] = positions - np.asarray(tip, dtype=float)
    out[:, -1] = commands
    return out


def world_chunk(world: object, tip: np.ndarray, opening: float) -> np.ndarray:
    """The pick-and-place expert's chunk for a ``PickPlaceWorld`` as it is now."""
    return pick_place_chunk(np.asarray(tip, dtype=float), float(opening), scene_of(world))


# -- the touch-the-cube expert (kinematic sim) -------------------------------------------------


def _integrate(tip: np.ndarray, top: np.ndarray, duration: float) -> np.ndarray:
    """Tip positions every ``_TOUCH_SUBSTEP_S`` from 0 to ``duration`` (inclusive), ``[n, 3]``."""
    x, y, z = (float(v) for v in tip)
    tx, ty, tz = (float(v) for v in top)
    steps = math.ceil(duration / _TOUCH_SUBSTEP_S - 1e-9)
    out = [(x, y, z)]
    for _ in range(steps):
        dx, dy = tx - x, ty - y
        d = math.hypot(dx, dy)
        if d > 1e-9:
            speed = min(TRAVEL_SPEED, GAIN * d)
            x += dx / d * speed * _TOUCH_SUBSTEP_S
            y += dy / d * speed * _TOUCH_SUBSTEP_S
        s = min(1.0, max(0.0, (d - ALIGN_INNER_M) / (ALIGN_OUTER_M - ALIGN_INNER_M)))
        s = s * s * (3 - 2 * s)
        z_goal = tz + GOAL_ABOVE_M + s * (HOVER_ABOVE_M - GOAL_ABOVE_M)
        z += min(DESCENT_SPEED, max(-DESCENT_SPEED, GAIN * (z_goal - z))) * _TOUCH_SUBSTEP_S
        out.append((x, y, z))
    return np.array(out)


def plan_positions(tip: np.ndarray, cube_top: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Touch task: where the plan puts the tip at each of ``times`` (s from now): ``[len(times), 3]``."""
    times = np.asarray(times, dtype=float)
    path = _integrate(
        np.asarray(tip, dtype=float), np.asarray(cube_top, dtype=float), float(times.max(initial=0.0))
    )
    grid = np.arange(len(path)) * _TOUCH_SUBSTEP_S
    return np.column_stack([np.interp(times, grid, path[:, i]) for i in range(3)])


def expert_chunk(
    tip: np.ndarray, cube_top: np.ndarray, chunk_length: int = CHUNK_LENGTH, dt_s: float = DT_S
) -> np.ndarray:
    """Touch task: the chunk ``[chunk_length, 7]`` in ``ee_delta`` that brings the tip 1 cm over
    ``cube_top``; no rotation; gripper open."""
    positions = plan_positions(tip, cube_top, np.arange(chunk_length) * dt_s)
    out = np.zeros((chunk_length, ACTION_DIM), dtype=np.float32)
    out[:, :3] = positions - np.asarray(tip, dtype=float)
    out[:, -1] = 1.0
    return out

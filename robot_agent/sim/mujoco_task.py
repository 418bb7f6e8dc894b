"""The pick-and-place task in the MuJoCo scene: scenes, instructions and the judge.

``PickPlaceWorld`` draws a scene per episode (three cubes at random non-overlapping places with
random yaw, the pad, for the dynamic task the named cube on the running conveyor), words the
instruction, and judges the episode from the physics state the arm reports after every physics
step (:meth:`PickPlaceWorld.observe`), so nothing between two looks is missed.

Rules (issue 14), in the robot base frame (metres):

- **success**: the named cube rests on the pad (its centre over the pad's footprint, its bottom
  within 1 cm of the pad's top, speed under 2 cm/s; the pad does not move) and the gripper has let go
  (no finger touches it), within ``time_limit_s`` of the reset;
- **failure**: another cube moved more than ``DISTURB_LIMIT_M`` (3 cm) from where it started, a
  cube fell off the table, the tool (the TCP) left the workspace box ``WORKSPACE``, or the time
  ran out. The first rule met ends the episode; ``EpisodeResult.reason`` says which.

The dynamic task (``conveyor=True``): the named cube starts on a belt running along +y at
``conveyor_speed`` m/s, so where it is when the gripper arrives is not where an old observation
saw it; the pad and the other cubes are off the belt.

Thread-safe: the arm's physics thread reports, the evaluator and the camera read.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from robot_agent.sim.clock import Clock, WallClock
from robot_agent.sim.mujoco_scene import (
    BELT_HALF_WIDTH_M,
    BELT_THICKNESS_M,
    BELT_X_M,
    CUBE_COLOURS,
    CUBE_HALF_M,
    PAD_HALF_M,
    PAD_THICKNESS_M,
)
from robot_agent.sim.world import Cube, EpisodeJudge, EpisodeResult

__all__ = [
    "DISTURB_LIMIT_M",
    "PICK_PLACE_TEMPLATES",
    "WORKSPACE",
    "PickPlaceScene",
    "PickPlaceWorld",
]

#: Phrasings of the instruction; ``{colour}`` is the named cube. Learned policies see all of them.
PICK_PLACE_TEMPLATES: tuple[str, ...] = (
    "pick up the {colour} cube and put it on the pad",
    "put the {colour} cube on the pad",
    "place the {colour} block on the yellow pad",
    "move the {colour} cube onto the pad",
    "pick the {colour} block and place it on the pad",
    "put the {colour} block on the target",
)
DISTURB_LIMIT_M = 0.03
#: The tool must stay in this box (x, y, z ranges, metres): the table's reach in front of the arm.
WORKSPACE = ((0.15, 0.85), (-0.55, 0.55), (-0.005, 0.80))
REST_SPEED_M_S = 0.02
REST_HEIGHT_TOL_M = 0.01
#: Where cubes and the pad are placed (static task): x, y ranges of their centres, metres.
CUBE_X = (0.35, 0.62)
CUBE_Y = (-0.22, 0.22)
PAD_X = (0.40, 0.58)
PAD_Y_ABS = (0.28, 0.34)  # the pad lies to one side, beyond the cubes
MIN_SEPARATION_M = 0.09


@dataclass(frozen=True)
class PickPlaceScene:
    """One episode's layout: cubes (centre and yaw), pad centre (x, y), named cube, instruction,
    and the conveyor speed (m/s along +y; 0 for the static task)."""

    cubes: tuple[Cube, ...]
    pad: tuple[float, float]
    target: str
    instruction: str
    conveyor_speed: float = 0.0


@dataclass
class _Live:
    """What the physics reports each step (guarded by the world's lock)."""

    time_s: float = 0.0
    cubes: dict[str, np.ndarray] = field(default_factory=dict)  # centre (3)
    cube_yaw: dict[str, float] = field(default_factory=dict)
    cube_speed: dict[str, float] = field(default_factory=dict)
    gripping: dict[str, bool] = field(default_factory=dict)
    tcp: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pad: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pad_speed: np.ndarray = field(default_factory=lambda: np.zeros(3))


class PickPlaceWorld(EpisodeJudge):
    """The scenes and the judge of "put the named cube on the pad".

    ``conveyor``: the dynamic variant (the arm's scene must have the belt). ``time_limit_s``: the
    episode's limit. Raises ``ValueError`` on a non-positive time limit or conveyor speed.

    Example::

        world = PickPlaceWorld(seed=0)
        instruction = world.reset()      # "put the red cube on the pad"; the arm binds and applies it
        world.evaluate().status          # "running" | "success" | "failure"
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        conveyor: bool = False,
        conveyor_speed: float = 0.04,
        time_limit_s: float = 25.0,
    ) -> None:
        if not (math.isfinite(time_limit_s) and time_limit_s > 0):
            raise ValueError(f"PickPlaceWorld: time_limit_s must be > 0, got {time_limit_s!r}")
        if conveyor and not (math.isfinite(conveyor_speed) and 0 < conveyor_speed <= 0.2):
            raise ValueError(f"PickPlaceWorld: conveyor_speed must be in (0, 0.2] m/s, got {conveyor_speed!r}")
        self.clock: Clock = clock if clock is not None else WallClock()
        self.conveyor = bool(conveyor)
        self.conveyor_speed = float(conveyor_speed) if conveyor else 0.0
        self.time_limit_s = float(time_limit_s)
        self.cube_size = 2 * CUBE_HALF_M
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._apply: Callable[[PickPlaceScene], None] | None = None
        self._sync: Callable[[], None] | None = None
        self.scene = self._draw(self._rng)
        self._live = _Live()
        self._start: dict[str, np.ndarray] = {c.colour: np.array(c.position) for c in self.scene.cubes}
        self._t0 = self.clock.now()
        self._result: EpisodeResult | None = None

    # -- wiring -------------------------------------------------------------------------------
    def bind(self, *, apply: Callable[[PickPlaceScene], None] | None, sync: Callable[[], None] | None) -> None:
        """Called by the MuJoCo arm: ``apply`` puts a scene into the physics (arm home, gripper
        open, cubes and pad placed), ``sync`` brings the physics up to the clock's now."""
        self._apply = apply
        self._sync = sync

    # -- episode ------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> str:
        """New scene and instruction, arm back home; returns the instruction."""
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        scene = self._draw(rng)
        self._start_episode(scene)
        return scene.instruction

    def set_scene(self, cubes: tuple[Cube, ...] | list[Cube], target: str, instruction: str | None = None,
                  pad: tuple[float, float] | None = None) -> None:  # fmt: skip
        """Place the cubes (and the pad) by hand, arm home (tests, replays). Raises ``ValueError``
        when ``target`` is not one of the cubes."""
        names = [c.colour for c in cubes]
        if target not in names:
            raise ValueError(f"PickPlaceWorld.set_scene: target {target!r} is not one of the cubes {names!r}")
        scene = PickPlaceScene(
            cubes=tuple(cubes),
            pad=pad if pad is not None else self.scene.pad,
            target=target,
            instruction=instruction or PICK_PLACE_TEMPLATES[0].format(colour=target),
            conveyor_speed=self.conveyor_speed,
        )
        self._start_episode(scene)

    def _start_episode(self, scene: PickPlaceScene) -> None:
        with self._lock:
            self.scene = scene
            self._result = None
            self._start = {c.colour: np.array(c.position) for c in scene.cubes}
            self._live = _Live()
        if self._apply is not None:
            self._apply(scene)
        with self._lock:  # the clock starts once the scene is in place
            self._t0 = self.clock.now()
            self._result = None

    # -- what the policy and the expert may ask --------------------------------------------
    @property
    def instruction(self) -> str:
        return self.scene.instruction

    @property
    def target(self) -> str:
        return self.scene.target

    @property
    def cubes(self) -> tuple[Cube, ...]:
        """The cubes where they are now (centre, yaw), in the scene's order."""
        with self._lock:
            live = self._live
            return tuple(self._live_cube(c, live) for c in self.scene.cubes)

    def _live_cube(self, cube: Cube, live: _Live) -> Cube:
        centre = live.cubes.get(cube.colour)
        if centre is None:
            return cube
        position = (float(centre[0]), float(centre[1]), float(centre[2]))
        return Cube(cube.colour, position, self.cube_size, live.cube_yaw.get(cube.colour, cube.yaw))

    @property
    def target_cube(self) -> Cube:
        return next(c for c in self.cubes if c.colour == self.target)

    def cube(self, colour: str) -> Cube:
        for c in self.cubes:
            if c.colour == colour:
                return c
        raise KeyError(f"no {colour!r} cube in the scene (have {[c.colour for c in self.cubes]!r})")

    @property
    def pad_position(self) -> np.ndarray:
        """The pad's top centre now (3, metres)."""
        with self._lock:
            if self._live.cubes:
                return self._live.pad.copy()
            return np.array([*self.scene.pad, PAD_THICKNESS_M])

    @property
    def tip(self) -> np.ndarray | None:
        with self._lock:
            return self._live.tcp.copy() if self._live.cubes else None

    # -- judging ------------------------------------------------------------------------------
    def observe(
        self,
        time_s: float,
        *,
        tcp: np.ndarray,
        cubes: dict[str, np.ndarray],
        cube_yaw: dict[str, float],
        cube_speed: dict[str, float],
        gripping: dict[str, bool],
        pad: np.ndarray,
    ) -> None:
        """The physics at ``time_s``: tool centre point (3), cube centres (3 each), their yaw
        (rad) and speed (m/s), which cubes a finger touches, the pad's top centre (3). Judges."""
        with self._lock:
            self._live = _Live(time_s, cubes, cube_yaw, cube_speed, gripping, np.asarray(tcp), np.asarray(pad))
            if self._result is not None:
                return
            elapsed = time_s - self._t0
            if elapsed < 0.0:
                return
            target = self.scene.target
            for colour, centre in cubes.items():
                if centre[2] < -0.05:
                    self._finish("failure", f"the {colour} cube fell off the table", elapsed, colour)
                    return
                if colour != target:
                    moved = float(np.linalg.norm(centre[:2] - self._start[colour][:2]))
                    if moved > DISTURB_LIMIT_M:
                        self._finish("failure", f"moved the {colour} cube {moved * 100:.0f} cm", elapsed, colour)
                        return
            for axis, (lo, hi) in zip("xyz", WORKSPACE, strict=True):
                value = float(tcp["xyz".index(axis)])
                if not lo <= value <= hi:
                    self._finish("failure", f"the tool left the workspace ({axis} = {value:.3f} m)", elapsed, None)
                    return
            centre = cubes[target]
            over_pad = bool(np.all(np.abs(centre[:2] - pad[:2]) <= PAD_HALF_M))
            resting = abs(centre[2] - CUBE_HALF_M - pad[2]) <= REST_HEIGHT_TOL_M
            still = cube_speed[target] <= REST_SPEED_M_S
            if over_pad and resting and still and not gripping.get(target, False):
                self._finish("success", f"the {target} cube is on the pad", elapsed, target)
                return
            if elapsed > self.time_limit_s:
                self._finish("failure", f"timeout after {self.time_limit_s:g} s", elapsed, None)

    # -- internals ----------------------------------------------------------------------------
    def _words(self) -> tuple[str, str]:
        return self.scene.instruction, self.scene.target


    def _draw(self, rng: np.random.Generator) -> PickPlaceScene:
        colours = list(CUBE_COLOURS)
        target = str(rng.choice(colours))
        side = 1.0 if rng.random() < 0.5 else -1.0
        pad = (float(rng.uniform(*PAD_X)), float(side * rng.uniform(*PAD_Y_ABS)))
        if self.conveyor:
            pad = (float(rng.uniform(0.55, 0.62)), float(rng.uniform(0.22, 0.30)))
        for _ in range(1000):
            xy = np.column_stack([rng.uniform(*CUBE_X, len(colours)), rng.uniform(*CUBE_Y, len(colours))])
            if self.conveyor:
                i = colours.index(target)
                xy[i] = (BELT_X_M, rng.uniform(-0.30, -0.20))
            d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
            far_pad = np.all(np.abs(xy - np.array(pad)).max(axis=1) >= PAD_HALF_M + CUBE_HALF_M * 1.5 + 0.02)
            off_belt = True
            if self.conveyor:
                others = [j for j, c in enumerate(colours) if c != target]
                off_belt = bool(np.all(np.abs(xy[others, 0] - BELT_X_M) >= BELT_HALF_WIDTH_M + 0.05))
            if np.all(d[np.triu_indices(len(colours), 1)] >= MIN_SEPARATION_M) and far_pad and off_belt:
                break
        else:  # pragma: no cover - the ranges above always leave room
            raise ValueError("PickPlaceWorld: cannot place the cubes apart")
        base = BELT_THICKNESS_M if self.conveyor else 0.0
        yaws = rng.uniform(-math.pi / 4, math.pi / 4, len(colours))
        cubes = tuple(
            Cube(c, (float(x), float(y), CUBE_HALF_M + (base if self.conveyor and c == target else 0.0)),
                 2 * CUBE_HALF_M, float(yaw))
            for c, (x, y), yaw in zip(colours, xy, yaws, strict=True)
        )  # fmt: skip
        template = PICK_PLACE_TEMPLATES[int(rng.integers(len(PICK_PLACE_TEMPLATES)))]
        return PickPlaceScene(cubes, pad, target, template.format(colour=target), self.conveyor_speed)

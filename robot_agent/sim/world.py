"""The simulated task: a table, three coloured cubes and an instruction naming one of them.

The world knows where everything is and judges the episode; it does not move anything itself.
The simulated arm reports its gripper tip to ``observe_tip`` as its model advances, so the
judgement sees the whole path, not only the moments someone looked. Coordinates are the robot
base frame (metres): the table top is the plane z = 0, x points away from the robot.

Rules (issue 5): success when the gripper tip comes within 2 cm horizontally and 3 cm vertically
of the named cube's top centre within 15 s of the reset; touching another cube first is a failure.
"Touching" is the tip entering a cube's (yawed) box grown by a small margin; the tip is a point (the
fingers are not modelled), which keeps the rule simple to state and to check.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from robot_agent.sim.clock import Clock, WallClock

__all__ = [
    "COLOURS",
    "CUBE_SIZE_M",
    "INSTRUCTION_TEMPLATES",
    "Cube",
    "EpisodeJudge",
    "EpisodeResult",
    "SimWorld",
]

#: Cube colours by name, RGB 0..255.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
}
CUBE_SIZE_M = 0.045
#: Phrasings of the instruction; ``{colour}`` is the target's name. Learned policies see all of
#: them, so the words around the colour vary and only the colour tells the cubes apart.
INSTRUCTION_TEMPLATES: tuple[str, ...] = (
    "touch the {colour} cube",
    "touch the {colour} block",
    "go to the {colour} cube",
    "reach the {colour} cube",
    "move to the {colour} block",
    "put the gripper on the {colour} cube",
)

SUCCESS_HORIZONTAL_M = 0.02
SUCCESS_VERTICAL_M = 0.03
TOUCH_MARGIN_M = 0.005
TABLE_MARGIN_M = 0.01  # the tip this far below the table top counts as hitting it

Status = Literal["running", "success", "failure"]


@dataclass(frozen=True)
class Cube:
    """A cube resting on the table: ``position`` is its centre (x, y, z) in metres."""

    colour: str
    position: tuple[float, float, float]
    size: float = CUBE_SIZE_M
    yaw: float = 0.0  # rotation about z, radians

    @property
    def top(self) -> np.ndarray:
        """Centre of the top face."""
        x, y, z = self.position
        return np.array([x, y, z + self.size / 2])

    def contains(self, point: np.ndarray, margin: float = 0.0) -> bool:
        """Whether ``point`` lies in this cube's box grown by ``margin`` on every side."""
        d = np.asarray(point, dtype=float) - np.asarray(self.position)
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1], d[2]])
        return bool(np.all(np.abs(local) <= self.size / 2 + margin))


@dataclass(frozen=True)
class EpisodeResult:
    """How the current episode stands. ``reached`` names the cube the tip reached (success) or
    touched (failure), so a test can check the cube reached is the one named."""

    status: Status
    reason: str
    instruction: str
    target: str
    elapsed_s: float
    reached: str | None = None
    time_to_success_s: float | None = None

    @property
    def done(self) -> bool:
        return self.status != "running"

    @property
    def success(self) -> bool:
        return self.status == "success"


class EpisodeJudge:
    """Mixin of both worlds (this one and ``mujoco_task.PickPlaceWorld``): the result so far and
    how an episode ends. Needs ``clock``, ``time_limit_s``, ``_words()`` (the instruction and the
    named cube) and the guarded ``_lock``, ``_sync``, ``_t0``, ``_result``."""

    clock: Clock
    time_limit_s: float
    _lock: threading.RLock
    _sync: Callable[[], None] | None
    _t0: float
    _result: EpisodeResult | None

    def evaluate(self) -> EpisodeResult:
        """The episode's result so far: running, or a final success / failure with its reason."""
        if self._sync is not None:
            self._sync()
        with self._lock:
            if self._result is not None:
                return self._result
            elapsed = self.clock.now() - self._t0
            if elapsed > self.time_limit_s:
                self._finish("failure", f"timeout after {self.time_limit_s:g} s", elapsed, None)
                assert self._result is not None
                return self._result
            return EpisodeResult("running", "", *self._words(), elapsed)

    def _words(self) -> tuple[str, str]:  # pragma: no cover - every world defines it
        raise NotImplementedError

    def _finish(self, status: Status, reason: str, elapsed: float, reached: str | None) -> None:
        self._result = EpisodeResult(status, reason, *self._words(), elapsed, reached,
                                     elapsed if status == "success" else None)  # fmt: skip


class SimWorld(EpisodeJudge):
    """The scene and its judge. Thread-safe: the control thread reports the tip while the
    camera thread draws and the evaluator asks for the result.

    Example::

        world = SimWorld(seed=0)
        instruction = world.reset()          # "touch the red cube"
        world.observe_tip(tip_xyz, time_s)   # done by SimArm as it moves
        world.evaluate().status              # "running" | "success" | "failure"
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int | None = None,
        x_range: tuple[float, float] = (0.35, 0.65),
        y_range: tuple[float, float] = (-0.25, 0.25),
        cube_size: float = CUBE_SIZE_M,
        min_separation: float = 0.10,
        time_limit_s: float = 15.0,
    ) -> None:
        if not x_range[0] < x_range[1] or not y_range[0] < y_range[1]:
            raise ValueError(f"SimWorld: empty workspace x_range={x_range!r} y_range={y_range!r}")
        if not 0.0 < cube_size < 0.2:
            raise ValueError(f"SimWorld: cube_size must be in (0, 0.2) m, got {cube_size!r}")
        self.clock: Clock = clock if clock is not None else WallClock()
        self.x_range = x_range
        self.y_range = y_range
        self.cube_size = float(cube_size)
        self.min_separation = float(min_separation)
        self.time_limit_s = float(time_limit_s)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.RLock()
        self._on_reset: Callable[[], None] | None = None
        self._sync: Callable[[], None] | None = None
        self.cubes: tuple[Cube, ...] = ()
        self.instruction = ""
        self.target = ""
        self.tip: np.ndarray | None = None
        self._t0 = self.clock.now()
        self._result: EpisodeResult | None = None
        self._new_scene(self._rng)

    # -- wiring -------------------------------------------------------------------------------
    def bind(self, *, on_reset: Callable[[], None] | None, sync: Callable[[], None] | None) -> None:
        """Called by the simulated arm: ``on_reset`` sends it home, ``sync`` brings its model up
        to the clock's now (so ``evaluate`` judges the present, not the last command)."""
        self._on_reset = on_reset
        self._sync = sync

    # -- episode ------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> str:
        """New scene and instruction, arm back home; returns the instruction."""
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        with self._lock:
            self._new_scene(rng)
        if self._on_reset is not None:
            self._on_reset()
        with self._lock:
            # The clock starts after the arm is home: the reset itself never counts against time.
            self._t0 = self.clock.now()
            self._result = None
        return self.instruction

    def set_scene(
        self, cubes: tuple[Cube, ...] | list[Cube], target: str, instruction: str | None = None
    ) -> None:
        """Place the cubes by hand (tests, replays); does not move the arm or restart the clock."""
        names = [c.colour for c in cubes]
        if target not in names:
            raise ValueError(f"SimWorld.set_scene: target {target!r} is not one of the cubes {names!r}")
        with self._lock:
            self.cubes = tuple(cubes)
            self.target = target
            self.instruction = instruction or INSTRUCTION_TEMPLATES[0].format(colour=target)
            self._result = None
            self._t0 = self.clock.now()

    @property
    def target_cube(self) -> Cube:
        return next(c for c in self.cubes if c.colour == self.target)

    def cube(self, colour: str) -> Cube:
        for c in self.cubes:
            if c.colour == colour:
                return c
        raise KeyError(f"no {colour!r} cube in the scene (have {[c.colour for c in self.cubes]!r})")

    def observe_tip(self, position: np.ndarray, time_s: float) -> None:
        """The arm's gripper tip is at ``position`` at ``time_s``; judge the episode on it."""
        p = np.asarray(position, dtype=float).copy()
        with self._lock:
            self.tip = p
            if self._result is not None:
                return
            elapsed = time_s - self._t0
            if elapsed < 0.0:  # a report from before the last reset
                return
            target = self.target_cube
            top = target.top
            if (
                math.hypot(p[0] - top[0], p[1] - top[1]) <= SUCCESS_HORIZONTAL_M
                and abs(p[2] - top[2]) <= SUCCESS_VERTICAL_M
            ):
                self._finish("success", f"reached the {target.colour} cube", elapsed, target.colour)
                return
            for cube in self.cubes:
                if cube.colour != target.colour and cube.contains(p, TOUCH_MARGIN_M):
                    self._finish("failure", f"touched the {cube.colour} cube first", elapsed, cube.colour)
                    return
            if p[2] < -TABLE_MARGIN_M:
                self._finish("failure", f"hit the table (tip z = {p[2]:.3f} m)", elapsed, None)
                return
            if elapsed > self.time_limit_s:
                self._finish("failure", f"timeout after {self.time_limit_s:g} s", elapsed, None)

    # -- internals ----------------------------------------------------------------------------
    def _words(self) -> tuple[str, str]:
        return self.instruction, self.target

    def _new_scene(self, rng: np.random.Generator) -> None:
        half = self.cube_size / 2
        for _ in range(1000):
            xy = np.column_stack(
                [
                    rng.uniform(self.x_range[0] + half, self.x_range[1] - half, len(COLOURS)),
                    rng.uniform(self.y_range[0] + half, self.y_range[1] - half, len(COLOURS)),
                ]
            )
            d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)
            if np.all(d[np.triu_indices(len(COLOURS), 1)] >= self.min_separation):
                break
        else:  # pragma: no cover - only with an absurd min_separation for the workspace
            raise ValueError(
                f"SimWorld: cannot place {len(COLOURS)} cubes {self.min_separation} m apart "
                f"in x {self.x_range}, y {self.y_range}"
            )
        yaws = rng.uniform(-math.pi / 4, math.pi / 4, len(COLOURS))
        self.cubes = tuple(
            Cube(name, (float(x), float(y), half), self.cube_size, float(yaw))
            for name, (x, y), yaw in zip(COLOURS, xy, yaws, strict=True)
        )
        self.target = str(rng.choice(list(COLOURS)))
        template = INSTRUCTION_TEMPLATES[int(rng.integers(len(INSTRUCTION_TEMPLATES)))]
        self.instruction = template.format(colour=self.target)
        self.tip = None

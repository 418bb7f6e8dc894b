"""The simulated camera as a ``Camera``: renders the simulated arm's scene.

It draws the scene of the simulated arm it looks at, so it is built with the ``SimRobot`` the
agent drives: ``SimCamera.from_config(camera_config, robot=robot)``. On the MuJoCo arm (the
default engine) it renders the MuJoCo scene offscreen through
:class:`robot_agent.sim.mujoco_render.SceneRenderer` (the whole arm, the cubes and the pad from the
front; the hand's view from the wrist); on the kinematic arm it draws with
``robot_agent.sim.render`` (table, cubes and a gripper). Options (``[cameras.NAME.options]``)::

    view = "front"   # "front": fixed third-person view; "wrist": on the gripper, looking down

Without a ``view`` option a camera named after a view renders that view (a camera ``wrist``, such as
the one created for a policy asking for ``wrist``, is on the gripper); any other name is ``front``.

Frames are rendered on demand, in ``read`` (never per physics step: a MuJoCo frame costs ~5-25 ms of
software OpenGL against ~0.1 ms per physics step), and stamped with the sim time of the state drawn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from typing_extensions import override

from robot_agent.cameras.base import Camera, Frame
from robot_agent.drivers.sim import SimArmLike, SimRobot
from robot_agent.errors import ConfigError
from robot_agent.sim.arm import SimArm
from robot_agent.sim.render import VIEWS, render

if TYPE_CHECKING:
    from robot_agent.config import CameraConfig
    from robot_agent.drivers.base import Robot

__all__ = ["SimCamera"]

logger = logging.getLogger(__name__)

_OPTIONS = {"view": "front"}


def default_view(name: str) -> str:
    """The view a sim camera named ``name`` renders without a ``view`` option: the view of that
    name (``"wrist"``), else ``"front"``."""
    return name if name in VIEWS else _OPTIONS["view"]


class SimCamera(Camera):
    """Renders the scene of ``arm`` (a MuJoCo arm or a kinematic ``SimArm``) as it is now: an RGB
    uint8 ``[height, width, 3]`` frame stamped with the sim time of the state drawn.

    ``read`` is paced at ``fps`` on the wall clock (a real camera blocks for its next frame);
    on a manual-clock arm it renders at once, since sim time only moves when stepped. Raises
    ``ValueError`` on an unknown view, a size under 8x8 (or, on MuJoCo, over the scene's offscreen
    buffer, 1280x960) or ``fps <= 0``.
    """

    def __init__(
        self, arm: SimArmLike, *, name: str, width: int, height: int, fps: float, view: str = "front"
    ) -> None:
        if view not in VIEWS:
            raise ValueError(f"cameras.{name}.options.view is {view!r}: must be one of {VIEWS!r}")
        if width < 8 or height < 8:
            raise ValueError(f"cameras.{name}: size {width}x{height} is too small (at least 8x8)")
        if not fps > 0:
            raise ValueError(f"cameras.{name}.fps must be > 0, got {fps!r}")
        self.arm = arm
        self.name = name
        self.width = int(width)
        self.height = int(height)
        self.period_s = 1.0 / float(fps)
        self.view = view
        self._next_s: float | None = None
        self._opened = False
        self._close: Callable[[], None] = lambda: None
        self._draw: Callable[[], Frame] = (
            self._draw_kinematic if isinstance(arm, SimArm) else self._mujoco_drawer(arm)
        )

    def _mujoco_drawer(self, arm: SimArmLike) -> Callable[[], Frame]:
        from robot_agent.sim.mujoco_arm import MujocoArm
        from robot_agent.sim.mujoco_render import SceneRenderer

        if not isinstance(arm, MujocoArm):
            raise ValueError(f"cameras.{self.name}: cannot draw a {type(arm).__name__} (not a simulated arm)")
        mujoco_arm: MujocoArm = arm
        renderer = SceneRenderer(mujoco_arm.model)
        most = (int(mujoco_arm.model.vis.global_.offwidth), int(mujoco_arm.model.vis.global_.offheight))
        if self.width > most[0] or self.height > most[1]:
            raise ValueError(
                f"cameras.{self.name}: size {self.width}x{self.height} is larger than the MuJoCo "
                f"scene's offscreen buffer ({most[0]}x{most[1]})"
            )
        self._close = renderer.close

        def draw() -> Frame:
            state = mujoco_arm.physics_state()  # a copy: drawing never holds the arm's lock
            rgb = renderer.render(state, self.view, self.width, self.height)
            return Frame(rgb=rgb, time_s=state.time_s)

        return draw

    def _draw_kinematic(self) -> Frame:
        arm = self.arm
        assert isinstance(arm, SimArm)
        ee, gripper, t = arm.snapshot()
        rgb: np.ndarray = render(arm.world, ee, gripper, self.width, self.height, self.view)
        return Frame(rgb=rgb, time_s=t)

    @override
    @classmethod
    def from_config(cls, config: CameraConfig, *, robot: Robot | None = None) -> SimCamera:
        """Build from ``[cameras.NAME]``, drawing the scene of ``robot``, which must be the
        simulated arm (``ConfigError`` otherwise, or on an unknown option or bad value)."""
        if not isinstance(robot, SimRobot):
            raise ConfigError(
                f"cameras.{config.name}: the sim camera draws the simulated arm's world; "
                f'robot is a {type(robot).__name__}, use kind = "sim" for the robot too',
                field=f"cameras.{config.name}.kind",
            )
        options: Mapping[str, Any] = config.options or {}
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigError(
                f"cameras.{config.name}.options: unknown option(s) {unknown!r}; known: {sorted(_OPTIONS)!r}",
                field=f"cameras.{config.name}.options",
            )
        view = str(options.get("view", default_view(config.name)))
        try:
            return cls(
                robot.arm,
                name=config.name,
                width=config.width,
                height=config.height,
                fps=config.fps,
                view=view,
            )
        except ValueError as exc:
            raise ConfigError(str(exc), field=f"cameras.{config.name}") from exc

    @override
    def open(self) -> None:
        self._opened = True
        self._next_s = None
        logger.info(
            "Simulated camera %r open: %s view, %dx%d.", self.name, self.view, self.width, self.height
        )

    @override
    def read(self) -> Frame:
        if self.arm.realtime:
            now = time.monotonic()
            if self._next_s is not None and now < self._next_s:
                time.sleep(self._next_s - now)
            now = time.monotonic()
            # Drift-free pacing; after a stall, restart from now instead of bursting to catch up.
            self._next_s = (
                now + self.period_s
                if self._next_s is None or now > self._next_s + self.period_s
                else self._next_s + self.period_s
            )
        return self.render()

    def render(self) -> Frame:
        """A frame of the scene now, without pacing (offline use)."""
        return self._draw()

    @override
    def close(self) -> None:
        """Stop; frees the GL contexts this thread made (a capture thread's go with the thread)."""
        self._opened = False
        self._close()

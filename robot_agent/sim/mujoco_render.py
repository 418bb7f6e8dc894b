"""Offscreen rendering of the MuJoCo scene, on demand, headless.

Frames are drawn only when asked for (an observation, a video frame), never per physics step:
software OpenGL on a CPU takes 8-15 ms per 224x224 frame of this scene (decimated meshes, shadows
off), against 0.1 ms per physics step. A frame shows the state copied by
:meth:`robot_agent.sim.mujoco_arm.MujocoArm.physics_state`, so drawing never holds the arm's lock,
and its time is the sim time of that copy.

OpenGL backend: MuJoCo reads ``MUJOCO_GL`` when it is first imported. Without a display and with
the variable unset, :func:`import_mujoco` sets it to ``egl`` (Mesa's software EGL works headless;
``osmesa`` needs ``libosmesa6``); a user's own setting is kept. Every module of the MuJoCo sim
imports MuJoCo through it.

A ``mujoco.Renderer`` holds a GL context bound to the thread that made it, so
:class:`SceneRenderer` keeps one per thread and image size.
"""

from __future__ import annotations

import importlib
import os
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from robot_agent.sim.mujoco_arm import PhysicsState

__all__ = ["VIEWS", "MjData", "MjModel", "MjSpec", "SceneRenderer", "View", "import_mujoco"]

# MuJoCo (4.0) ships no type stubs (no ``py.typed``, no ``.pyi`` for ``mujoco`` itself), so its
# objects are ``Any`` to mypy. These names mark where they cross into typed code.
#: A compiled ``mujoco.MjModel``.
MjModel: TypeAlias = Any
#: A ``mujoco.MjData`` (the state of one simulation of an :data:`MjModel`).
MjData: TypeAlias = Any
#: A ``mujoco.MjSpec`` (an editable model before compilation).
MjSpec: TypeAlias = Any

View = Literal["front", "wrist"]
VIEWS: tuple[View, ...] = ("front", "wrist")


def import_mujoco() -> ModuleType:
    """``import mujoco`` with a headless OpenGL backend chosen when none is set (see above)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    return importlib.import_module("mujoco")


class SceneRenderer:
    """Draws views of ``model`` (a compiled scene of :mod:`robot_agent.sim.mujoco_scene`).

    ``render(state, view, width, height)`` -> RGB uint8 ``[height, width, 3]``. Raises
    ``ValueError`` on an unknown view or a size outside 8..the model's offscreen buffer
    (1280x960), ``RuntimeError`` (MuJoCo's) when no OpenGL context can be made.
    """

    def __init__(self, model: MjModel) -> None:
        mujoco = import_mujoco()
        self._mj = mujoco
        self.model = model
        self._local = threading.local()
        self._max = (int(model.vis.global_.offwidth), int(model.vis.global_.offheight))

    def render(self, state: PhysicsState, view: str, width: int, height: int) -> np.ndarray:
        """Draw ``view`` of ``state`` as RGB uint8 ``[height, width, 3]`` (see the class)."""
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}: must be one of {VIEWS!r}")
        sizes_are_ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (width, height))
        if not (sizes_are_ints and 8 <= width <= self._max[0] and 8 <= height <= self._max[1]):
            top = f"{self._max[0]}x{self._max[1]}"
            raise ValueError(f"image size {width!r}x{height!r}: need whole pixels within 8x8 .. {top}")
        local = self._local
        if getattr(local, "data", None) is None:
            local.data = self._mj.MjData(self.model)
            local.renderers = {}
        data = local.data
        data.qpos[:] = state.qpos
        if self.model.nmocap:
            data.mocap_pos[:] = state.mocap_pos
            data.mocap_quat[:] = state.mocap_quat
        self._mj.mj_kinematics(self.model, data)
        self._mj.mj_camlight(self.model, data)
        renderer = local.renderers.get((width, height))
        if renderer is None:
            renderer = self._mj.Renderer(self.model, height=height, width=width)
            local.renderers[(width, height)] = renderer
        renderer.update_scene(data, camera=view)
        return np.ascontiguousarray(renderer.render())

    def close(self) -> None:
        """Free this thread's GL contexts."""
        for renderer in getattr(self._local, "renderers", {}).values():
            renderer.close()
        self._local.renderers = {}

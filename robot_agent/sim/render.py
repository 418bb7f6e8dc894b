"""Draws the simulated scene with OpenCV: a pinhole camera, flat-shaded boxes, painter's order.

Good enough for a policy to learn from and for a person to follow in a video: the table with a
faint grid (depth cues), the three cubes as shaded boxes, the gripper as a wrist, fingers and a
tip marker, and the tip's shadow with a plumb line to the table, so the tip's height is visible
in a single image. No OpenGL, so it runs headless anywhere.

Views: ``front`` is a fixed third-person camera across the table looking back at the arm;
``wrist`` hangs 12 cm above the tip on the gripper's axis, looking along it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from robot_agent.sim.world import COLOURS, Cube, SimWorld
from safety.rotations import quat_to_matrix
from safety.types import Pose

__all__ = ["VIEWS", "CameraModel", "render"]

VIEWS = ("front", "wrist")
_SHIFT = 4  # sub-pixel bits for cv2 drawing, so small images stay smooth
_SCALE = 1 << _SHIFT
_LIGHT = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
_TABLE = (0.05, 0.95, -0.5, 0.5)  # x0, x1, y0, y1
_TABLE_RGB = (200, 185, 160)
_GRID_RGB = (188, 173, 149)
_BG_TOP = np.array([236, 238, 242], dtype=np.float32)
_BG_BOTTOM = np.array([190, 194, 202], dtype=np.float32)
_GRIPPER_RGB = (70, 70, 80)
_TIP_RGB = (250, 200, 30)


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera: ``eye`` position, rotation ``r_wc`` (camera axes x right, y down,
    z forward, as columns in the world frame), focal lengths in pixels and image size."""

    eye: np.ndarray
    r_wc: np.ndarray
    focal_x_px: float
    focal_y_px: float
    width: int
    height: int

    @classmethod
    def look_at(
        cls,
        eye: np.ndarray,
        target: np.ndarray,
        up: np.ndarray,
        fov_y_deg: float,
        width: int,
        height: int,
        *,
        fov_x_deg: float | None = None,
    ) -> CameraModel:
        """Square pixels unless ``fov_x_deg`` is given too."""
        z = np.asarray(target, float) - np.asarray(eye, float)
        z /= np.linalg.norm(z)
        x = np.cross(z, np.asarray(up, float))
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        focal_y = (height / 2) / math.tan(math.radians(fov_y_deg) / 2)
        focal_x = focal_y if fov_x_deg is None else (width / 2) / math.tan(math.radians(fov_x_deg) / 2)
        return cls(np.asarray(eye, float), np.column_stack([x, y, z]), focal_x, focal_y, width, height)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points ``[N, 3]`` to pixel coordinates ``[N, 2]`` and depths ``[N]``."""
        pc = (np.asarray(points, float) - self.eye) @ self.r_wc
        depth = pc[:, 2]
        safe = np.where(depth > 1e-6, depth, 1e-6)
        uv = np.column_stack(
            [
                self.focal_x_px * pc[:, 0] / safe + self.width / 2,
                self.focal_y_px * pc[:, 1] / safe + self.height / 2,
            ]
        )
        return uv, depth


def front_camera(width: int, height: int) -> CameraModel:
    # Across the table, to the right of the arm and above it: the cubes and the tip's shadow are
    # in view, and height shows as the distance tip to shadow. The framing is the same at every
    # size (non-square images are stretched, not widened), so the agent resizing a 640x480 frame
    # to a policy's 96x96 input gives the picture the policy was trained on.
    fov = 50.0
    return CameraModel.look_at(
        np.array([1.0, -0.42, 0.72]),
        np.array([0.47, 0.0, 0.10]),
        np.array([0, 0, 1.0]),
        fov,
        width,
        height,
        fov_x_deg=fov,
    )


def wrist_camera(ee: Pose, width: int, height: int) -> CameraModel:
    r = quat_to_matrix(ee.quaternion)
    axis = r[:, 2]  # gripper approach axis (points out of the fingers)
    eye = np.asarray(ee.position, float) - 0.12 * axis
    return CameraModel.look_at(eye, eye + axis, r[:, 0], 70.0, width, height)


def _poly(img: np.ndarray, uv: np.ndarray, rgb: tuple[int, int, int] | np.ndarray) -> None:
    pts = np.round(uv * _SCALE).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillConvexPoly(img, pts, tuple(int(c) for c in rgb), cv2.LINE_AA, _SHIFT)


def _line(img: np.ndarray, a: np.ndarray, b: np.ndarray, rgb: tuple[int, int, int], thickness: int) -> None:
    pa = tuple(int(v) for v in np.round(a * _SCALE))
    pb = tuple(int(v) for v in np.round(b * _SCALE))
    cv2.line(img, pa, pb, rgb, max(1, thickness), cv2.LINE_AA, _SHIFT)


def _cube_faces(cube: Cube) -> list[tuple[np.ndarray, np.ndarray]]:
    """The six faces as (corners [4, 3], outward normal)."""
    h = cube.size / 2
    c, s = math.cos(cube.yaw), math.sin(cube.yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    centre = np.asarray(cube.position)
    corners = np.array([[sx, sy, sz] for sz in (-h, h) for sy in (-h, h) for sx in (-h, h)]) @ rot.T + centre
    idx = [(4, 5, 7, 6, (0, 0, 1)), (0, 2, 3, 1, (0, 0, -1)), (0, 1, 5, 4, (0, -1, 0)),
           (2, 6, 7, 3, (0, 1, 0)), (0, 4, 6, 2, (-1, 0, 0)), (1, 3, 7, 5, (1, 0, 0))]  # fmt: skip
    return [(corners[list(f[:4])], rot @ np.array(f[4], float)) for f in idx]


def _draw_cube(img: np.ndarray, cam: CameraModel, cube: Cube) -> None:
    base = np.array(COLOURS[cube.colour], dtype=float)
    for corners, normal in _cube_faces(cube):
        centre = corners.mean(axis=0)
        if normal @ (cam.eye - centre) <= 0:  # facing away
            continue
        uv, depth = cam.project(corners)
        if np.any(depth < 0.02):
            continue
        shade = 0.45 + 0.55 * max(0.0, float(normal @ _LIGHT))
        _poly(img, uv, np.clip(base * shade, 0, 255))


def _px(cam: CameraModel, value_m: float, at: np.ndarray) -> int:
    _, depth = cam.project(at[None, :])
    focal = math.sqrt(cam.focal_x_px * cam.focal_y_px)
    return max(1, round(focal * value_m / max(float(depth[0]), 1e-3)))


def _draw_gripper(img: np.ndarray, cam: CameraModel, ee: Pose, gripper: float, wrist: bool) -> None:
    tip = np.asarray(ee.position, float)
    r = quat_to_matrix(ee.quaternion)
    axis, across = r[:, 2], r[:, 1]
    if not wrist:
        top = tip - 0.22 * axis
        palm = tip - 0.06 * axis
        _line(img, cam.project(np.array([top, palm]))[0][0], cam.project(palm[None])[0][0], _GRIPPER_RGB,
              _px(cam, 0.05, palm))  # fmt: skip
    half_open = 0.01 + 0.03 * float(np.clip(gripper, 0.0, 1.0))
    palm = tip - 0.06 * axis
    for side in (-1.0, 1.0):
        # Seen from the wrist only the lower half of the fingers, so they frame the view.
        a = (tip - 0.03 * axis if wrist else palm) + side * half_open * across
        b = tip + side * half_open * across
        uv, depth = cam.project(np.array([a, b]))
        if np.all(depth > 0.02):
            _line(img, uv[0], uv[1], _GRIPPER_RGB, _px(cam, 0.012, b))
    if not wrist:
        uv, _ = cam.project(np.array([palm - half_open * across, palm + half_open * across]))
        _line(img, uv[0], uv[1], _GRIPPER_RGB, _px(cam, 0.015, palm))
        uv, _ = cam.project(tip[None])
        radius = max(2, _px(cam, 0.012, tip))
        cv2.circle(img, tuple(int(v) for v in np.round(uv[0] * _SCALE)), radius * _SCALE, _TIP_RGB, -1,
                   cv2.LINE_AA, _SHIFT)  # fmt: skip


def render(
    world: SimWorld, ee: Pose, gripper: float, width: int, height: int, view: str = "front"
) -> np.ndarray:
    """An RGB uint8 ``[height, width, 3]`` image of the scene with the gripper tip at ``ee``."""
    if view not in VIEWS:
        raise ValueError(f"render: view must be one of {VIEWS!r}, got {view!r}")
    if width < 8 or height < 8:
        raise ValueError(f"render: image size {width}x{height} is too small (at least 8x8)")
    wrist = view == "wrist"
    cam = wrist_camera(ee, width, height) if wrist else front_camera(width, height)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    img = np.ascontiguousarray(
        np.broadcast_to(((1 - ramp) * _BG_TOP + ramp * _BG_BOTTOM)[:, None, :], (height, width, 3)).astype(
            np.uint8
        )
    )
    x0, x1, y0, y1 = _TABLE
    table = np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], float)
    uv, depth = cam.project(table)
    if np.all(depth > 0.02):
        _poly(img, uv, _TABLE_RGB)
        for gx in np.arange(0.1, x1, 0.1):
            a, b = cam.project(np.array([[gx, y0, 0], [gx, y1, 0]]))[0]
            _line(img, a, b, _GRID_RGB, 1)
        for gy in np.arange(-0.4, 0.41, 0.1):
            a, b = cam.project(np.array([[x0, gy, 0], [x1, gy, 0]]))[0]
            _line(img, a, b, _GRID_RGB, 1)
    tip = np.asarray(ee.position, float)
    # Shadow straight below the tip and the plumb line: how high the tip is, in one image.
    shadow = np.array([tip[0], tip[1], 0.0005])
    ring = np.array(
        [[math.cos(a) * 0.02, math.sin(a) * 0.02, 0] for a in np.linspace(0, 2 * math.pi, 16, False)]
    )
    uv, depth = cam.project(shadow + ring)
    if np.all(depth > 0.02):
        _poly(img, uv, (120, 112, 100))
    objects: list[tuple[float, object]] = [
        (float(np.linalg.norm(np.asarray(c.position) - cam.eye)), c) for c in world.cubes
    ]
    if not wrist:
        objects.append((float(np.linalg.norm(tip - cam.eye)), "gripper"))
        uv, depth = cam.project(np.array([tip, shadow]))
        if np.all(depth > 0.02):
            _line(img, uv[0], uv[1], (90, 90, 90), 1)
    for _, obj in sorted(objects, key=lambda o: -o[0]):
        if isinstance(obj, Cube):
            _draw_cube(img, cam, obj)
        else:
            _draw_gripper(img, cam, ee, gripper, wrist=False)
    if wrist:
        _draw_gripper(img, cam, ee, gripper, wrist=True)
    return img

"""Cameras, one file per kind, picked by name (``[cameras.NAME] kind``) and imported only when
chosen, so the agent runs without pyrealsense2 installed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from robot_agent._importer import resolve

if TYPE_CHECKING:
    from robot_agent.cameras.base import Camera
    from robot_agent.config import CameraConfig
    from robot_agent.drivers.base import Robot

__all__ = ["CAMERAS", "EXTRAS", "camera_class", "create_camera"]

CAMERAS: dict[str, str] = {
    "sim": "robot_agent.cameras.sim:SimCamera",
    "realsense": "robot_agent.cameras.realsense:RealSenseCamera",
    "usb": "robot_agent.cameras.usb:UsbCamera",
}
#: The pip extra that brings each camera's SDK (USB cameras go through OpenCV, always installed).
EXTRAS: dict[str, str] = {"sim": "agent", "realsense": "realsense", "usb": "agent"}


def camera_class(kind: str, field: str = "cameras.kind") -> type[Camera]:
    """The camera class registered as ``kind``; ``field`` is named in errors."""
    return resolve(kind, CAMERAS, EXTRAS, what="camera", field=field)


def create_camera(config: CameraConfig, robot: Robot | None = None) -> Camera:
    """Build (not open) the camera ``config`` describes; ``robot`` is handed on to cameras that
    draw it (the simulated camera), see ``Camera.from_config``."""
    cls = camera_class(config.kind, f"cameras.{config.name}.kind")
    return cls.from_config(config, robot=robot)

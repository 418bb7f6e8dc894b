"""The small interface every camera implements: simulated, RealSense, USB/V4L2.

``read`` blocks until a new frame is available; the agent calls it from a capture thread per
camera and keeps only the latest frame, so a slow camera never stalls control.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from robot_agent.config import CameraConfig
    from robot_agent.drivers.base import Robot

__all__ = ["Camera", "Frame"]


@dataclass(frozen=True)
class Frame:
    """An RGB uint8 ``[H, W, 3]`` image and the ``time.monotonic()`` it was captured at."""

    rgb: np.ndarray
    time_s: float
    depth: np.ndarray | None = None  # metres, aligned to rgb, when the camera gives depth


class Camera(abc.ABC):
    """A camera. Built from a ``CameraConfig`` by its class method ``from_config``."""

    name: str

    @classmethod
    def from_config(cls, config: CameraConfig, *, robot: Robot | None = None) -> Camera:
        """Build (not open) the camera ``config`` (a ``[cameras.NAME]`` section) describes.

        ``robot`` is the arm the agent drives: only a camera that draws it (the simulated camera
        draws the simulated arm's world) uses it; a real camera ignores it. Touches no device.
        Raises ``ConfigError`` naming the field (``cameras.NAME.options.X``) that is wrong.

        Every camera in ``robot_agent.cameras.CAMERAS`` implements it; a wrapper built around
        another ``Camera`` keeps this default, which raises ``NotImplementedError``.
        """
        raise NotImplementedError(f"{cls.__name__} is not built from a config")

    @classmethod
    def probe(cls, config: CameraConfig) -> None:
        """Raise ``CameraError`` if no device for ``config`` is there, without streaming from it.

        The agent calls it before it waits for the server for the cameras it creates only once
        the policy names them, so a missing camera is reported even when no server runs. The
        message says what is missing, not which camera (the caller names that). Blocking.
        """

    @abc.abstractmethod
    def open(self) -> None:
        """Open the device; raise an error naming it (and listing what is connected) on failure."""

    @abc.abstractmethod
    def read(self) -> Frame:
        """Block until the next frame and return it."""

    def close(self) -> None:
        """Release the device. Always called."""

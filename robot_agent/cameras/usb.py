"""USB (UVC) cameras through OpenCV's ``VideoCapture``: V4L2 on Linux, the platform default elsewhere.

The device is an index (``0``) or a path (``/dev/video2``, or better a stable
``/dev/v4l/by-id/...`` link, which survives replugging). Most USB cameras deliver high resolutions
at full frame rate only as MJPG, so that is requested by default (``options.fourcc``). A camera
that silently falls back to another resolution is an error, not a surprise in the policy's input.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from typing_extensions import override

from robot_agent.cameras.base import Camera, Frame
from robot_agent.config import CameraConfig
from robot_agent.errors import CameraError, ConfigError

if TYPE_CHECKING:
    from robot_agent.drivers.base import Robot

__all__ = ["UsbCamera", "buffer_time"]

logger = logging.getLogger(__name__)

_KNOWN_OPTIONS = {"fourcc", "buffer_size"}
_CANNOT_OPEN_HINT = (
    "(does it exist, is it in use by another program, may this user read it? "
    "`v4l2-ctl --list-devices` lists them)"
)


class UsbCamera(Camera):
    """A UVC camera by index or path. Built with :meth:`from_config`."""

    def __init__(self, config: CameraConfig, *, capture_factory: Callable[..., Any] | None = None) -> None:
        # The factory is the transport: cv2.VideoCapture by default, an autospec of it in the tests.
        unknown = sorted(set(config.options) - _KNOWN_OPTIONS)
        if unknown:
            field = f"cameras.{config.name}.options.{unknown[0]}"
            raise ConfigError(f"{field} is not a USB camera option; known: fourcc, buffer_size", field=field)
        fourcc = config.options.get("fourcc", "MJPG")
        if not isinstance(fourcc, str) or len(fourcc) != 4:
            field = f"cameras.{config.name}.options.fourcc"
            raise ConfigError(
                f"{field} is {fourcc!r}; expected four characters such as 'MJPG' or 'YUYV'", field=field
            )
        buffer_size = config.options.get("buffer_size", 1)
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            field = f"cameras.{config.name}.options.buffer_size"
            raise ConfigError(f"{field} is {buffer_size!r}; expected a positive integer", field=field)
        self.name = config.name
        self.config = config
        self.device = _device(config)
        self.fourcc = fourcc
        self.buffer_size = buffer_size
        self._capture_factory: Callable[..., Any] = capture_factory or cv2.VideoCapture
        self._capture: Any = None

    @override
    @classmethod
    def from_config(cls, config: CameraConfig, *, robot: Robot | None = None) -> UsbCamera:
        return cls(config)

    @override
    @classmethod
    def probe(cls, config: CameraConfig, *, capture_factory: Callable[..., Any] | None = None) -> None:
        device = _device(config)
        factory: Callable[..., Any] = capture_factory or cv2.VideoCapture
        capture = factory(*_capture_target(device))
        try:
            if not capture.isOpened():
                raise CameraError(f"cannot open USB camera {device!r} {_CANNOT_OPEN_HINT}")
        finally:
            capture.release()

    @override
    def open(self) -> None:
        capture = self._capture_factory(*_capture_target(self.device))
        if not capture.isOpened():
            capture.release()
            raise CameraError(
                f"camera {self.name!r}: cannot open USB camera {self.device!r} {_CANNOT_OPEN_HINT}"
            )
        c = self.config
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*self.fourcc))
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
        capture.set(cv2.CAP_PROP_FPS, c.fps)
        # A short driver queue: the agent wants the newest frame, not one from 4 frames ago.
        capture.set(cv2.CAP_PROP_BUFFERSIZE, self.buffer_size)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if (width, height) != (c.width, c.height):
            capture.release()
            raise CameraError(
                f"camera {self.name!r}: USB camera {self.device!r} gives {width}x{height}, configured "
                f"{c.width}x{c.height}; pick a mode it supports (`v4l2-ctl -d {self.device} --list-formats-ext`)"
            )
        fps = capture.get(cv2.CAP_PROP_FPS)
        if fps and abs(fps - c.fps) > 0.5:
            logger.warning("Camera %r: asked for %d fps, the device reports %.1f.", self.name, c.fps, fps)
        self._capture = capture
        logger.info(
            "Camera %r: USB %r streaming %dx%d %s.", self.name, self.device, width, height, self.fourcc
        )

    @override
    def read(self) -> Frame:
        if self._capture is None:
            raise CameraError(f"camera {self.name!r} is not open")
        ok, bgr = self._capture.read()
        received = time.monotonic()
        if not ok or bgr is None:
            raise CameraError(
                f"camera {self.name!r}: USB camera {self.device!r} delivered no frame (unplugged?)"
            )
        captured = buffer_time(self._capture.get(cv2.CAP_PROP_POS_MSEC), received)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return Frame(rgb=np.ascontiguousarray(rgb), time_s=captured)

    @override
    def close(self) -> None:
        if self._capture is not None:
            try:
                self._capture.release()
            finally:
                self._capture = None


def _capture_target(device: int | str) -> tuple[int | str, int]:
    """What to hand ``cv2.VideoCapture``: OpenCV's V4L2 backend opens devices by index only
    ("backend is generally available but can't be used to capture by name"), so a path, by-id
    links included, is resolved to its ``/dev/videoN`` and opened as index N."""
    linux = sys.platform.startswith("linux")
    if isinstance(device, int):
        return device, cv2.CAP_V4L2 if linux else cv2.CAP_ANY
    match = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(device)) if linux else None
    if match:
        return int(match.group(1)), cv2.CAP_V4L2
    return device, cv2.CAP_ANY  # anything else (a video file, a stream URL): let OpenCV choose


def _device(config: CameraConfig) -> int | str:
    device = config.device
    if device is None:
        return 0
    if isinstance(device, bool):
        device = None  # fall through to the error below
    elif isinstance(device, int):
        if device >= 0:
            return device
    elif isinstance(device, str) and device.strip():
        text = device.strip()
        return int(text) if text.isdigit() else text
    field = f"cameras.{config.name}.device"
    raise ConfigError(
        f"{field} is {config.device!r}; expected an index (0) or a path (/dev/video0)", field=field
    )


def buffer_time(pos_msec: float, received_s: float, *, max_age_s: float = 10.0) -> float:
    """When a V4L2 frame was captured, on ``time.monotonic()``: the driver's buffer timestamp, else
    ``received_s`` (when ``read`` returned it).

    OpenCV's V4L2 backend reports the dequeued buffer's ``timestamp`` as ``CAP_PROP_POS_MSEC``
    (milliseconds, ``CLOCK_MONOTONIC`` for drivers flagged ``V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC``,
    as uvcvideo is; Linux "Video for Linux API", struct v4l2_buffer), which is the clock of
    ``time.monotonic()`` on Linux. A frame that sat in the driver's queue is then as old as it is.
    Other backends report a position in a stream: an age outside ``[0, max_age_s]`` is not trusted.
    """
    age = received_s - float(pos_msec) / 1000.0
    if not pos_msec > 0.0 or not 0.0 <= age <= max_age_s:  # 0: no buffer dequeued yet
        return received_s
    return received_s - age

"""Intel RealSense cameras (D4xx, L5xx) through pyrealsense2.

Each camera is one ``rs.pipeline`` bound to a device by serial number, so several cameras run at
once and a wrist camera never swaps places with a scene camera after a replug. Colour comes as
RGB at the configured resolution and frame rate; depth, when ``options.depth = true``, is aligned
to the colour image and converted to metres. The colour intrinsics are exposed for users who
project points (``camera.intrinsics``).

Errors name the camera and list what is connected: a serial nobody has plugged in is a config
mistake the user can fix only by seeing the right serial.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from typing_extensions import override

from robot_agent.cameras.base import Camera, Frame
from robot_agent.config import CameraConfig
from robot_agent.errors import CameraError, ConfigError, MissingExtra

try:
    import pyrealsense2 as rs
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingExtra("RealSense cameras need pyrealsense2: pip install 'vla-deploy[realsense]'") from exc

if TYPE_CHECKING:
    from robot_agent.drivers.base import Robot

__all__ = ["Intrinsics", "RealSenseCamera", "capture_time", "connected_devices"]

logger = logging.getLogger(__name__)

NO_DEVICE = "no RealSense device was found"
_NO_DEVICE_HINT = (
    "(is it plugged into a USB 3 port, and may this user open it? see the udev rules of librealsense)"
)
_KNOWN_OPTIONS = {"depth", "timeout_ms"}


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of the colour stream, in pixels, with the SDK's distortion model."""

    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    model: str
    coeffs: tuple[float, ...]


def connected_devices(context: Any) -> list[tuple[str, str]]:
    """(serial, name) of every RealSense device ``context`` sees."""
    devices = []
    for device in context.query_devices():
        devices.append((device.get_info(rs.camera_info.serial_number), device.get_info(rs.camera_info.name)))
    return devices


class RealSenseCamera(Camera):
    """One RealSense device by serial number. Built with :meth:`from_config`."""

    def __init__(
        self,
        config: CameraConfig,
        *,
        context_factory: Callable[[], Any] | None = None,
        pipeline_factory: Callable[[], Any] | None = None,
        config_factory: Callable[[], Any] | None = None,
    ) -> None:
        # The factories are the transport: rs.context, rs.pipeline and rs.config by default,
        # autospecs of them in the tests.
        unknown = sorted(set(config.options) - _KNOWN_OPTIONS)
        if unknown:
            field = f"cameras.{config.name}.options.{unknown[0]}"
            raise ConfigError(
                f"{field} is not a RealSense option; known: {', '.join(sorted(_KNOWN_OPTIONS))}", field=field
            )
        depth = config.options.get("depth", False)
        if not isinstance(depth, bool):
            field = f"cameras.{config.name}.options.depth"
            raise ConfigError(f"{field} is {depth!r}; expected true or false", field=field)
        timeout_ms = config.options.get("timeout_ms", 1000)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            field = f"cameras.{config.name}.options.timeout_ms"
            raise ConfigError(f"{field} is {timeout_ms!r}; expected a positive integer", field=field)
        self.name = config.name
        self.config = config
        self.depth = depth
        self.timeout_ms = timeout_ms
        self.serial: str | None = config.serial
        self.intrinsics: Intrinsics | None = None
        self.depth_scale: float | None = None  # metres per depth unit
        self._context_factory = context_factory or rs.context
        self._pipeline_factory = pipeline_factory or rs.pipeline
        self._config_factory = config_factory or rs.config
        self._pipeline: Any = None
        self._align: Any = None
        self._last_frame_number: int | None = None

    @override
    @classmethod
    def from_config(cls, config: CameraConfig, *, robot: Robot | None = None) -> RealSenseCamera:
        return cls(config)

    @override
    @classmethod
    def probe(cls, config: CameraConfig, *, context_factory: Callable[[], Any] | None = None) -> None:
        devices = connected_devices((context_factory or rs.context)())
        if not devices:
            raise CameraError(f"{NO_DEVICE} {_NO_DEVICE_HINT}")
        if config.serial is not None and config.serial not in {serial for serial, _ in devices}:
            listing = ", ".join(f"{serial} ({name})" for serial, name in devices)
            raise CameraError(f"no RealSense device with serial {config.serial!r}; connected: {listing}")

    @override
    def open(self) -> None:
        devices = connected_devices(self._context_factory())
        listing = ", ".join(f"{serial} ({name})" for serial, name in devices)
        if not devices:
            raise CameraError(f"camera {self.name!r}: {NO_DEVICE} {_NO_DEVICE_HINT}")
        if self.serial is None:
            if len(devices) > 1:
                raise CameraError(
                    f"camera {self.name!r}: several RealSense devices are connected ({listing}); "
                    f"set cameras.{self.name}.serial to pick one"
                )
            self.serial = devices[0][0]
        elif self.serial not in {serial for serial, _ in devices}:
            raise CameraError(
                f"camera {self.name!r}: no RealSense device with serial {self.serial!r}; connected: {listing}"
            )

        cfg = self._config_factory()
        cfg.enable_device(self.serial)
        c = self.config
        cfg.enable_stream(rs.stream.color, c.width, c.height, rs.format.rgb8, c.fps)
        if self.depth:
            cfg.enable_stream(rs.stream.depth, c.width, c.height, rs.format.z16, c.fps)
        pipeline = self._pipeline_factory()
        try:
            profile = pipeline.start(cfg)
        except RuntimeError as exc:  # "Couldn't resolve requests": no such mode on this model
            raise CameraError(
                f"camera {self.name!r}: RealSense {self.serial} cannot stream {c.width}x{c.height} at "
                f"{c.fps} fps{' with depth' if self.depth else ''}: {exc}"
            ) from exc
        self._pipeline = pipeline
        color = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        self.intrinsics = Intrinsics(
            width=int(color.width),
            height=int(color.height),
            fx=float(color.fx),
            fy=float(color.fy),
            ppx=float(color.ppx),
            ppy=float(color.ppy),
            model=str(color.model),
            coeffs=tuple(float(v) for v in color.coeffs),
        )
        if self.depth:
            self.depth_scale = float(profile.get_device().first_depth_sensor().get_depth_scale())
            self._align = rs.align(rs.stream.color)
        logger.info(
            "Camera %r: RealSense %s streaming %dx%d at %d fps%s.",
            self.name,
            self.serial,
            c.width,
            c.height,
            c.fps,
            " with aligned depth" if self.depth else "",
        )

    @override
    def read(self) -> Frame:
        if self._pipeline is None:
            raise CameraError(f"camera {self.name!r} is not open")
        try:
            frames = self._pipeline.wait_for_frames(self.timeout_ms)
        except RuntimeError as exc:  # "Frame didn't arrive within 1000"
            raise CameraError(
                f"camera {self.name!r}: RealSense {self.serial} delivered no frame: {exc}"
            ) from exc
        received = time.monotonic()
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            raise CameraError(f"camera {self.name!r}: RealSense {self.serial} frame set without colour")
        number = int(color.get_frame_number())
        if number == self._last_frame_number:
            raise CameraError(
                f"camera {self.name!r}: RealSense {self.serial} delivered frame {number} again (stalled stream)"
            )
        self._last_frame_number = number
        captured = capture_time(color, received)
        # copy: the SDK recycles the frame's buffer once the frame object goes
        rgb = np.array(np.asanyarray(color.get_data()), dtype=np.uint8, copy=True)
        depth = None
        if self._align is not None:
            depth_frame = frames.get_depth_frame()
            if depth_frame:
                depth = np.asanyarray(depth_frame.get_data()).astype(np.float32) * np.float32(
                    self.depth_scale
                )
        return Frame(rgb=rgb, time_s=captured, depth=depth)

    @override
    def close(self) -> None:
        self._last_frame_number = None
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            finally:
                self._pipeline = None


def capture_time(frame: Any, received_s: float, *, max_age_s: float = 10.0) -> float:
    """When ``frame`` was captured, on ``time.monotonic()``: its exposure time when the SDK stamps
    it on the host clock, else ``received_s`` (when ``wait_for_frames`` returned it).

    ``get_timestamp()`` is milliseconds; in ``timestamp_domain.global_time`` (the default with
    ``global_time_enabled``, librealsense docs "Frame Timestamps") it is the device clock mapped to
    the host's ``time.time()``, so the frame's age is ``time.time() - ts / 1000``. A frame that
    waited in the SDK's queue is then reported as old as it is, not as fresh as its delivery.
    An age outside ``[0, max_age_s]`` (clock steps, a device in another domain) is not trusted.
    """
    if frame.get_frame_timestamp_domain() != rs.timestamp_domain.global_time:
        return received_s
    age = time.time() - float(frame.get_timestamp()) / 1000.0
    if not 0.0 <= age <= max_age_s:
        return received_s
    return received_s - age

"""The USB camera against OpenCV's real ``VideoCapture`` class (autospecced: the device is the only
thing replaced), plus one test with the real class on a device that does not exist."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from unittest import mock

import cv2
import numpy as np
import pytest

from robot_agent.cameras import usb as usb_module
from robot_agent.cameras.usb import UsbCamera, buffer_time
from robot_agent.config import CameraConfig
from robot_agent.errors import CameraError, ConfigError


class FakeDevice:
    """What the V4L2 driver would do: accept some modes, report what it actually uses."""

    def __init__(self, modes: set[tuple[int, int]]) -> None:
        self.modes = modes
        self.props: dict[int, float] = {
            cv2.CAP_PROP_FRAME_WIDTH: 640,
            cv2.CAP_PROP_FRAME_HEIGHT: 480,
            cv2.CAP_PROP_FPS: 30,
        }
        self.factory = mock.create_autospec(cv2.VideoCapture)
        capture = self.factory.return_value
        self.capture = capture
        capture.isOpened.return_value = True
        capture.set.side_effect = self._set
        capture.get.side_effect = self._get
        self.bgr = np.zeros((480, 640, 3), dtype=np.uint8)
        self.bgr[..., 0] = 255  # blue in OpenCV's BGR order
        capture.read.return_value = (True, self.bgr)

    def _set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def _get(self, prop: int) -> float:
        wanted = (self.props[cv2.CAP_PROP_FRAME_WIDTH], self.props[cv2.CAP_PROP_FRAME_HEIGHT])
        actual = wanted if wanted in self.modes else (640, 480)  # the driver falls back to its default
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return actual[0]
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return actual[1]
        return self.props.get(prop, 0.0)


def make(
    device: Any = "/dev/video2", modes: set[tuple[int, int]] | None = None, **config: Any
) -> tuple[UsbCamera, FakeDevice]:
    fake = FakeDevice(modes or {(640, 480)})
    camera = UsbCamera(
        CameraConfig(name="front", kind="usb", device=device, **config), capture_factory=fake.factory
    )
    return camera, fake


LINUX = usb_module.sys.platform.startswith("linux")


def test_open_requests_mjpg_and_the_configured_mode() -> None:
    camera, fake = make()
    camera.open()
    if LINUX:  # OpenCV's V4L2 backend opens by index only
        fake.factory.assert_called_once_with(2, cv2.CAP_V4L2)
    fake.capture.set.assert_any_call(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
    fake.capture.set.assert_any_call(cv2.CAP_PROP_FPS, 30)
    fake.capture.set.assert_any_call(cv2.CAP_PROP_BUFFERSIZE, 1)


def test_read_converts_bgr_to_rgb() -> None:
    camera, fake = make()
    camera.open()
    frame = camera.read()
    assert frame.rgb.shape == (480, 640, 3)
    assert (frame.rgb[0, 0] == [0, 0, 255]).all()  # blue, now last
    camera.close()
    fake.capture.release.assert_called_once_with()


def test_mode_the_camera_does_not_have_is_an_error() -> None:
    camera, fake = make(width=1920, height=1080)
    with pytest.raises(CameraError, match=r"gives 640x480, configured 1920x1080"):
        camera.open()
    fake.capture.release.assert_called_once_with()


def test_camera_that_cannot_open_is_named() -> None:
    camera, fake = make()
    fake.capture.isOpened.return_value = False
    with pytest.raises(CameraError, match=r"camera 'front': cannot open USB camera '/dev/video2'"):
        camera.open()


def test_real_opencv_on_a_missing_device() -> None:
    camera = UsbCamera.from_config(CameraConfig(name="front", kind="usb", device="/dev/video-vla-missing"))
    with pytest.raises(CameraError, match="cannot open USB camera '/dev/video-vla-missing'"):
        camera.open()


def test_lost_frames_are_errors() -> None:
    camera, fake = make()
    camera.open()
    fake.capture.read.return_value = (False, None)
    with pytest.raises(CameraError, match="delivered no frame"):
        camera.read()


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (None, 0),  # default: the first camera
        (2, 2),
        ("3", 3),  # from a flag or TOML string
        ("/dev/v4l/by-id/usb-cam-video-index0", "/dev/v4l/by-id/usb-cam-video-index0"),
    ],
)
def test_device_index_or_path(device: Any, expected: Any) -> None:
    camera, _ = make(device=device)
    assert camera.device == expected


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"device": -1}, "cameras.front.device"),
        ({"device": ""}, "cameras.front.device"),
        ({"options": {"fourcc": "MJPEG"}}, "cameras.front.options.fourcc"),
        ({"options": {"fps": 30}}, "cameras.front.options.fps"),
    ],
)
def test_bad_config_names_the_field(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        UsbCamera(CameraConfig(name="front", kind="usb", **config))
    assert info.value.field == field


def test_the_table_builds_the_usb_camera_for_kind_usb() -> None:
    from robot_agent.cameras import camera_class, create_camera

    assert camera_class("usb") is UsbCamera
    camera = create_camera(CameraConfig(name="front", kind="usb", device="/dev/video-vla-missing"))
    assert isinstance(camera, UsbCamera) and camera.device == "/dev/video-vla-missing"


def test_supported_high_resolution_mode_opens() -> None:
    camera, fake = make(modes={(640, 480), (1280, 720)}, width=1280, height=720, options={"fourcc": "YUYV"})
    camera.open()
    fake.capture.set.assert_any_call(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"YUYV"))
    fake.capture.set.assert_any_call(cv2.CAP_PROP_FRAME_WIDTH, 1280)
    fake.capture.set.assert_any_call(cv2.CAP_PROP_FRAME_HEIGHT, 720)


@pytest.mark.skipif(not LINUX, reason="V4L2 device paths are Linux only")
def test_by_id_link_opens_the_video_node_it_points_to(tmp_path: Path) -> None:
    link = tmp_path / "usb-Logitech_C920_ABC123-video-index0"
    link.symlink_to("/dev/video7")
    camera, fake = make(device=str(link))
    camera.open()
    fake.factory.assert_called_once_with(7, cv2.CAP_V4L2)


def test_non_device_paths_go_to_opencv_as_given() -> None:
    camera, fake = make(device="rtsp://192.168.1.20/stream")
    camera.open()
    fake.factory.assert_called_once_with("rtsp://192.168.1.20/stream", cv2.CAP_ANY)


def test_probe_opens_and_releases_the_device() -> None:
    fake = FakeDevice({(640, 480)})
    UsbCamera.probe(
        CameraConfig(name="front", kind="usb", device="/dev/video2"), capture_factory=fake.factory
    )
    fake.capture.release.assert_called_once_with()
    fake.capture.read.assert_not_called()


def test_probe_of_a_device_that_cannot_open_names_it() -> None:
    fake = FakeDevice({(640, 480)})
    fake.capture.isOpened.return_value = False
    with pytest.raises(CameraError, match=r"^cannot open USB camera '/dev/video2'"):
        UsbCamera.probe(
            CameraConfig(name="front", kind="usb", device="/dev/video2"), capture_factory=fake.factory
        )
    fake.capture.release.assert_called_once_with()


def test_the_capture_time_is_the_driver_buffer_timestamp() -> None:
    """V4L2 stamps each buffer on CLOCK_MONOTONIC: a frame queued 40 ms ago is 40 ms old."""
    camera, fake = make()
    camera.open()
    fake.props[cv2.CAP_PROP_POS_MSEC] = (time.monotonic() - 0.04) * 1000
    before = time.monotonic()
    frame = camera.read()
    assert before - 0.04 - 0.005 <= frame.time_s <= time.monotonic() - 0.04 + 0.005


@pytest.mark.parametrize("pos_msec", [0.0, 1.0e12, 5000.0])
def test_a_timestamp_that_is_not_the_monotonic_clock_falls_back_to_the_read_time(pos_msec: float) -> None:
    """0 before the first buffer, a far future, or a file position: the read time is used."""
    assert buffer_time(pos_msec, 100_000.0) == 100_000.0

"""The RealSense camera against pyrealsense2's real classes, with only the device replaced.

``rs.context``, ``rs.pipeline``, ``rs.config`` and the frames are strict autospecs of the installed
pyrealsense2 (wrong method or arguments fail the test); ``rs.intrinsics`` and the enums are real.
One test uses the real SDK end to end: no device is connected here.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import pyrealsense2 as rs
import pytest
from sdk_autospec import strict_autospec, strict_class

from robot_agent.cameras.realsense import NO_DEVICE, RealSenseCamera, capture_time
from robot_agent.config import CameraConfig
from robot_agent.errors import CameraError, ConfigError

D435 = ("123622270001", "Intel RealSense D435")
D405 = ("218622270002", "Intel RealSense D405")


def make_device(serial: str, name: str) -> Any:
    device = strict_autospec(rs.device)
    info = {rs.camera_info.serial_number: serial, rs.camera_info.name: name}
    device.get_info.side_effect = lambda key: info[key]
    return device


def make_context(*devices: tuple[str, str]) -> Any:
    context = strict_autospec(rs.context)
    context.query_devices.return_value = [make_device(*d) for d in devices]
    return context


def make_intrinsics(width: int, height: int) -> Any:
    intrinsics = rs.intrinsics()  # the real SDK struct
    intrinsics.width, intrinsics.height = width, height
    intrinsics.fx, intrinsics.fy, intrinsics.ppx, intrinsics.ppy = 615.0, 616.0, 321.5, 242.5
    intrinsics.model = rs.distortion.inverse_brown_conrady
    intrinsics.coeffs = [0.0, 0.0, 0.0, 0.0, 0.0]
    return intrinsics


class Rig:
    def __init__(self, *devices: tuple[str, str], **config: Any) -> None:
        self.context = make_context(*devices)
        self.pipelines: list[Any] = []
        self.configs = strict_class(rs.config)
        cfg = CameraConfig(**{"name": "wrist", "kind": "realsense", **config})
        self.exposure_age_s = 0.03
        self.rgb = np.random.default_rng(0).integers(0, 255, (cfg.height, cfg.width, 3), dtype=np.uint8)
        self.camera = RealSenseCamera(
            cfg,
            context_factory=lambda: self.context,
            pipeline_factory=self._pipeline,
            config_factory=self.configs,
        )

    def _pipeline(self) -> Any:
        pipeline = strict_autospec(rs.pipeline)
        profile = strict_autospec(rs.pipeline_profile)
        stream = strict_autospec(rs.stream_profile)
        video = strict_autospec(rs.video_stream_profile)
        width, height = self.camera.config.width, self.camera.config.height
        video.get_intrinsics.return_value = make_intrinsics(width, height)
        stream.as_video_stream_profile.return_value = video
        profile.get_stream.return_value = stream
        device = strict_autospec(rs.device)
        sensor = strict_autospec(rs.depth_sensor)
        sensor.get_depth_scale.return_value = 0.001
        device.first_depth_sensor.return_value = sensor
        profile.get_device.return_value = device
        pipeline.start.return_value = profile
        frames = strict_autospec(rs.composite_frame)
        color = strict_autospec(rs.video_frame)
        color.get_data.return_value = self.rgb
        # Each frame new, exposed 30 ms before it is read, stamped on the host clock.
        color.get_frame_number.side_effect = itertools.count(1).__next__
        color.get_frame_timestamp_domain.return_value = rs.timestamp_domain.global_time
        color.get_timestamp.side_effect = lambda: (time.time() - self.exposure_age_s) * 1000.0
        self.color = color
        frames.get_color_frame.return_value = color
        depth = strict_autospec(rs.depth_frame)
        depth.get_data.return_value = np.full((height, width), 1500, dtype=np.uint16)
        frames.get_depth_frame.return_value = depth
        pipeline.wait_for_frames.return_value = frames
        self.pipelines.append(pipeline)
        return pipeline


def test_no_device_with_the_real_sdk() -> None:
    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense device is connected to this machine")
    camera = RealSenseCamera.from_config(CameraConfig(name="wrist", kind="realsense"))
    with pytest.raises(CameraError, match=f"camera 'wrist': {NO_DEVICE}"):
        camera.open()


def test_opens_the_device_with_its_serial_at_the_configured_mode() -> None:
    rig = Rig(D435, D405, serial=D405[0], width=848, height=480, fps=60)
    rig.camera.open()
    (cfg,) = rig.configs.instances
    cfg.enable_device.assert_called_once_with(D405[0])
    cfg.enable_stream.assert_called_once_with(rs.stream.color, 848, 480, rs.format.rgb8, 60)
    rig.pipelines[0].start.assert_called_once_with(cfg)
    intrinsics = rig.camera.intrinsics
    assert (intrinsics.width, intrinsics.height, intrinsics.fx, intrinsics.ppy) == (848, 480, 615.0, 242.5)
    assert rig.camera.depth_scale is None


def test_read_returns_a_copy_of_the_rgb_frame() -> None:
    rig = Rig(D435)
    rig.camera.open()
    frame = rig.camera.read()
    np.testing.assert_array_equal(frame.rgb, rig.rgb)
    assert frame.rgb is not rig.rgb and frame.depth is None
    rig.pipelines[0].wait_for_frames.assert_called_once_with(1000)
    rig.camera.close()
    rig.pipelines[0].stop.assert_called_once_with()


def test_depth_is_aligned_to_colour_and_in_metres(monkeypatch: pytest.MonkeyPatch) -> None:
    aligners = strict_class(rs.align)
    monkeypatch.setattr(rs, "align", aligners)
    rig = Rig(D435, options={"depth": True})
    rig.camera.open()
    (cfg,) = rig.configs.instances
    assert cfg.enable_stream.call_args_list[1].args == (rs.stream.depth, 640, 480, rs.format.z16, 30)
    aligners.assert_called_once_with(rs.stream.color)
    (aligner,) = aligners.instances
    aligner.process.return_value = rig.pipelines[0].wait_for_frames.return_value
    frame = rig.camera.read()
    aligner.process.assert_called_once()
    assert frame.depth.dtype == np.float32 and frame.depth.shape == (480, 640)
    np.testing.assert_allclose(frame.depth, 1.5)


def test_two_cameras_each_bind_their_own_device() -> None:
    front = Rig(D435, D405, serial=D435[0])
    wrist = Rig(D435, D405, serial=D405[0])
    front.camera.open()
    wrist.camera.open()
    front.configs.instances[0].enable_device.assert_called_once_with(D435[0])
    wrist.configs.instances[0].enable_device.assert_called_once_with(D405[0])


def test_unknown_serial_lists_the_connected_devices() -> None:
    rig = Rig(D435, D405, serial="000000000000")
    with pytest.raises(CameraError) as info:
        rig.camera.open()
    message = str(info.value)
    assert "no RealSense device with serial '000000000000'" in message
    assert f"{D435[0]} ({D435[1]}), {D405[0]} ({D405[1]})" in message
    assert not rig.pipelines


def test_several_devices_without_a_serial_is_ambiguous() -> None:
    rig = Rig(D435, D405)
    with pytest.raises(CameraError, match=r"several RealSense devices .* set cameras\.wrist\.serial"):
        rig.camera.open()


def test_single_device_is_used_without_a_serial() -> None:
    rig = Rig(D405)
    rig.camera.open()
    rig.configs.instances[0].enable_device.assert_called_once_with(D405[0])


def test_unsupported_mode_names_it() -> None:
    rig = Rig(D435, width=1000, height=1000)
    rig.camera._pipeline_factory = lambda: _failing_pipeline()
    with pytest.raises(CameraError, match=r"cannot stream 1000x1000 at 30 fps: Couldn't resolve requests"):
        rig.camera.open()


def _failing_pipeline() -> Any:
    pipeline = strict_autospec(rs.pipeline)
    pipeline.start.side_effect = RuntimeError("Couldn't resolve requests")
    return pipeline


def test_frame_timeout_is_a_camera_error() -> None:
    rig = Rig(D435)
    rig.camera.open()
    rig.pipelines[0].wait_for_frames.side_effect = RuntimeError("Frame didn't arrive within 1000")
    with pytest.raises(CameraError, match=rf"RealSense {D435[0]} delivered no frame"):
        rig.camera.read()


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"dept": True}, "cameras.wrist.options.dept"),
        ({"depth": "yes"}, "cameras.wrist.options.depth"),
        ({"timeout_ms": 0}, "cameras.wrist.options.timeout_ms"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RealSenseCamera(CameraConfig(name="wrist", kind="realsense", options=options))
    assert info.value.field == field


def test_probe_finds_a_device_without_starting_a_stream() -> None:
    context = make_context(D435)
    RealSenseCamera.probe(CameraConfig(name="wrist", kind="realsense"), context_factory=lambda: context)
    context.query_devices.assert_called_once_with()


def test_probe_without_a_device_or_with_an_unknown_serial_says_so() -> None:
    config = CameraConfig(name="wrist", kind="realsense")
    empty = make_context()
    with pytest.raises(CameraError, match=f"^{NO_DEVICE}"):
        RealSenseCamera.probe(config, context_factory=lambda: empty)
    other = make_context(D435)
    with pytest.raises(
        CameraError, match=f"no RealSense device with serial '{D405[0]}'; connected: {D435[0]}"
    ):
        RealSenseCamera.probe(
            CameraConfig(name="wrist", kind="realsense", serial=D405[0]), context_factory=lambda: other
        )


def test_the_capture_time_is_the_exposure_not_the_delivery() -> None:
    """A frame that waited 30 ms in the SDK's queue is 30 ms old when the agent gets it."""
    rig = Rig(D435)
    rig.camera.open()
    before = time.monotonic()
    frame = rig.camera.read()
    after = time.monotonic()
    assert before - 0.03 - 0.005 <= frame.time_s <= after - 0.03 + 0.005


@pytest.mark.parametrize(
    ("domain", "age_s"),
    [
        (rs.timestamp_domain.hardware_clock, 0.03),  # device clock: not comparable with the host's
        (rs.timestamp_domain.global_time, -5.0),  # from the future: a clock step
        (rs.timestamp_domain.global_time, 3600.0),  # an hour old: not a clock to trust
    ],
)
def test_an_untrusted_timestamp_falls_back_to_the_delivery_time(domain: Any, age_s: float) -> None:
    rig = Rig(D435)
    rig.camera.open()
    rig.color.get_frame_timestamp_domain.return_value = domain
    rig.exposure_age_s = age_s
    assert capture_time(rig.color, 123.0) == 123.0


def test_a_repeated_frame_number_is_a_stalled_stream() -> None:
    rig = Rig(D435)
    rig.camera.open()
    rig.camera.read()
    rig.color.get_frame_number.side_effect = None
    rig.color.get_frame_number.return_value = 7
    rig.camera.read()
    with pytest.raises(CameraError, match=r"camera 'wrist': RealSense .* delivered frame 7 again"):
        rig.camera.read()

"""``robot-agent`` with real drivers and nothing attached: it must fail fast, naming what is missing.

Run as a subprocess, as a user would, with the real SDKs: nothing listens on 127.0.0.2 and no
RealSense camera is plugged in here. No inference server runs either: the robot and the cameras
are checked before the agent waits for one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyrealsense2 as rs
import pytest

LIMIT_S = 15.0


def run_agent(*args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "robot_agent", *args, "--metrics-port", "0"],
        capture_output=True,
        text=True,
        timeout=LIMIT_S + 5,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.parametrize(("kind", "name"), [("xarm", "xArm"), ("franka", "Franka")])
def test_unreachable_robot_exits_non_zero_naming_the_address(kind: str, name: str) -> None:
    code, output, elapsed = run_agent("--robot", kind, "--robot-ip", "127.0.0.2")
    assert code != 0, output
    assert elapsed < LIMIT_S
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"DriverError: no {name} at 127.0.0.2"), output


def test_missing_realsense_camera_says_so(tmp_path: Path) -> None:
    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense device is connected to this machine")
    config = tmp_path / "agent.toml"
    config.write_text('[cameras.wrist]\nkind = "realsense"\n')
    code, output, elapsed = run_agent("--config", str(config))
    assert code != 0, output
    assert elapsed < LIMIT_S
    assert "CameraError: camera 'wrist': no RealSense device was found" in output, output


def test_camera_flag_realsense_without_a_device_says_so() -> None:
    """No camera configured: the policy's cameras would be created only from its spec, yet the
    missing device is reported without a server."""
    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense device is connected to this machine")
    code, output, elapsed = run_agent("--camera", "realsense")
    assert code != 0, output
    assert elapsed < LIMIT_S
    last = output.strip().splitlines()[-1]
    assert last.startswith("CameraError: default_camera is 'realsense' but no RealSense device was found"), (
        output
    )


def test_camera_flag_usb_without_a_device_says_so() -> None:
    if Path("/dev/video0").exists():
        pytest.skip("a video device is connected to this machine")
    code, output, elapsed = run_agent("--camera", "usb")
    assert code != 0, output
    assert elapsed < LIMIT_S
    last = output.strip().splitlines()[-1]
    assert last.startswith("CameraError: default_camera is 'usb' but cannot open USB camera 0"), output

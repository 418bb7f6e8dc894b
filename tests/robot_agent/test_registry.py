"""Drivers and cameras by name, imported only when chosen; a missing extra gives its pip line."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

from robot_agent.cameras import CAMERAS, camera_class
from robot_agent.config import CameraConfig, RobotConfig
from robot_agent.drivers import DRIVERS, create_robot, driver_class
from robot_agent.errors import ConfigError, MissingExtra


def test_sim_is_built_by_name() -> None:
    robot = create_robot(RobotConfig(kind="sim", options={"engine": "kinematic"}))
    assert type(robot).__name__ == "SimRobot"
    assert camera_class("sim").__name__ == "SimCamera"


def test_unknown_kinds_name_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=re.escape("robot.kind is 'ur5', expected one of franka, sim, xarm")
    ):
        driver_class("ur5")
    with pytest.raises(ConfigError, match=re.escape("cameras.wrist.kind is 'kinect'")):
        from robot_agent.cameras import create_camera

        create_camera(CameraConfig(name="wrist", kind="kinect"))


def test_a_missing_sdk_answers_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # import fails as if not installed
    monkeypatch.delitem(sys.modules, "robot_agent.cameras.realsense", raising=False)
    with pytest.raises(MissingExtra, match=r"pip install 'vla-deploy\[realsense\]'"):
        camera_class("realsense")


@pytest.mark.parametrize("table", [DRIVERS, CAMERAS])
def test_every_entry_is_module_colon_class(table: dict[str, str]) -> None:
    for target in table.values():
        module, _, attr = target.partition(":")
        assert module.startswith("robot_agent.") and attr[:1].isupper()


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_every_driver_resolves_to_a_robot(kind: str) -> None:
    from robot_agent.drivers.base import Robot

    pytest.importorskip({"franka": "panda_py", "xarm": "xarm"}.get(kind, "numpy"))
    assert issubclass(driver_class(kind), Robot)


@pytest.mark.parametrize("kind", sorted(CAMERAS))
def test_every_camera_resolves_to_a_camera(kind: str) -> None:
    from robot_agent.cameras.base import Camera

    pytest.importorskip({"realsense": "pyrealsense2"}.get(kind, "cv2"))
    assert issubclass(camera_class(kind), Camera)


def test_from_config_is_declared_on_both_bases_a_wrapper_keeps_the_refusing_default() -> None:
    from robot_agent.cameras.base import Camera
    from robot_agent.drivers.sim import SimRobot
    from robot_agent.sim.arm import SimArm

    assert isinstance(
        camera_class("sim").from_config(CameraConfig(name="front"), robot=SimRobot(SimArm())), Camera
    )

    class Wrapped(Camera):  # built around another camera, not from a config
        def open(self) -> None: ...
        def read(self) -> Any: ...

    with pytest.raises(NotImplementedError, match="Wrapped is not built from a config"):
        Wrapped.from_config(CameraConfig(name="front"))

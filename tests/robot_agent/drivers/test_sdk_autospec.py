"""The autospec helper itself: it must refuse what the real pybind11 SDK would refuse."""

from __future__ import annotations

import numpy as np
import panda_py
import pyrealsense2 as rs
import pytest
from panda_py import controllers, libfranka
from sdk_autospec import pybind_signatures, strict_autospec, strict_class


def test_wrong_arguments_to_a_pybind_method_fail() -> None:
    controller = strict_autospec(controllers.CartesianImpedance)
    controller.set_control(np.zeros(3), np.array([0, 0, 0, 1.0]))  # what the SDK accepts
    controller.set_control(np.zeros(3), np.array([0, 0, 0, 1.0]), q_nullspace=np.zeros(7))
    with pytest.raises(TypeError, match="fits none of its signatures"):
        controller.set_control(np.zeros(3))  # orientation missing
    with pytest.raises(TypeError):
        controller.set_control(np.zeros(3), np.zeros(4), nullspace=np.zeros(7))  # misspelt keyword


def test_missing_method_fails() -> None:
    panda = strict_autospec(panda_py.Panda)
    with pytest.raises(AttributeError):
        panda.move_to_home()


def test_overloads_are_all_accepted() -> None:
    signatures = pybind_signatures("enable_stream", rs.config.enable_stream.__doc__)
    assert len(signatures) == 6
    cfg = strict_autospec(rs.config)
    cfg.enable_stream(rs.stream.color, 640, 480, rs.format.rgb8, 30)
    cfg.enable_stream(rs.stream.depth)
    with pytest.raises(TypeError):
        cfg.enable_stream(rs.stream.color, 0, 640, 480, rs.format.rgb8, 30, 1)  # seven: no overload


def test_constructor_arguments_are_checked() -> None:
    gripper_class = strict_class(libfranka.Gripper)
    gripper_class("172.16.0.2")
    with pytest.raises(TypeError):
        gripper_class("172.16.0.2", 1337)
    assert len(gripper_class.instances) == 1

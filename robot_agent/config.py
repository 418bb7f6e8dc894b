"""What the agent runs: one frozen config object, every default in one place.

Built from ``--config agent.toml`` with flags overriding (``cli.py``), validated once before
anything connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CameraConfig", "RobotConfig"]


@dataclass(frozen=True)
class RobotConfig:
    """The ``[robot]`` section. ``options`` holds driver-specific keys, validated by the driver.

    Example::

        [robot]
        kind = "franka"
        ip = "172.16.0.2"
    """

    kind: str = "sim"  # sim | franka | xarm
    ip: str | None = None
    connect_timeout_s: float = 5.0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CameraConfig:
    """One ``[cameras.NAME]`` section; ``name`` must match a camera of the policy spec."""

    name: str
    kind: str = "sim"  # sim | realsense | usb
    width: int = 640
    height: int = 480
    fps: int = 30
    serial: str | None = None  # RealSense serial number
    device: str | int | None = None  # USB: index or /dev/video path
    options: Mapping[str, Any] = field(default_factory=dict)

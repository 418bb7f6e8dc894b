"""Robot drivers, one file per arm, picked by name (``[robot] kind``) and imported only when
chosen, so ``vla-deploy[agent]`` runs without any robot SDK installed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from robot_agent._importer import resolve

if TYPE_CHECKING:
    from robot_agent.config import RobotConfig
    from robot_agent.drivers.base import Robot

__all__ = ["DRIVERS", "EXTRAS", "create_robot", "driver_class"]

DRIVERS: dict[str, str] = {
    "sim": "robot_agent.drivers.sim:SimRobot",
    "franka": "robot_agent.drivers.franka:FrankaRobot",
    "xarm": "robot_agent.drivers.xarm:XArmRobot",
}
#: The pip extra that brings each driver's SDK.
EXTRAS: dict[str, str] = {"sim": "agent", "franka": "franka", "xarm": "xarm"}


def driver_class(kind: str) -> type[Robot]:
    """The driver class registered as ``kind``."""
    return resolve(kind, DRIVERS, EXTRAS, what="robot", field="robot.kind")


def create_robot(config: RobotConfig) -> Robot:
    """Build (not connect) the robot ``config.kind`` names."""
    return driver_class(config.kind).from_config(config)

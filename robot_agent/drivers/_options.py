"""Readers for a driver's ``[robot.options]`` table: each checks one key and names it on error.

Drivers validate their own options (``RobotConfig.options`` is free-form); these keep the messages
uniform: ``robot.options.impedance is [1, 2]; expected 6 positive numbers``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from robot_agent.errors import ConfigError

__all__ = ["check_known", "choice", "flag", "integer", "number", "vector"]


def check_known(options: Mapping[str, Any], known: Collection[str], robot: str) -> None:
    """Refuse keys the driver does not read: a typo must not silently keep a default."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"robot.options.{unknown[0]} is not a {robot} option; known: {', '.join(sorted(known))}",
            field=f"robot.options.{unknown[0]}",
        )


def integer(options: Mapping[str, Any], key: str, default: int | None, *, low: int, high: int) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(
            f"robot.options.{key} is {value!r}; expected an integer in [{low}, {high}]",
            field=f"robot.options.{key}",
        )
    return value


def choice(options: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = options.get(key, default)
    if value not in allowed:
        raise ConfigError(
            f"robot.options.{key} is {value!r}; expected one of {', '.join(allowed)}",
            field=f"robot.options.{key}",
        )
    return str(value)


def number(
    options: Mapping[str, Any],
    key: str,
    default: float,
    *,
    low: float | None = None,
    high: float | None = None,
) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(
            f"robot.options.{key} is {value!r}; expected a number", field=f"robot.options.{key}"
        )
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(
            f"robot.options.{key} is {value!r}; expected a number in [{low}, {high}]",
            field=f"robot.options.{key}",
        )
    return float(value)


def flag(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(
            f"robot.options.{key} is {value!r}; expected true or false", field=f"robot.options.{key}"
        )
    return value


def vector(options: Mapping[str, Any], key: str, size: int, *, positive: bool) -> np.ndarray | None:
    if key not in options:
        return None
    value = options[key]
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.shape != (size,) or not np.all(np.isfinite(array)) or (positive and np.any(array <= 0)):
        raise ConfigError(
            f"robot.options.{key} is {value!r}; expected {size} {'positive ' if positive else ''}numbers",
            field=f"robot.options.{key}",
        )
    return array

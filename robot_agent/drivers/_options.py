"""Range checks for a driver's ``[robot.options]``, one message style for every driver.

Each driver's options are a frozen dataclass (``FrankaOptions``, ``XArmOptions``, ``SimOptions``)
built by the shared loader (``safety.config_loader``: unknown keys and types refused, naming
``robot.options.<key>``); its ``__post_init__`` checks the ranges with these helpers, so a
dataclass built in code is checked as one read from a file::

    robot.options.impedance is [1.0, 2.0]; expected 6 positive numbers
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from robot_agent.errors import ConfigError
from safety.config_loader import build

__all__ = ["SECTION", "build_options", "choice", "in_range", "vector"]

SECTION = "robot.options"
T = TypeVar("T")


def build_options(cls: type[T], options: Mapping[str, Any] | None) -> T:
    """Driver options ``cls`` from the ``[robot.options]`` table (``RobotConfig.options``).

    Raises :class:`ConfigError` naming ``robot.options.<key>`` for an unknown key (a typo must not
    silently keep a default), a wrong type or a value out of range.
    """
    return build(cls, options or {}, ConfigError, section=SECTION)


def choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    """Refuse ``value`` of option ``key`` unless it is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(
            f"{SECTION}.{key} is {value!r}; expected one of {', '.join(allowed)}", field=f"{SECTION}.{key}"
        )


def in_range(key: str, value: float | None, low: float | None = None, high: float | None = None) -> None:
    """Refuse ``value`` of option ``key`` outside ``[low, high]`` (``None``: unbounded; a ``None``
    value is an option not set)."""
    if value is None:
        return
    if (low is not None and value < low) or (high is not None and value > high):
        kind = "an integer" if isinstance(value, int) else "a number"
        raise ConfigError(
            f"{SECTION}.{key} is {value!r}; expected {kind} in [{low}, {high}]", field=f"{SECTION}.{key}"
        )


def vector(key: str, value: tuple[float, ...] | None, size: int, *, positive: bool) -> None:
    """Refuse ``value`` of option ``key`` unless it has ``size`` (positive) numbers; ``None``: not set."""
    if value is None:
        return
    if len(value) != size or (positive and not all(v > 0 for v in value)):
        raise ConfigError(
            f"{SECTION}.{key} is {list(value)!r}; expected {size} {'positive ' if positive else ''}numbers",
            field=f"{SECTION}.{key}",
        )

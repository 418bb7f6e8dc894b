"""The safety package's errors, one hierarchy::

    SafetyError
    └── SafetyConfigError   a [safety] table that cannot be used: names the field and the value

The shield itself never raises on bad *targets*: a bad target is a decision (hold), not an error.
"""

from __future__ import annotations

__all__ = ["SafetyConfigError", "SafetyError"]


class SafetyError(Exception):
    """Base class of every error raised by ``safety``."""


class SafetyConfigError(SafetyError, ValueError):
    """Raised when the ``[safety]`` configuration is invalid; ``field`` names the culprit."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

"""Jerk-limited following of a waypoint curve through Ruckig (online trajectory generation).

Each control tick Ruckig computes the next state (position, velocity, acceleration) that moves
toward a point a little ahead on the curve within per-axis velocity, acceleration and jerk limits.
It carries its state across chunks, so a chunk switch never jumps; ``reset`` puts it at rest at
the held pose when leaving hold.
"""

from __future__ import annotations

import numpy as np
from ruckig import InputParameter, OutputParameter, Result, Ruckig

__all__ = ["RuckigFollower"]


class RuckigFollower:
    """One Ruckig instance over all degrees of freedom, stepped once per control tick."""

    def __init__(
        self, control_dt: float, max_velocity: np.ndarray, max_acceleration: np.ndarray, max_jerk: np.ndarray
    ):
        self.dofs = len(max_velocity)
        self._otg = Ruckig(self.dofs, control_dt)
        self._input = InputParameter(self.dofs)
        self._output = OutputParameter(self.dofs)
        self._vmax = np.asarray(max_velocity, dtype=float)
        self._input.max_velocity = self._vmax.tolist()
        self._input.max_acceleration = np.asarray(max_acceleration, dtype=float).tolist()
        self._input.max_jerk = np.asarray(max_jerk, dtype=float).tolist()
        self._dt = control_dt
        self._initialised = False

    def reset(self, position: np.ndarray) -> None:
        """Start at rest at ``position``."""
        self._input.current_position = np.asarray(position, dtype=float).tolist()
        self._input.current_velocity = [0.0] * self.dofs
        self._input.current_acceleration = [0.0] * self.dofs
        self._initialised = True

    @property
    def initialised(self) -> bool:
        return self._initialised

    def step(self, target: np.ndarray, target_velocity: np.ndarray) -> np.ndarray:
        """Advance one control period toward ``target`` (moving at ``target_velocity``)."""
        self._input.target_position = np.asarray(target, dtype=float).tolist()
        # Ruckig refuses a target velocity above the limit; the curve may ask for one briefly.
        vel = np.clip(target_velocity, -0.99 * self._vmax, 0.99 * self._vmax)
        self._input.target_velocity = vel.tolist()
        try:
            result = self._otg.update(self._input, self._output)
        except ValueError as exc:  # an error code the binding's Result lacks: "-101 is not a valid Result"
            raise RuntimeError(f"ruckig failed: {exc} (target {np.round(target, 3).tolist()})") from exc
        if result not in (Result.Working, Result.Finished):
            raise RuntimeError(f"ruckig failed: {result}")
        self._output.pass_to_input(self._input)
        return np.array(self._output.new_position)

"""Jerk-limited following of a waypoint curve through Ruckig (online trajectory generation).

Each control tick Ruckig computes the next state (position, velocity, acceleration) that moves
toward a point a little ahead on the curve within per-axis velocity, acceleration and jerk limits.
It carries its state across chunks, so a chunk switch never jumps; ``reset`` puts it at rest at
the held pose when leaving hold.

Bounded columns (the gripper, 0 closed .. 1 open) stay within the range of the positions the
follower was given since its last reset (the reset pose and every target). Aiming at a target at
rest, each time-optimal plan stops at or before it, so in exact arithmetic the follower never
leaves that range; Ruckig's floating point did, by an ulp (a gripper at -2e-18 below 0.0 found
by hypothesis), so the position is clipped to the range and, where it was, the column's velocity
and acceleration set to zero, as at a hard stop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ruckig import InputParameter, OutputParameter, Result, Ruckig

__all__ = ["RuckigFollower"]


class RuckigFollower:
    """One Ruckig instance over all degrees of freedom, stepped once per control tick.

    ``control_dt`` in s; limits ``[D]`` per degree of freedom, in the targets' units per s, s^2
    and s^3; ``bounded``: indices of the bounded columns (module docstring).
    """

    def __init__(
        self,
        control_dt: float,
        max_velocity: np.ndarray,
        max_acceleration: np.ndarray,
        max_jerk: np.ndarray,
        *,
        bounded: Sequence[int] = (),
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
        self._bounded = [int(c) for c in bounded]
        self._lo = np.zeros(len(self._bounded))  # the range given since reset, per bounded column
        self._hi = np.zeros(len(self._bounded))

    def reset(self, position: np.ndarray) -> None:
        """Start at rest at ``position``."""
        self._input.current_position = np.asarray(position, dtype=float).tolist()
        self._input.current_velocity = [0.0] * self.dofs
        self._input.current_acceleration = [0.0] * self.dofs
        self._initialised = True
        if self._bounded:
            self._lo = np.asarray(position, dtype=float)[self._bounded]
            self._hi = self._lo.copy()

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
        position = np.array(self._output.new_position)
        if self._bounded:
            self._keep_bounded(position, np.asarray(target, dtype=float)[self._bounded])
        return position

    def _keep_bounded(self, position: np.ndarray, target: np.ndarray) -> None:
        """Clip the bounded columns of ``position`` (in place, and in the follower's state) to
        the range given since reset, ``target`` included."""
        np.minimum(self._lo, target, out=self._lo)
        np.maximum(self._hi, target, out=self._hi)
        cols = self._bounded
        clipped = np.clip(position[cols], self._lo, self._hi)
        off = clipped != position[cols]
        if not off.any():
            return
        position[cols] = clipped
        state = self._input
        pos, vel, acc = state.current_position, state.current_velocity, state.current_acceleration
        for c, value, hit in zip(cols, clipped.tolist(), off.tolist(), strict=True):
            if hit:
                pos[c], vel[c], acc[c] = value, 0.0, 0.0
        state.current_position, state.current_velocity, state.current_acceleration = pos, vel, acc

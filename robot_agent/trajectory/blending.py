"""How a new chunk takes over from the one being executed, on the new chunk's time grid.

``old`` is the plan being executed, sampled at the new waypoints' times where it still has them:

- ``replace``: the new chunk wins outright.
- ``crossfade``: the new chunk's weight rises linearly over its first N overlapping actions,
  ``w = (j + 1) / (N + 1)``, then it is used alone.
- ``ensemble`` (ACT temporal ensembling): every prediction made for a time step is averaged with
  weights ``exp(-m * i)``, ``i = 0`` for the oldest. Kept incrementally: each waypoint carries the
  sum of weights so far and how many predictions it merges, so nothing but the current plan is
  stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Blended", "blend"]


@dataclass(frozen=True)
class Blended:
    values: np.ndarray  # [n, D]
    weight_sums: np.ndarray  # [n], ensemble bookkeeping
    counts: np.ndarray  # [n], predictions merged per waypoint


def blend(
    mode: str,
    new: np.ndarray,
    old: np.ndarray | None,
    old_weight_sums: np.ndarray | None = None,
    old_counts: np.ndarray | None = None,
    *,
    crossfade_steps: int = 3,
    ensemble_decay: float = 0.1,
) -> Blended:
    """Blend ``new`` waypoints ``[n, D]`` with ``old`` sampled at the same times (``NaN`` rows
    where the old plan has nothing there)."""
    n = new.shape[0]
    ones = np.ones(n)
    if old is None or mode == "replace":
        return Blended(new.copy(), ones, ones.copy())
    overlap = ~np.isnan(old).any(axis=1)
    out = new.copy()
    if mode == "crossfade":
        for j in range(min(crossfade_steps, n)):
            if overlap[j]:
                w = (j + 1) / (crossfade_steps + 1)
                out[j] = w * new[j] + (1.0 - w) * old[j]
        return Blended(out, ones, ones.copy())
    if mode == "ensemble":
        wsum = np.where(overlap, old_weight_sums if old_weight_sums is not None else 1.0, 0.0)
        count = np.where(overlap, old_counts if old_counts is not None else 1.0, 0.0)
        w_new = np.exp(-ensemble_decay * count)
        safe_old = np.where(overlap[:, None], old, 0.0)
        out = (wsum[:, None] * safe_old + w_new[:, None] * new) / (wsum + w_new)[:, None]
        return Blended(out, wsum + w_new, count + 1.0)
    raise ValueError(f"unknown blend mode {mode!r}")

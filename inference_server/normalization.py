"""Input and output normalisation, so models see the statistics they were trained on.

Models are trained on normalised state and actions; the manifest carries the statistics and the
server applies them on both sides, so a bundle never needs code for it and the wire always
carries physical units. A missing section means identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Normalizer", "Stats"]


@dataclass(frozen=True, eq=False)
class Stats:
    """Per-entry ``mean`` and ``std``: ``normalised = (x - mean) / std``."""

    mean: np.ndarray
    std: np.ndarray

    def normalize(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((x - self.mean) / self.std).astype(np.float32, copy=False)
        return out

    def unnormalize(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = (x * self.std + self.mean).astype(np.float32, copy=False)
        return out


@dataclass(frozen=True, eq=False)
class Normalizer:
    """State statistics applied before the model, action statistics undone after it."""

    state: Stats | None = None
    actions: Stats | None = None

    def normalize_state(self, state: np.ndarray) -> np.ndarray:
        """``state`` is ``[B, S]``."""
        return state.astype(np.float32, copy=False) if self.state is None else self.state.normalize(state)

    def normalize_actions(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` (``[..., A]``, e.g. an agent's ``prev_actions`` ``[n, A]``) into the model's space."""
        return (
            actions.astype(np.float32, copy=False)
            if self.actions is None
            else self.actions.normalize(actions)
        )

    def unnormalize_actions(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` is ``[B, H, A]``; statistics broadcast over the last axis."""
        return (
            actions.astype(np.float32, copy=False)
            if self.actions is None
            else self.actions.unnormalize(actions)
        )

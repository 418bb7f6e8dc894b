"""Where the end effector may be: the workspace box minus the keep-out zones.

Two jobs. ``project`` moves a *target* to a nearby allowed point (or says it cannot). ``free_box``
gives the motion filter an axis-aligned box around the *current* position that lies wholly in
the allowed set: the filter can then guarantee, axis by axis, that braking stays inside it.
Cutting a box around a sphere or a slanted plane cannot follow its surface, so there the free
box is a little smaller than the allowed set: conservative near those zones, never wrong.
"""

from __future__ import annotations

import numpy as np

from .config import Box, KeepOut, KeepOutBox, KeepOutHalfSpace, KeepOutSphere

__all__ = ["Zones"]

_PUSH = 1e-9  # metres past a zone's surface, so a projected point is strictly outside it


class Zones:
    """The allowed set, precomputed as arrays for the per-tick hot path."""

    def __init__(self, workspace: Box, keep_out: tuple[KeepOut, ...]) -> None:
        self.lo = np.asarray(workspace.min, dtype=float)
        self.hi = np.asarray(workspace.max, dtype=float)
        self.keep_out = keep_out
        self._lo_list = self.lo.tolist()
        self._hi_list = self.hi.tolist()
        # Boxes the free box must avoid: box zones and the bounding cubes of spheres (with
        # the sphere itself, to tell the cube's empty corners from the ball).
        self._boxes: list[tuple[np.ndarray, np.ndarray, np.ndarray | None, float]] = []
        for z in keep_out:
            if isinstance(z, KeepOutBox):
                self._boxes.append(
                    (np.asarray(z.min, dtype=float), np.asarray(z.max, dtype=float), None, 0.0)
                )
            elif isinstance(z, KeepOutSphere):
                c = np.asarray(z.center, dtype=float)
                self._boxes.append((c - z.radius, c + z.radius, c, float(z.radius)))
        self._planes = [
            (np.asarray(z.normal, dtype=float), float(z.offset))
            for z in keep_out
            if isinstance(z, KeepOutHalfSpace)
        ]

    # --- targets ----------------------------------------------------------------------------

    def violation(self, p: np.ndarray, tol: float = 0.0) -> str | None:
        """``"workspace"`` or ``"keep_out"`` if ``p`` is not allowed, else None."""
        for x, lo, hi in zip(p.tolist(), self._lo_list, self._hi_list, strict=True):
            if not lo - tol <= x <= hi + tol:
                return "workspace"
        for z in self.keep_out:
            if _inside(z, p, tol):
                return "keep_out"
        return None

    def project(self, p: np.ndarray) -> np.ndarray | None:
        """A nearby allowed point: clamp into the box, push out of each zone; None if stuck.

        Pushing out of one zone can push into another or out of the box, so it repeats a few
        times; overlapping zones that trap the point give None and the shield holds.
        """
        q: np.ndarray = np.minimum(np.maximum(p, self.lo), self.hi)
        for _ in range(4):
            moved = False
            for z in self.keep_out:
                if _inside(z, q, 0.0):
                    q = np.minimum(np.maximum(_push_out(z, q), self.lo), self.hi)
                    moved = True
            if not moved:
                return q
        return q if self.violation(q) is None else None

    # --- motion -----------------------------------------------------------------------------

    def free_box(self, p: np.ndarray, toward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An axis-aligned box containing ``p``, inside the allowed set, as large as is cheap.

        For each zone in the way, cut one face: the one that keeps ``toward`` (the target)
        inside when possible, else the one with the most room. A zone that contains ``p``
        (the arm was seeded inside it) is skipped, so the arm may leave it.
        """
        if not self.keep_out and self.violation(p) is None:
            return self.lo, self.hi  # the same objects: the caller sees at once nothing changed
        lo = np.minimum(self.lo, p)
        hi = np.maximum(self.hi, p)
        for zlo, zhi, center, radius in self._boxes:
            if np.any(zhi <= lo) or np.any(zlo >= hi):
                continue  # already clear of the box
            if center is not None:
                d = np.minimum(np.maximum(center, lo), hi) - center
                if float(d @ d) >= radius * radius:
                    continue  # the box misses the ball
            below = p <= zlo  # p is on the low side of the zone on this axis: cut hi there
            above = p >= zhi
            if not (below.any() or above.any()):
                if center is not None and float((p - center) @ (p - center)) >= radius * radius:
                    # In a corner of the cube, outside the ball: shrink toward p instead.
                    lo, hi = _shrink_off_ball(p, lo, hi, center, radius)
                continue  # otherwise p is inside the zone: let it out
            # Room kept by each possible cut; prefer cuts that keep the target in.
            room_hi = np.where(below, zlo - lo, -np.inf)
            room_lo = np.where(above, hi - zhi, -np.inf)
            keeps_hi = below & (toward <= zlo)
            keeps_lo = above & (toward >= zhi)
            score_hi = room_hi + np.where(keeps_hi, 1e6, 0.0)
            score_lo = room_lo + np.where(keeps_lo, 1e6, 0.0)
            k_hi, k_lo = int(np.argmax(score_hi)), int(np.argmax(score_lo))
            if score_hi[k_hi] >= score_lo[k_lo]:
                hi[k_hi] = min(hi[k_hi], zlo[k_hi])
            else:
                lo[k_lo] = max(lo[k_lo], zhi[k_lo])
        for n, c in self._planes:
            # Lowest value of n.x over the box is at the corner picked by the signs of n.
            corner = np.where(n > 0, lo, hi)
            low = float(n @ corner)
            if low >= c:
                continue
            slack = float(n @ p) - c
            if slack <= 0:
                continue  # p on the wrong side: let it out
            # Shrink the box toward p until that corner is on the plane.
            s = slack / (slack + (c - low))
            lo = np.where(n > 0, p + s * (lo - p), lo)
            hi = np.where(n < 0, p + s * (hi - p), hi)
        return lo, hi


def _shrink_off_ball(
    p: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scale the box toward p until its point nearest the centre is on or outside the ball."""
    good, bad = 0.0, 1.0  # scale factors: 0 is the point p itself, which is outside
    for _ in range(40):
        mid = 0.5 * (good + bad)
        d = np.minimum(np.maximum(c, p + mid * (lo - p)), p + mid * (hi - p)) - c
        if float(d @ d) >= r * r:
            good = mid
        else:
            bad = mid
    return p + good * (lo - p), p + good * (hi - p)


def _inside(z: KeepOut, p: np.ndarray, tol: float) -> bool:
    """Strictly inside the zone by more than ``tol`` (its surface is allowed)."""
    if isinstance(z, KeepOutBox):
        return bool(np.all(p > np.asarray(z.min) + tol) and np.all(p < np.asarray(z.max) - tol))
    if isinstance(z, KeepOutSphere):
        d = p - np.asarray(z.center)
        return float(d @ d) < (z.radius - tol) ** 2 if z.radius > tol else False
    return float(np.asarray(z.normal) @ p) < z.offset - tol


def _push_out(z: KeepOut, p: np.ndarray) -> np.ndarray:
    """Nearest point just outside one zone."""
    if isinstance(z, KeepOutBox):
        lo, hi = np.asarray(z.min), np.asarray(z.max)
        d_lo, d_hi = p - lo, hi - p
        k_lo, k_hi = int(np.argmin(d_lo)), int(np.argmin(d_hi))
        q = p.copy()
        if d_lo[k_lo] <= d_hi[k_hi]:
            q[k_lo] = lo[k_lo] - _PUSH
        else:
            q[k_hi] = hi[k_hi] + _PUSH
        return q
    if isinstance(z, KeepOutSphere):
        c = np.asarray(z.center)
        d = p - c
        n = float(np.linalg.norm(d))
        u = d / n if n > 1e-12 else np.array([0.0, 0.0, 1.0])
        return c + u * (z.radius + _PUSH)
    normal = np.asarray(z.normal)
    return p + (z.offset - float(normal @ p) + _PUSH) * normal

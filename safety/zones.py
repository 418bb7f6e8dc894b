"""Where the end effector may be: the workspace box minus the keep-out zones.

Two jobs. ``project`` moves a *target* to a nearby allowed point (or says it cannot). ``free_box``
gives the motion filter an axis-aligned box around the *current* position that lies wholly in
the allowed set: the filter can then guarantee, axis by axis, that braking stays inside it.
Cutting a box around a sphere or a slanted plane cannot follow its surface, so there the free
box is a little smaller than the allowed set: conservative near those zones, never wrong.

Commands keep ``margin`` metres away from every keep-out zone (``safety.keep_out_margin_m``):
the zones are grown by it here, so that the arm's own tracking error cannot carry it into the
zone itself. A third job follows from that: when the arm is already inside (it was seeded
there after a hold, having strayed further than the margin), ``escape`` says which way each
axis may move so that every penetration depth only decreases, and where the nearest way out is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import Box, KeepOut, KeepOutBox, KeepOutHalfSpace, KeepOutSphere

__all__ = ["Zones", "inflate"]

_PUSH = 1e-9  # metres past a zone's surface, so a projected point is strictly outside it
_PROJECT_ROUNDS = 64  # only a target that needs them pays for them


class Zones:
    """The allowed set, precomputed as arrays for the per-tick hot path."""

    def __init__(self, workspace: Box, keep_out: tuple[KeepOut, ...], margin: float = 0.0) -> None:
        self.lo = np.asarray(workspace.min, dtype=float)
        self.hi = np.asarray(workspace.max, dtype=float)
        #: The zones as configured (what the arm itself must never enter)...
        self.raw_keep_out = keep_out
        #: ...and grown by ``margin`` (what commands keep out of).
        self.keep_out = tuple(inflate(z, margin) for z in keep_out) if margin > 0 else keep_out
        self.margin = margin
        keep_out = self.keep_out
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
        self._fast = [_as_floats(z) for z in keep_out]
        self._fast_raw = [_as_floats(z) for z in self.raw_keep_out]
        self._planes = [
            (np.asarray(z.normal, dtype=float), float(z.offset))
            for z in keep_out
            if isinstance(z, KeepOutHalfSpace)
        ]

    # --- targets ----------------------------------------------------------------------------

    def violation(self, p: np.ndarray, tol: float = 0.0) -> str | None:
        """``"workspace"`` or ``"keep_out"`` if ``p`` is not allowed, else None."""
        pl = p.tolist()
        for x, lo, hi in zip(pl, self._lo_list, self._hi_list, strict=True):
            if not lo - tol <= x <= hi + tol:
                return "workspace"
        if _first_inside(self._fast, pl, tol) is not None:
            return "keep_out"
        return None

    def project(self, p: np.ndarray) -> np.ndarray | None:
        """A nearby allowed point: clamp into the box, push out of each zone; None if stuck.

        Pushing out of one zone can push into another or out of the box, so it repeats:
        alternating projections onto convex sets converge linearly (a slanted plane against a
        wall of the box at 53 degrees: depth x 0.36 per round, under the 1e-9 push in about 20
        rounds); overlapping zones that trap the point give None and the shield holds.
        """
        q: np.ndarray = np.minimum(np.maximum(p, self.lo), self.hi)
        for _ in range(_PROJECT_ROUNDS):
            moved = False
            for z in self.keep_out:
                if _inside(z, q, 0.0):
                    q = np.minimum(np.maximum(_push_out(z, q), self.lo), self.hi)
                    moved = True
            if not moved:
                return q
        return q if self.violation(q) is None else None

    def penetration(self, p: np.ndarray) -> np.ndarray:
        """How deep ``p`` is in each forbidden region, metres, 0 where it is allowed.

        Shape ``(3 + len(keep_out),)``: how far outside the workspace box on x, y, z, then the
        depth in each (grown) keep-out zone: the distance to its nearest exit (a box's nearest
        face, a ball's surface along the radius, a plane along its normal).
        """
        outside = np.maximum(np.maximum(self.lo - p, p - self.hi), 0.0)
        return np.concatenate([outside, [_depth(z, p) for z in self.keep_out]])

    def escape(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """None if ``p`` is allowed; else ``(up_only, down_only, exit)`` to leave monotonically.

        ``up_only[k]``: axis k may only increase (``down_only`` the mirror; both: it must stay).
        Moving so, no penetration depth of :meth:`penetration` can grow: outside the box each
        outside axis moves back in; in a plane's half-space each axis moves along the sign of
        the normal; in a ball each axis moves away from the centre (so every coordinate's
        distance to it, hence the distance, grows); in a box each axis moves toward its nearer
        face (so the distance to the nearest face shrinks). ``exit`` is the nearest allowed
        point (:meth:`project`), kept to those directions; ``p`` itself if none is reachable.
        """
        if self.violation(p) is None:
            return None
        up = p < self.lo
        down = p > self.hi
        for z in self.keep_out:
            if _inside(z, p, 0.0):
                z_up, z_down = _directions(z, p)
                up = up | z_up
                down = down | z_down
        exit_point = self.project(p)
        if exit_point is None:
            exit_point = p.copy()
        exit_point = np.where(up, np.maximum(exit_point, p), exit_point)
        exit_point = np.where(down, np.minimum(exit_point, p), exit_point)
        return up, down, exit_point

    def arm_inside(self, p: np.ndarray) -> tuple[int, float] | None:
        """``(index, depth)`` of the first configured (not grown) zone ``p`` is inside, or None."""
        i = _first_inside(self._fast_raw, p.tolist(), 0.0)
        return None if i is None else (i, _depth(self.raw_keep_out[i], p))

    # --- motion -----------------------------------------------------------------------------

    def free_box(self, p: np.ndarray, toward: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """An axis-aligned box containing ``p``, inside the allowed set, as large as is cheap.

        For each zone in the way, cut one face: the one that keeps ``toward`` (the target)
        inside when possible, else the one with the most room. A zone that contains ``p``
        (the arm was seeded inside it) is skipped, and the workspace widened to contain ``p``,
        so the arm may leave them: the shield then moves it only along :meth:`escape`'s
        directions, and takes a new box (which excludes the zone) as soon as it is out.
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
                if float(d.dot(d)) >= radius * radius:
                    continue  # the box misses the ball
            below = p <= zlo  # p is on the low side of the zone on this axis: cut hi there
            above = p >= zhi
            if not (below.any() or above.any()):
                if center is not None and float((p - center).dot(p - center)) >= radius * radius:
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
            low = float(n.dot(corner))
            if low >= c:
                continue
            slack = float(n.dot(p)) - c
            if slack <= 0:
                continue  # p on the wrong side: let it out
            # Shrink the box toward p until that corner is on the plane.
            s = slack / (slack + (c - low))
            lo = np.where(n > 0, p + s * (lo - p), lo)
            hi = np.where(n < 0, p + s * (hi - p), hi)
        return lo, hi


def inflate(zone: KeepOut, margin: float) -> KeepOut:
    """``zone`` grown by ``margin`` metres on every side.

    A ball's radius and a half-space's offset grow by ``margin`` (the normal is a unit vector);
    a box grows by ``margin`` along each axis, a superset of the exact rounded box, so every
    point within ``margin`` of the zone is inside the grown one.
    """
    if isinstance(zone, KeepOutBox):
        (x0, y0, z0), (x1, y1, z1) = zone.min, zone.max
        lo = (float(x0) - margin, float(y0) - margin, float(z0) - margin)
        hi = (float(x1) + margin, float(y1) + margin, float(z1) + margin)
        return dataclasses.replace(zone, min=lo, max=hi)
    if isinstance(zone, KeepOutSphere):
        return dataclasses.replace(zone, radius=float(zone.radius) + margin)
    return dataclasses.replace(zone, offset=float(zone.offset) + margin)


def _depth(z: KeepOut, p: np.ndarray) -> float:
    """Distance from ``p`` to the nearest point outside the zone; 0 outside or on its surface."""
    if isinstance(z, KeepOutBox):
        d = min(float(np.min(p - np.asarray(z.min))), float(np.min(np.asarray(z.max) - p)))
        return d if d > 0.0 else 0.0
    if isinstance(z, KeepOutSphere):
        d = z.radius - float(np.linalg.norm(p - np.asarray(z.center)))
        return d if d > 0.0 else 0.0
    d = z.offset - float(np.asarray(z.normal).dot(p))
    return d if d > 0.0 else 0.0


def _directions(z: KeepOut, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per axis, whether leaving the zone from ``p`` may only increase / only decrease it.

    Ties go the way :func:`_push_out` goes (a box's low face, a ball's +axis), so the exit
    point and the directions agree.
    """
    if isinstance(z, KeepOutBox):
        toward_lo = (p - np.asarray(z.min)) <= (np.asarray(z.max) - p)
        return ~toward_lo, toward_lo
    if isinstance(z, KeepOutSphere):
        d = p - np.asarray(z.center)
        if float(np.linalg.norm(d)) <= 1e-12:
            # At the centre (to rounding) :func:`_push_out` leaves along +z: agree with it, or the
            # exit point and the directions contradict each other and the command never moves.
            d = np.array([0.0, 0.0, 1.0])
        away_up = d >= 0.0
        return away_up, ~away_up
    n = np.asarray(z.normal)
    return n > 0, n < 0


def _shrink_off_ball(
    p: np.ndarray, lo: np.ndarray, hi: np.ndarray, c: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray]:
    """Scale the box toward p until its point nearest the centre is on or outside the ball."""
    good, bad = 0.0, 1.0  # scale factors: 0 is the point p itself, which is outside
    for _ in range(40):
        mid = 0.5 * (good + bad)
        d = np.minimum(np.maximum(c, p + mid * (lo - p)), p + mid * (hi - p)) - c
        if float(d.dot(d)) >= r * r:
            good = mid
        else:
            bad = mid
    return p + good * (lo - p), p + good * (hi - p)


def _as_floats(z: KeepOut) -> tuple[str, tuple[float, ...]]:
    """A zone as plain floats for :func:`_first_inside` (numpy costs more than the maths)."""
    if isinstance(z, KeepOutBox):
        return "box", (*(float(x) for x in z.min), *(float(x) for x in z.max))
    if isinstance(z, KeepOutSphere):
        return "sphere", (*(float(x) for x in z.center), float(z.radius))
    return "half_space", (*(float(x) for x in z.normal), float(z.offset))


def _first_inside(zones: list[tuple[str, tuple[float, ...]]], p: list[float], tol: float) -> int | None:
    """Index of the first zone ``p`` is strictly inside by more than ``tol``; as :func:`_inside`."""
    x, y, z = p
    for i, (kind, f) in enumerate(zones):
        if kind == "box":
            if f[0] + tol < x < f[3] - tol and f[1] + tol < y < f[4] - tol and f[2] + tol < z < f[5] - tol:
                return i
        elif kind == "sphere":
            r = f[3] - tol
            dx, dy, dz = x - f[0], y - f[1], z - f[2]
            if r > 0 and dx * dx + dy * dy + dz * dz < r * r:
                return i
        elif f[0] * x + f[1] * y + f[2] * z < f[3] - tol:
            return i
    return None


def _inside(z: KeepOut, p: np.ndarray, tol: float) -> bool:
    """Strictly inside the zone by more than ``tol`` (its surface is allowed)."""
    if isinstance(z, KeepOutBox):
        return bool(np.all(p > np.asarray(z.min) + tol) and np.all(p < np.asarray(z.max) - tol))
    if isinstance(z, KeepOutSphere):
        d = p - np.asarray(z.center)
        return float(d.dot(d)) < (z.radius - tol) ** 2 if z.radius > tol else False
    return float(np.asarray(z.normal).dot(p)) < z.offset - tol


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
    return p + (z.offset - float(normal.dot(p)) + _PUSH) * normal

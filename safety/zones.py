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

The tool (``safety.tool``): points in the TCP frame that bound the tool. Given a pose,
``tool_penetration`` says how far the deepest of them is below the workspace floor and inside
each grown zone; ``project_tool`` moves a target's TCP so that all of them are out at the given
orientations; ``tool_floor`` bounds, for any rotation about the vertical, how far the tool
reaches below its TCP (the motion filter's floor for the TCP).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .compiled import NUMPY_DOT_FUSED, dot3, jit, matmul_rounding
from .config import Box, KeepOut, KeepOutBox, KeepOutHalfSpace, KeepOutSphere
from .rotation_kernels import q_matrix
from .rotations import quat_to_matrix

__all__ = ["Zones", "inflate"]

_PUSH = 1e-9  # metres past a zone's surface, so a projected point is strictly outside it
_PROJECT_ROUNDS = 64  # only a target that needs them pays for them
_TOOL_ROUNDS = 32  # the tool's projection: compiled rounds (a few microseconds each at most)


class Zones:
    """The allowed set, precomputed as arrays for the per-tick hot path."""

    def __init__(
        self,
        workspace: Box,
        keep_out: tuple[KeepOut, ...],
        margin: float = 0.0,
        tool: np.ndarray | None = None,
    ) -> None:
        """``tool``: the tool's points in the TCP frame, metres, shape ``(n, 3)`` (None or
        ``n = 0``: the TCP only)."""
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
        pts = np.zeros((0, 3)) if tool is None else np.asarray(tool, dtype=float).reshape(-1, 3)
        #: The tool's points, TCP frame, ``(n, 3)``; ``has_tool``: n > 0.
        self.tool = np.ascontiguousarray(pts)
        self.has_tool = len(pts) > 0
        self._tool_z = np.ascontiguousarray(pts[:, 2])
        self._tool_rho = np.ascontiguousarray(np.hypot(pts[:, 0], pts[:, 1]))
        # The zones for the kernel: kind (0 box, 1 ball, 2 plane) and six parameters each.
        self._kinds = np.array([_KIND[z.kind] for z in keep_out], dtype=np.int64)
        self._params = np.zeros((len(keep_out), 6))
        for k, (_, f) in enumerate(self._fast):
            self._params[k, : len(f)] = f
        # The highest floor for the tool's lowest point: the workspace's, or a level plane's
        # (a table zone, normal straight up) above it. Planes at a slant are left to the check.
        level = [c for n, c in self._planes if abs(n[0]) < 1e-12 and abs(n[1]) < 1e-12 and n[2] > 0]
        self.tool_floor_z = max([float(self.lo[2]), *level])
        self._tool_out = np.zeros(1 + len(keep_out))
        # No point is farther than this from the TCP (m): beyond it from everything, no
        # orientation can put one in (tool_clear, on plain floats).
        self._tool_reach = float(np.linalg.norm(pts, axis=1).max()) * (1 + 1e-9) + 1e-9 if len(pts) else 0.0
        self._floor_z = float(self.lo[2])
        self._tool_zero = np.zeros(1 + len(keep_out))
        #: For kernels: the grown zones (kind 0 box, 1 ball, 2 plane, and six parameters each),
        #: the workspace box (rows min, max), the tool points' axial and radial offsets, the
        #: tool's reach or -1.0 without tool points.
        self.kernel_kinds, self.kernel_params = self._kinds, self._params
        self.kernel_box = np.stack([self.lo, self.hi])
        self.kernel_tool_zr = np.stack([self._tool_z, self._tool_rho])  # (2, n): axial, radial
        self.tool_reach_or_none = self._tool_reach if self.has_tool else -1.0
        #: How numpy rounds the tool's offsets (tool @ R.T): project_tool's kernel rounds the
        #: same way, or (None: a way it does not know) takes numpy's offsets.
        self.offsets_fused = matmul_rounding(len(pts)) if self.has_tool else NUMPY_DOT_FUSED
        self._load_kernels()

    def _load_kernels(self) -> None:
        """Load the compiled kernels now (from numba's cache; compiled on a machine's first run),
        with the argument types of every tick, not on the first control tick that needs them."""
        p, q = np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0])
        self.project(p)
        self.project_tool(p, (q, q))
        _free_box(
            NUMPY_DOT_FUSED, p, p, self.lo, self.hi, self._kinds, self._params, np.empty(3), np.empty(3)
        )
        if self.has_tool:
            self.tool_tick(p, q, q)
            self.tool_over(p, q, self._tool_zero, np.zeros_like(self._tool_out))
            self.tool_floor(q)

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
        q = np.empty(3)
        ok = _project(
            NUMPY_DOT_FUSED, _f64(p), self.lo, self.hi, self._kinds, self._params, _PROJECT_ROUNDS, q
        )
        return q if ok else None

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

    # --- the tool ---------------------------------------------------------------------------

    def tool_penetration(self, p: np.ndarray, quat: np.ndarray) -> np.ndarray:
        """How deep the tool's points are at the pose ``(p, quat)``, metres, 0 where allowed.

        Shape ``(1 + len(keep_out),)``: how far the lowest point is below the workspace floor
        (``min`` z), then, per grown zone, the depth of the deepest point in it (as
        :meth:`penetration` measures it). All zeros without tool points. A new array each call.
        """
        out = np.zeros(1 + len(self.keep_out))
        if self.has_tool:
            self.tool_over(p, quat, out, out)
        return out

    def tool_over(self, p: np.ndarray, quat: np.ndarray, allow: np.ndarray, out: np.ndarray) -> int:
        """:meth:`tool_penetration` written into ``out``; the index of the first depth deeper than
        ``allow`` (same shape) by more than 1e-9 m, or -1 (all compared before ``out`` is
        written, so ``out`` may be ``allow``). Only with tool points."""
        return int(
            _tool_depths(_f64(p), _f64(quat), self.tool, self._floor_z, self._kinds, self._params, allow, out)
        )

    def tool_violation(self, p: np.ndarray, quat: np.ndarray) -> str | None:
        """``"workspace"`` (a point below the floor) or ``"keep_out"`` if the tool at the pose
        ``(p, quat)`` is not allowed, else None."""
        if not self.has_tool:
            return None
        k = self.tool_over(p, quat, self._tool_zero, self._tool_out)
        return None if k < 0 else ("workspace" if k == 0 else "keep_out")

    def tool_clear(self, p: list[float]) -> bool:
        """Whether the TCP at ``p`` (a list ``[x, y, z]``) is so far above the floor and so far
        from every grown zone that no orientation can put a tool point in (plain floats: the
        common case costs no kernel call). True without tool points."""
        if not self.has_tool:
            return True
        reach = self._tool_reach
        return p[2] - reach >= self._floor_z and _first_inside(self._fast, p, -reach) is None

    def tool_tick(self, p: np.ndarray, quat: np.ndarray, quat_last: np.ndarray) -> tuple[int, int, float]:
        """One compiled call for a tick's target: the first depth index (as :meth:`tool_over`
        against zeros: 0 the floor, ``1 + k`` zone k; -1 none) of the tool at ``(p, quat)`` and
        at ``(p, quat_last)``, and ``max(tool_floor(quat), tool_floor(quat_last))``. Only with
        tool points."""
        k, k_last, floor = _tool_tick(
            _f64(p),
            _f64(quat),
            _f64(quat_last),
            self.tool,
            self._tool_z,
            self._tool_rho,
            self._floor_z,
            self.tool_floor_z,
            self._kinds,
            self._params,
            self._tool_zero,
            self._tool_out,
        )
        return int(k), int(k_last), float(floor)

    def tool_floor(self, quat: np.ndarray) -> float:
        """The lowest z (m) the TCP may have at orientation ``quat``, or any rotation of it about
        the vertical: ``tool_floor_z`` (the workspace floor, or a level plane zone's grown top
        above it) plus how far the tool reaches below its TCP. A point ``t`` of the tool is at
        ``u . t`` above the TCP, ``u`` the vertical in the tool frame; over every rotation about
        the vertical that is at least ``u_z t_z - sqrt(1 - u_z^2) |t_xy|`` (Cauchy-Schwarz). The
        TCP's own floor (the workspace box) is not included; -inf without tool points."""
        if not self.has_tool:
            return -math.inf
        reach: float = _reach_below(_f64(quat), self._tool_z, self._tool_rho)
        return self.tool_floor_z + reach

    def project_tool(self, p: np.ndarray, quats: tuple[np.ndarray, ...]) -> np.ndarray | None:
        """A TCP position near ``p`` that puts the TCP in the workspace and out of every grown
        zone, and every tool point, at each orientation in ``quats``, at or above the floor and
        out of every grown zone; None if :data:`_TOOL_ROUNDS` rounds find none.

        Alternating projections as in :meth:`project` (compiled): the floor lifts the TCP by
        the lowest point's depth; a zone pushes the TCP by the push that takes its deepest point
        (the TCP counts as one) just out.
        """
        q = np.empty(3)
        if self.offsets_fused is None:
            offsets = np.concatenate([np.zeros((1, 3))] + [self.tool @ quat_to_matrix(r).T for r in quats])
            np.minimum(np.maximum(_f64(p), self.lo), self.hi, out=q)
            ok = _project_points(q, offsets, self.lo, self.hi, self._kinds, self._params, _TOOL_ROUNDS)
            return q if ok else None
        fused = (NUMPY_DOT_FUSED, self.offsets_fused)
        a, b = _f64(quats[0]), _f64(quats[-1])  # one orientation or two
        ok = _project_tool(
            fused,
            _f64(p),
            a,
            b,
            len(quats),
            self.tool,
            self.lo,
            self.hi,
            self._kinds,
            self._params,
            _TOOL_ROUNDS,
            q,
        )
        return q if ok else None

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
        lo, hi = np.empty(3), np.empty(3)
        _free_box(NUMPY_DOT_FUSED, _f64(p), _f64(toward), self.lo, self.hi, self._kinds, self._params, lo, hi)
        return lo, hi


_KIND = {"box": 0, "sphere": 1, "half_space": 2}


def _f64(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous float64 array (itself when it is one): the kernels' one type."""
    if type(x) is np.ndarray and x.dtype == np.float64 and x.flags.c_contiguous:
        return x
    return np.ascontiguousarray(x, dtype=np.float64)


@jit
def first_inside(kinds: np.ndarray, params: np.ndarray, x: float, y: float, z: float, tol: float) -> int:
    """:func:`_first_inside` on the zones as the kernels hold them (``kinds``, ``params``): the
    index of the first zone ``(x, y, z)`` is strictly inside by more than ``tol``, or -1."""
    for k in range(kinds.shape[0]):
        f = params[k]
        if kinds[k] == 0:
            if f[0] + tol < x < f[3] - tol and f[1] + tol < y < f[4] - tol and f[2] + tol < z < f[5] - tol:
                return k
        elif kinds[k] == 1:
            r = f[3] - tol
            dx, dy, dz = x - f[0], y - f[1], z - f[2]
            if r > 0 and dx * dx + dy * dy + dz * dz < r * r:
                return k
        elif f[0] * x + f[1] * y + f[2] * z < f[3] - tol:
            return k
    return -1


@jit
def tool_clear_at(
    kinds: np.ndarray, params: np.ndarray, reach: float, floor_z: float, x: float, y: float, z: float
) -> bool:
    """:meth:`Zones.tool_clear` in a kernel: ``reach`` is ``Zones.tool_reach_or_none`` (negative
    without tool points: then always clear), ``floor_z`` the workspace floor."""
    if reach < 0.0:
        return True
    return z - reach >= floor_z and first_inside(kinds, params, x, y, z, -reach) < 0


@jit
def _zone_depth(kind: int, f: np.ndarray, wx: float, wy: float, wz: float) -> float:
    """Depth of the point ``(wx, wy, wz)`` in one zone (``kind`` 0 box, 1 ball, 2 plane; ``f`` as
    :func:`_as_floats`): the distance to its nearest exit, negative outside."""
    d: float
    if kind == 0:
        d = min(wx - f[0], wy - f[1], wz - f[2], f[3] - wx, f[4] - wy, f[5] - wz)
    elif kind == 1:
        dx, dy, dz = wx - f[0], wy - f[1], wz - f[2]
        d = f[3] - math.sqrt(dx * dx + dy * dy + dz * dz)
    else:
        d = f[3] - (f[0] * wx + f[1] * wy + f[2] * wz)
    return d


@jit
def _tool_depths(
    p: np.ndarray,
    quat: np.ndarray,
    pts: np.ndarray,
    floor_z: float,
    kinds: np.ndarray,
    params: np.ndarray,
    allow: np.ndarray,
    out: np.ndarray,
) -> int:
    """``out[0]``: how far the lowest of ``pts`` (TCP frame) at the pose ``(p, quat)`` (x, y, z,
    w; normalised here) is below ``floor_z``; ``out[1 + k]``: the depth of the deepest point in
    zone ``k`` (``kinds``/``params`` as :func:`_as_floats`); 0 where none is in. Returns the
    first index where ``out`` exceeds ``allow`` by more than 1e-9, or -1."""
    x, y, z, w = quat[0], quat[1], quat[2], quat[3]
    s = 2.0 / (x * x + y * y + z * z + w * w)
    r00, r01, r02 = 1.0 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)
    r10, r11, r12 = s * (x * y + z * w), 1.0 - s * (x * x + z * z), s * (y * z - x * w)
    r20, r21, r22 = s * (x * z - y * w), s * (y * z + x * w), 1.0 - s * (x * x + y * y)
    n = out.shape[0]
    deepest = np.zeros(n)
    for i in range(pts.shape[0]):
        tx, ty, tz = pts[i, 0], pts[i, 1], pts[i, 2]
        wx = p[0] + r00 * tx + r01 * ty + r02 * tz
        wy = p[1] + r10 * tx + r11 * ty + r12 * tz
        wz = p[2] + r20 * tx + r21 * ty + r22 * tz
        d = floor_z - wz
        if d > deepest[0]:
            deepest[0] = d
        for k in range(kinds.shape[0]):
            d = _zone_depth(kinds[k], params[k], wx, wy, wz)
            if d > deepest[1 + k]:
                deepest[1 + k] = d
    worst = -1
    for k in range(n):
        if worst < 0 and deepest[k] > allow[k] + 1e-9:
            worst = k
    for k in range(n):
        out[k] = deepest[k]
    return worst


@jit
def _tool_tick(
    p: np.ndarray,
    quat: np.ndarray,
    quat_last: np.ndarray,
    pts: np.ndarray,
    tz: np.ndarray,
    rho: np.ndarray,
    floor_z: float,
    tool_floor_z: float,
    kinds: np.ndarray,
    params: np.ndarray,
    zero: np.ndarray,
    scratch: np.ndarray,
) -> tuple[int, int, float]:
    """:meth:`Zones.tool_tick`'s work in one call."""
    k = _tool_depths(p, quat, pts, floor_z, kinds, params, zero, scratch)
    k_last = _tool_depths(p, quat_last, pts, floor_z, kinds, params, zero, scratch)
    reach = max(_reach_below(quat, tz, rho), _reach_below(quat_last, tz, rho))
    return k, k_last, tool_floor_z + reach


@jit
def _project_points(
    q: np.ndarray,
    offsets: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    kinds: np.ndarray,
    params: np.ndarray,
    rounds: int,
) -> bool:
    """Move ``q`` (in place) until every ``q + offsets[i]`` is at or above ``lo[2]`` and outside
    every zone, ``q`` inside ``[lo, hi]``: per round, lift by the lowest point's depth, then push
    by each zone's deepest point's way out (as :func:`_push_out`), clamping into the box after
    each. True if a round moved nothing (all out), False after ``rounds`` rounds."""
    floor = lo[2]
    for i in range(offsets.shape[0]):
        if lo[2] - offsets[i, 2] > floor:
            floor = lo[2] - offsets[i, 2]
    if floor > hi[2]:
        return False
    for _ in range(rounds):
        moved = False
        if q[2] < floor:
            q[2] = floor
            moved = True
        for k in range(kinds.shape[0]):
            f = params[k]
            best, bi = 0.0, -1
            for i in range(offsets.shape[0]):
                d = _zone_depth(kinds[k], f, q[0] + offsets[i, 0], q[1] + offsets[i, 1], q[2] + offsets[i, 2])
                if d > best:
                    best, bi = d, i
            if bi < 0:
                continue
            moved = True
            wx, wy, wz = q[0] + offsets[bi, 0], q[1] + offsets[bi, 1], q[2] + offsets[bi, 2]
            dx, dy, dz = 0.0, 0.0, 0.0
            if kinds[k] == 0:
                # The nearest face, low faces first on a tie (as _push_out).
                faces = (wx - f[0], wy - f[1], wz - f[2], f[3] - wx, f[4] - wy, f[5] - wz)
                j, dmin = 0, faces[0]
                for m in range(1, 6):
                    if faces[m] < dmin:
                        j, dmin = m, faces[m]
                if j == 0:
                    dx = -(dmin + 1e-9)
                elif j == 1:
                    dy = -(dmin + 1e-9)
                elif j == 2:
                    dz = -(dmin + 1e-9)
                elif j == 3:
                    dx = dmin + 1e-9
                elif j == 4:
                    dy = dmin + 1e-9
                else:
                    dz = dmin + 1e-9
            elif kinds[k] == 1:
                ux, uy, uz = wx - f[0], wy - f[1], wz - f[2]
                r = math.sqrt(ux * ux + uy * uy + uz * uz)
                if r > 1e-12:
                    ux, uy, uz = ux / r, uy / r, uz / r
                else:
                    ux, uy, uz = 0.0, 0.0, 1.0
                dx = f[0] + ux * (f[3] + 1e-9) - wx
                dy = f[1] + uy * (f[3] + 1e-9) - wy
                dz = f[2] + uz * (f[3] + 1e-9) - wz
            else:
                push = f[3] - (f[0] * wx + f[1] * wy + f[2] * wz) + 1e-9
                dx, dy, dz = push * f[0], push * f[1], push * f[2]
            q[0] = min(max(q[0] + dx, lo[0]), hi[0])
            q[1] = min(max(q[1] + dy, lo[1]), hi[1])
            q[2] = min(max(q[2] + dz, lo[2]), hi[2])
        if not moved:
            return True
    return False


@jit
def _clamp_into(q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """``np.minimum(np.maximum(q, lo), hi)``, in place."""
    for i in range(3):
        x = q[i] if q[i] >= lo[i] else lo[i]
        q[i] = x if x <= hi[i] else hi[i]


@jit
def _project(
    fused: bool,
    p: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    kinds: np.ndarray,
    params: np.ndarray,
    rounds: int,
    q: np.ndarray,
) -> bool:
    """:meth:`Zones.project` into ``q``: clamped into ``[lo, hi]``, then each zone it is in
    (:func:`_inside`) pushes it out (:func:`_push_out`) and the box clamps it, round after round
    until none does; False if ``rounds`` were not enough and ``q`` is still not allowed."""
    for i in range(3):
        q[i] = p[i]
    _clamp_into(q, lo, hi)
    for _ in range(rounds):
        moved = False
        for k in range(kinds.shape[0]):
            f = params[k]
            x, y, z = q[0], q[1], q[2]
            if kinds[k] == 0:
                if not (f[0] < x < f[3] and f[1] < y < f[4] and f[2] < z < f[5]):
                    continue
                # The nearest face (np.argmin's first), a low one on a tie.
                k_lo, d_lo = 0, x - f[0]
                if y - f[1] < d_lo:
                    k_lo, d_lo = 1, y - f[1]
                if z - f[2] < d_lo:
                    k_lo, d_lo = 2, z - f[2]
                k_hi, d_hi = 0, f[3] - x
                if f[4] - y < d_hi:
                    k_hi, d_hi = 1, f[4] - y
                if f[5] - z < d_hi:
                    k_hi, d_hi = 2, f[5] - z
                if d_lo <= d_hi:
                    q[k_lo] = f[k_lo] - _PUSH
                else:
                    q[k_hi] = f[3 + k_hi] + _PUSH
            elif kinds[k] == 1:
                dx, dy, dz = x - f[0], y - f[1], z - f[2]
                if not (f[3] > 0.0 and dot3(fused, dx, dy, dz, dx, dy, dz) < f[3] ** 2):
                    continue
                n = math.sqrt(dot3(fused, dx, dy, dz, dx, dy, dz))
                if n > 1e-12:
                    ux, uy, uz = dx / n, dy / n, dz / n
                else:
                    ux, uy, uz = 0.0, 0.0, 1.0
                r = f[3] + _PUSH
                q[0], q[1], q[2] = f[0] + ux * r, f[1] + uy * r, f[2] + uz * r
            else:
                side = dot3(fused, f[0], f[1], f[2], x, y, z)
                if not side < f[3]:
                    continue
                push = f[3] - side + _PUSH
                q[0], q[1], q[2] = x + push * f[0], y + push * f[1], z + push * f[2]
            _clamp_into(q, lo, hi)
            moved = True
        if not moved:
            return True
    x, y, z = q[0], q[1], q[2]
    return (
        lo[0] <= x <= hi[0]
        and lo[1] <= y <= hi[1]
        and lo[2] <= z <= hi[2]
        and first_inside(kinds, params, x, y, z, 0.0) < 0
    )


@jit
def _project_tool(
    fused: tuple[bool, bool],
    p: np.ndarray,
    quat_a: np.ndarray,
    quat_b: np.ndarray,
    n_quats: int,
    tool: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    kinds: np.ndarray,
    params: np.ndarray,
    rounds: int,
    q: np.ndarray,
) -> bool:
    """:meth:`Zones.project_tool` into ``q``, at ``quat_a`` (and ``quat_b`` if ``n_quats`` is 2):
    the tool's offsets ``tool @ quat_to_matrix(quat).T`` (``fused``: how numpy's dot products
    and that matrix product round, :func:`safety.compiled.matmul_rounding`), then
    :func:`_project_points` from ``p`` clamped."""
    dot_fused, mm_fused = fused
    n = tool.shape[0]
    offsets = np.zeros((1 + n_quats * n, 3))
    for j in range(n_quats):
        src = quat_a if j == 0 else quat_b
        r = q_matrix(dot_fused, src[0], src[1], src[2], src[3])
        for i in range(n):
            tx, ty, tz = tool[i, 0], tool[i, 1], tool[i, 2]
            row = 1 + j * n + i
            offsets[row, 0] = dot3(mm_fused, tx, ty, tz, r[0], r[1], r[2])
            offsets[row, 1] = dot3(mm_fused, tx, ty, tz, r[3], r[4], r[5])
            offsets[row, 2] = dot3(mm_fused, tx, ty, tz, r[6], r[7], r[8])
    for i in range(3):
        q[i] = p[i]
    _clamp_into(q, lo, hi)
    return _project_points(q, offsets, lo, hi, kinds, params, rounds)


@jit
def _free_box(
    fused: bool,
    p: np.ndarray,
    toward: np.ndarray,
    ws_lo: np.ndarray,
    ws_hi: np.ndarray,
    kinds: np.ndarray,
    params: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> None:
    """:meth:`Zones.free_box` into ``lo``, ``hi``: the workspace widened to contain ``p``, then
    for each box and ball in the way one face cut (the one keeping ``toward`` inside, else the
    one leaving the most room), a ball's corner region shrunk toward ``p``
    (:func:`_shrink_off_ball`), then each plane's corner pulled onto it."""
    for i in range(3):
        lo[i] = ws_lo[i] if ws_lo[i] <= p[i] else p[i]  # np.minimum
        hi[i] = ws_hi[i] if ws_hi[i] >= p[i] else p[i]  # np.maximum
    for k in range(kinds.shape[0]):
        if kinds[k] == 2:
            continue  # planes after the boxes and balls, as Zones._boxes then Zones._planes
        f = params[k]
        ball = kinds[k] == 1
        if ball:
            r = f[3]
            zlo = (f[0] - r, f[1] - r, f[2] - r)
            zhi = (f[0] + r, f[1] + r, f[2] + r)
        else:
            zlo = (f[0], f[1], f[2])
            zhi = (f[3], f[4], f[5])
        if (
            zhi[0] <= lo[0]
            or zhi[1] <= lo[1]
            or zhi[2] <= lo[2]
            or zlo[0] >= hi[0]
            or zlo[1] >= hi[1]
            or zlo[2] >= hi[2]
        ):
            continue  # already clear of the box
        if ball:
            d0 = _clamp1(f[0], lo[0], hi[0]) - f[0]
            d1 = _clamp1(f[1], lo[1], hi[1]) - f[1]
            d2 = _clamp1(f[2], lo[2], hi[2]) - f[2]
            if dot3(fused, d0, d1, d2, d0, d1, d2) >= f[3] * f[3]:
                continue  # the box misses the ball
        below = (p[0] <= zlo[0], p[1] <= zlo[1], p[2] <= zlo[2])
        above = (p[0] >= zhi[0], p[1] >= zhi[1], p[2] >= zhi[2])
        if not (below[0] or below[1] or below[2] or above[0] or above[1] or above[2]):
            if ball:
                e0, e1, e2 = p[0] - f[0], p[1] - f[1], p[2] - f[2]
                if dot3(fused, e0, e1, e2, e0, e1, e2) >= f[3] * f[3]:
                    # In a corner of the cube, outside the ball: shrink toward p instead.
                    _shrink_off_ball(fused, p, lo, hi, f[0], f[1], f[2], f[3])
            continue  # otherwise p is inside the zone: let it out
        # Room kept by each possible cut; prefer cuts that keep the target in (np.argmax: the
        # first of the highest).
        k_hi, k_lo = -1, -1
        best_hi = best_lo = 0.0
        for i in range(3):
            room_hi = zlo[i] - lo[i] if below[i] else -math.inf
            room_lo = hi[i] - zhi[i] if above[i] else -math.inf
            score_hi = room_hi + (1e6 if below[i] and toward[i] <= zlo[i] else 0.0)
            score_lo = room_lo + (1e6 if above[i] and toward[i] >= zhi[i] else 0.0)
            if k_hi < 0 or score_hi > best_hi:
                k_hi, best_hi = i, score_hi
            if k_lo < 0 or score_lo > best_lo:
                k_lo, best_lo = i, score_lo
        if best_hi >= best_lo:
            hi[k_hi] = zlo[k_hi] if zlo[k_hi] < hi[k_hi] else hi[k_hi]  # min(hi, zlo)
        else:
            lo[k_lo] = zhi[k_lo] if zhi[k_lo] > lo[k_lo] else lo[k_lo]  # max(lo, zhi)
    for k in range(kinds.shape[0]):
        if kinds[k] != 2:
            continue
        f = params[k]
        c = f[3]
        # Lowest value of n.x over the box is at the corner picked by the signs of n.
        low = dot3(
            fused,
            f[0],
            f[1],
            f[2],
            lo[0] if f[0] > 0 else hi[0],
            lo[1] if f[1] > 0 else hi[1],
            lo[2] if f[2] > 0 else hi[2],
        )
        if low >= c:
            continue
        slack = dot3(fused, f[0], f[1], f[2], p[0], p[1], p[2]) - c
        if slack <= 0:
            continue  # p on the wrong side: let it out
        # Shrink the box toward p until that corner is on the plane.
        s = slack / (slack + (c - low))
        for i in range(3):
            if f[i] > 0:
                lo[i] = p[i] + s * (lo[i] - p[i])
            if f[i] < 0:
                hi[i] = p[i] + s * (hi[i] - p[i])


@jit
def _clamp1(x: float, lo: float, hi: float) -> float:
    """``np.minimum(np.maximum(x, lo), hi)`` of one value."""
    y = x if x >= lo else lo
    return y if y <= hi else hi


@jit
def _shrink_off_ball(
    fused: bool, p: np.ndarray, lo: np.ndarray, hi: np.ndarray, cx: float, cy: float, cz: float, r: float
) -> None:
    """Scale the box ``lo``, ``hi`` (in place) toward ``p`` until its point nearest the centre is
    on or outside the ball (bisection, 40 rounds)."""
    good, bad = 0.0, 1.0  # scale factors: 0 is the point p itself, which is outside
    for _ in range(40):
        mid = 0.5 * (good + bad)
        d0 = _clamp1(cx, p[0] + mid * (lo[0] - p[0]), p[0] + mid * (hi[0] - p[0])) - cx
        d1 = _clamp1(cy, p[1] + mid * (lo[1] - p[1]), p[1] + mid * (hi[1] - p[1])) - cy
        d2 = _clamp1(cz, p[2] + mid * (lo[2] - p[2]), p[2] + mid * (hi[2] - p[2])) - cz
        if dot3(fused, d0, d1, d2, d0, d1, d2) >= r * r:
            good = mid
        else:
            bad = mid
    for i in range(3):
        lo_i, hi_i = lo[i], hi[i]
        lo[i] = p[i] + good * (lo_i - p[i])
        hi[i] = p[i] + good * (hi_i - p[i])


@jit
def _reach_below(quat: np.ndarray, tz: np.ndarray, rho: np.ndarray) -> float:
    """The most any point (axial ``tz``, radial ``rho``, TCP frame) can be below the TCP at
    orientation ``quat`` turned by any angle about the vertical (m; negative: all above)."""
    x, y, z, w = quat[0], quat[1], quat[2], quat[3]
    uz = 1.0 - 2.0 * (x * x + y * y) / (x * x + y * y + z * z + w * w)  # R[2, 2]
    sz = math.sqrt(max(0.0, 1.0 - uz * uz))
    reach = -math.inf
    for i in range(tz.shape[0]):
        r = -uz * tz[i] + sz * rho[i]
        if r > reach:
            reach = r
    return reach


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

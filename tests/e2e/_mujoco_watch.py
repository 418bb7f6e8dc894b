"""A physics-side safety watch for the MuJoCo arm: what the arm itself did, at every physics step.

The shield's own check (``verify_trace``) is about the commands; this is about the measured
arm: the TCP, the origin of every link, hand and finger, the lowest point of any of its collision
geometries, and the contact forces, sampled after every 2 ms physics step through
:meth:`MujocoArm.add_step_observer` (a thread polling the arm would only see the states a reader
happens to sync to, and would miss a transient between two control ticks).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from robot_agent.sim.mujoco_arm import MujocoArm

__all__ = ["Bounds", "PhysicsWatch", "excursion"]


@dataclasses.dataclass(frozen=True)
class Bounds:
    """An axis-aligned box, metres in the robot base frame."""

    min: tuple[float, float, float]
    max: tuple[float, float, float]

    def grown(self, margin_m: float) -> Bounds:
        lo = tuple(v - margin_m for v in self.min)
        hi = tuple(v + margin_m for v in self.max)
        return Bounds(lo, hi)  # type: ignore[arg-type]


def excursion(points: np.ndarray, box: Bounds) -> float:
    """How far (m, >= 0) the farthest of ``points`` ``[n, 3]`` (or one ``[3]``) lies outside
    ``box``, along the worst axis; 0 when all are inside."""
    p = np.atleast_2d(points)
    lo, hi = np.asarray(box.min), np.asarray(box.max)
    return float(max((lo - p).max(), (p - hi).max(), 0.0))


class PhysicsWatch:
    """Records, at every physics step of ``arm``, the worst of: the TCP outside ``workspace``,
    any arm body origin outside ``cell``, the lowest point of the arm's geometry, and whether the
    e-stop latched. Call :meth:`attach` before the run; read the fields after it.

    Fields (metres, newtons, seconds of sim time): ``steps``; ``tool_excursion_m`` and
    ``tool_excursion_at`` (the TCP position then); ``link_excursion_m`` and its body name;
    ``lowest_z_m`` (from :meth:`MujocoArm.lowest_z_unsynced`); ``tcp_min`` / ``tcp_max`` and
    ``link_min`` / ``link_max`` (per axis, over the run); ``peak_table_force_n`` and
    ``peak_contact_force_n`` (the arm's, since its last reset); ``estop_seen``.
    """

    def __init__(self, arm: MujocoArm, *, workspace: Bounds, cell: Bounds) -> None:
        self.arm = arm
        self.workspace = workspace
        self.cell = cell
        self._tcp = arm.ids.tcp_site
        self._bodies = list(arm.ids.arm_bodies)
        self._names = [arm.model.body(b).name for b in self._bodies]  # type: ignore[attr-defined]
        self.steps = 0
        self.tool_excursion_m = 0.0
        self.tool_excursion_at = np.zeros(3)
        self.link_excursion_m = 0.0
        self.link_excursion_body = ""
        self.lowest_z_m = np.inf
        self.tcp_min = np.full(3, np.inf)
        self.tcp_max = np.full(3, -np.inf)
        self.link_min = np.full(3, np.inf)
        self.link_max = np.full(3, -np.inf)
        self.estop_seen = False

    def attach(self) -> PhysicsWatch:
        self.arm.add_step_observer(self._observe)
        return self

    def _observe(self, arm: MujocoArm) -> None:
        d = arm.data
        tcp = d.site_xpos[self._tcp]
        links = d.xpos[self._bodies]
        self.steps += 1
        np.minimum(self.tcp_min, tcp, out=self.tcp_min)
        np.maximum(self.tcp_max, tcp, out=self.tcp_max)
        np.minimum(self.link_min, links.min(axis=0), out=self.link_min)
        np.maximum(self.link_max, links.max(axis=0), out=self.link_max)
        out = excursion(tcp, self.workspace)
        if out > self.tool_excursion_m:
            self.tool_excursion_m, self.tool_excursion_at = out, tcp.copy()
        lo, hi = np.asarray(self.cell.min), np.asarray(self.cell.max)
        per_body = np.maximum(lo - links, links - hi).max(axis=1)
        worst = int(np.argmax(per_body))
        if per_body[worst] > self.link_excursion_m:
            self.link_excursion_m, self.link_excursion_body = float(per_body[worst]), self._names[worst]
        self.lowest_z_m = min(self.lowest_z_m, arm.lowest_z_unsynced())
        self.estop_seen = self.estop_seen or arm.estopped

    @property
    def peak_table_force_n(self) -> float:
        return self.arm.peak_table_force_n

    @property
    def peak_contact_force_n(self) -> float:
        return self.arm.peak_contact_force_n

    def report(self, label: str) -> str:
        """One line of the worst values, for the test's output."""
        return (
            f"{label}: {self.steps} physics steps; tool {self.tool_excursion_m * 1000:.1f} mm outside the "
            f"workspace (at {np.round(self.tool_excursion_at, 3).tolist()}), TCP range "
            f"{_range(self.tcp_min, self.tcp_max)}; links {self.link_excursion_m * 1000:.1f} mm outside the cell "
            f"({self.link_excursion_body or '-'}), link range {_range(self.link_min, self.link_max)}; lowest point "
            f"z = {self.lowest_z_m * 1000:.1f} mm; peak contact force {self.peak_contact_force_n:.1f} N "
            f"(table {self.peak_table_force_n:.1f} N); e-stop {'seen' if self.estop_seen else 'never'}"
        )


def _range(lo: Sequence[float], hi: Sequence[float]) -> str:
    return " ".join(f"{a}[{x:.3f}, {y:.3f}]" for a, x, y in zip("xyz", lo, hi, strict=True))

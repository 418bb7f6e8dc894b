"""Compile the agent's numba kernels ahead of the first run: ``python -m robot_agent.kernels``.

The shield (``safety``), the trajectory and the action space run compiled loops; numba compiles
them on a machine's first use and caches the result next to the sources (``__pycache__``), so
the first ``robot-agent`` start after an install or an upgrade spends seconds compiling (24 s
measured on a loaded 2-core VM) before the arm moves, and later starts load them in well under a
second. ``make install`` / ``make test`` / ``make demo`` run this once so that time is spent
there, with a line saying so, rather than inside a start-up a user (or a test) is timing.

What it builds: the objects whose constructors load every kernel of a control tick (a shield
with the default ``[safety]``, the Franka Hand's points, one with box and sphere keep-out zones,
what the agent's plan loads: ``Plan.__init__``, and the simulated Panda's kinematics). Exit status 0; prints the seconds taken. Without numba there is nothing to
compile and it says so.
"""

from __future__ import annotations

import importlib.util
import sys
import time

__all__ = ["compile_kernels", "main"]

#: A config whose zones bring in the zone kernels (the numbers are arbitrary, inside the default
#: workspace).
_ZONES = {
    "keep_out": [
        {"kind": "box", "name": "box", "min": [0.4, -0.1, 0.2], "max": [0.55, 0.1, 0.35]},
        {"kind": "sphere", "name": "ball", "center": [0.5, 0.3, 0.3], "radius": 0.08},
        {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.02},
    ]
}


def compile_kernels() -> float:
    """Build what loads every kernel of a tick; returns the seconds it took (s)."""
    from robot_agent import action_space, trajectory
    from robot_agent.sim import panda_chain
    from safety import SafetyConfig, Shield

    start = time.monotonic()
    for mapping in ({}, _ZONES):
        Shield(SafetyConfig.from_mapping(mapping))
    trajectory.load_compiled()  # what the agent's Plan loads when built
    action_space.load_compiled()
    panda_chain.load()  # the simulated Panda's FK and IK refinement
    return time.monotonic() - start


def main() -> int:
    if importlib.util.find_spec("numba") is None:
        print("numba is not installed: the kernels run interpreted, nothing to compile")
        return 0
    print("Compiling the agent's kernels (numba; cached after the first time) ...", flush=True)
    print(f"Kernels ready in {compile_kernels():.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

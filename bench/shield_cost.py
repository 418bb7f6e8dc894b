"""What the safety shield costs per control tick, in microseconds.

The shield runs on every tick (100-250 Hz: a 4-10 ms period) inside the agent's control task;
this measures one ``Shield.filter`` call for end-effector and joint targets, with and without
keep-out zones, on smooth input (the common case: the target passes unchanged) and on
adversarial input (jumps, NaN, out-of-workspace: every limit engaged). The budget it must stay
small against is 1 ms. The "+ fk" joint cases give the shield the arm's forward kinematics
(``panda_py.fk``, as the sim and Franka drivers do): each joint command then pays one FK and a
zone check; "joints smooth" without it is their baseline (ratio printed).

    python bench/shield_cost.py [--calls 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _stats import format_summary, summarize, write_json

from safety import FK, PANDA_HOME_JOINTS, Measured, Pose, SafetyConfig, Shield, Target
from safety.rotations import matrix_to_quat, quat_multiply, rotvec_to_quat

HOME_POSITION = np.array([0.307, 0.0, 0.487])
HOME_QUATERNION = np.array([1.0, 0.0, 0.0, 0.0])
HOME_JOINTS = np.array(PANDA_HOME_JOINTS)
DT = 0.01

KEEP_OUT = {
    "keep_out": [
        {"kind": "sphere", "name": "camera", "center": [0.5, 0.15, 0.3], "radius": 0.08},
        {"kind": "box", "name": "fixture", "min": [0.55, -0.3, 0.02], "max": [0.7, -0.1, 0.2]},
        {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.05},
    ]
}


def smooth_ee(rng: np.random.Generator) -> Callable[[float], Target]:
    def make(t: float) -> Target:
        f = (1 - math.cos(2.0 * t)) ** 2
        pos = HOME_POSITION + 0.01 * f * np.array([1.0, 0.5, -0.5])
        quat = quat_multiply(rotvec_to_quat(np.array([0.0, 0.0, 0.02 * f])), HOME_QUATERNION)
        return Target(time_s=t, ee=Pose(pos, quat), gripper=1.0 - 0.01 * f)

    return make


def adversarial_ee(rng: np.random.Generator) -> Callable[[float], Target]:
    def make(t: float) -> Target:
        k = rng.integers(0, 10)
        if k == 0:
            pos = np.array([math.nan, 0.0, 0.4])
        elif k < 4:
            pos = HOME_POSITION + rng.normal(0.0, 10.0, 3)  # 10 m jumps
        else:
            pos = rng.uniform([0.0, -0.6, -0.2], [1.0, 0.6, 0.9])  # in and around the workspace
        return Target(time_s=t, ee=Pose(pos, rng.normal(size=4)), gripper=float(rng.uniform(-1, 2)))

    return make


def smooth_joints(rng: np.random.Generator) -> Callable[[float], Target]:
    def make(t: float) -> Target:
        f = (1 - math.cos(2.0 * t)) ** 2
        return Target(time_s=t, joints=HOME_JOINTS + 0.01 * f, gripper=1.0)

    return make


def adversarial_joints(rng: np.random.Generator) -> Callable[[float], Target]:
    def make(t: float) -> Target:
        k = rng.integers(0, 10)
        q = HOME_JOINTS + rng.normal(0.0, 2.0, 7)
        if k == 0:
            q[3] = math.nan
        return Target(time_s=t, joints=q, gripper=float(rng.uniform(-1, 2)))

    return make


def panda_fk() -> FK:
    """The sim and Franka drivers' forward kinematics (imported only when measured)."""
    import panda_py

    def fk(q: np.ndarray) -> Pose:
        t = np.asarray(panda_py.fk(q), dtype=float)
        return Pose(t[:3, 3].copy(), matrix_to_quat(t[:3, :3]))

    return fk


SCENARIOS: dict[str, tuple[Callable[[np.random.Generator], Callable[[float], Target]], dict]] = {
    "ee smooth": (smooth_ee, {}),
    "ee adversarial": (adversarial_ee, {"estop_after_interventions": 0}),
    "ee smooth, keep-out": (smooth_ee, KEEP_OUT),
    "ee adversarial, keep-out": (adversarial_ee, {**KEEP_OUT, "estop_after_interventions": 0}),
    "joints smooth": (smooth_joints, {}),
    "joints adversarial": (adversarial_joints, {"estop_after_interventions": 0}),
    "joints smooth + fk, keep-out": (smooth_joints, KEEP_OUT),
    "joints adversarial + fk, keep-out": (adversarial_joints, {**KEEP_OUT, "estop_after_interventions": 0}),
}
#: Scenarios whose shield gets the arm's FK, and the one each is compared with.
WITH_FK = {
    "joints smooth + fk, keep-out": "joints smooth",
    "joints adversarial + fk, keep-out": "joints adversarial",
}


def measure(name: str, calls: int, seed: int) -> dict[str, float]:
    """Per-call cost in microseconds; the simulated arm obeys each command, as in the demo."""
    factory, overrides = SCENARIOS[name]
    rng = np.random.default_rng(seed)
    make = factory(rng)
    shield = Shield(SafetyConfig.from_mapping(overrides), fk=panda_fk() if name in WITH_FK else None)
    measured = Measured(0.0, Pose(HOME_POSITION.copy(), HOME_QUATERNION.copy()), HOME_JOINTS.copy(), 1.0)
    shield.reset(measured)
    samples = np.empty(calls)
    now = 0.0
    warmup = min(200, calls)
    for i in range(calls + warmup):
        now += DT
        target = make(now)
        t0 = time.perf_counter_ns()
        decision = shield.filter(target, measured, now, DT)
        t1 = time.perf_counter_ns()
        if i >= warmup:
            samples[i - warmup] = (t1 - t0) / 1e3
        out = decision.target
        if out is not None:
            measured = Measured(
                now,
                out.ee if out.ee is not None else measured.ee,
                out.joints if out.joints is not None else measured.joints,
                out.gripper if out.gripper is not None else measured.gripper,
            )
    return summarize(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000, help="filter calls measured per scenario")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the adversarial input")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    results = {}
    print(f"Shield.filter cost per call, microseconds ({args.calls} calls each, budget 1000 us per tick)")
    for name in SCENARIOS:
        stats = measure(name, args.calls, args.seed)
        results[name] = stats
        print(format_summary(name, stats, unit="us"))
        if name in WITH_FK:
            base = results[WITH_FK[name]]
            print(f"  p50 ratio vs {WITH_FK[name]!r}: {stats['p50'] / base['p50']:.2f}x")
    if args.json is not None:
        write_json(
            args.json, {"benchmark": "shield_cost", "unit": "us", "calls": args.calls, "results": results}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

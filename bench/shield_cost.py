"""What the safety shield costs per control tick, in microseconds.

The shield runs on every tick (100-250 Hz: a 4-10 ms period) inside the agent's control task;
this measures one ``Shield.filter`` call for end-effector and joint targets, with and without
keep-out zones, on smooth input (the common case: the target passes unchanged) and on
adversarial input (jumps, NaN, out-of-workspace: every limit engaged). The budget it must stay
small against is 1 ms. The "+ fk" joint cases give the shield the arm's forward kinematics
(``panda_py.fk``, as the sim and Franka drivers do): each joint command then pays one FK and a
zone check; "joints smooth" without it is their baseline (ratio printed).

``--reference REV`` also measures the shield as it was at git revision REV (its ``safety/``
package, imported beside today's in this process) on the same input, prints today's p50 as a
ratio of it, and checks that both gave the same decisions bit for bit (issue 13 compares
with 718dedd, before the scalar and numba work). The first shield is timed apart: building it
loads the numba-compiled motion filter (from numba's cache; compiled on a machine's first run).

    python bench/shield_cost.py [--calls 5000] [--json out.json] [--reference 718dedd]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import math
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

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


def load_reference(rev: str) -> ModuleType:
    """The ``safety`` package as it was at git revision ``rev``, imported as ``safety_reference``."""
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", rev, "safety"], capture_output=True, check=True
    ).stdout
    where = Path(tempfile.mkdtemp(prefix="shield_reference_"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(where, filter="data")
    package = where / "safety_reference"
    (where / "safety").rename(package)
    spec = importlib.util.spec_from_file_location(
        "safety_reference", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["safety_reference"] = module
    spec.loader.exec_module(module)
    return module


def measure(name: str, calls: int, seed: int, pkg: Any = None) -> tuple[dict[str, float], str]:
    """Per-call cost in microseconds, and a digest of every decision (to compare two shields);
    the simulated arm obeys each command, as in the demo. ``pkg``: the ``safety`` package to
    measure (today's by default)."""
    safety = pkg if pkg is not None else sys.modules["safety"]
    factory, overrides = SCENARIOS[name]
    rng = np.random.default_rng(seed)
    make = factory(rng)
    shield = safety.Shield(
        safety.SafetyConfig.from_mapping(overrides), fk=panda_fk() if name in WITH_FK else None
    )
    measured = Measured(0.0, Pose(HOME_POSITION.copy(), HOME_QUATERNION.copy()), HOME_JOINTS.copy(), 1.0)
    shield.reset(measured)
    samples = np.empty(calls)
    digest = hashlib.sha256()
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
        digest.update(repr((decision.hold, decision.estop, decision.fired)).encode())
        if out is not None:
            for x in (out.ee.position, out.ee.quaternion) if out.ee is not None else (out.joints,):
                digest.update(np.asarray(x, dtype=float).tobytes())
            digest.update(repr(out.gripper).encode())
            measured = Measured(
                now,
                out.ee if out.ee is not None else measured.ee,
                out.joints if out.joints is not None else measured.joints,
                out.gripper if out.gripper is not None else measured.gripper,
            )
    return summarize(samples), digest.hexdigest()


def first_call_ms() -> float:
    """A fresh process's first shield, built and given two targets (one direct step, one limited):
    building it loads the compiled motion filter."""
    config = SafetyConfig.from_mapping({})
    measured = Measured(0.0, Pose(HOME_POSITION.copy(), HOME_QUATERNION.copy()), HOME_JOINTS.copy(), 1.0)
    far = Target(time_s=DT, ee=Pose(HOME_POSITION + 0.05, HOME_QUATERNION.copy()), gripper=1.0)
    t0 = time.perf_counter()
    shield = Shield(config)
    shield.reset(measured)
    shield.filter(Target(time_s=DT, ee=Pose(HOME_POSITION, HOME_QUATERNION), gripper=1.0), measured, DT, DT)
    shield.filter(far, measured, 2 * DT, DT)  # a limited step: the other kernel
    return (time.perf_counter() - t0) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=5000, help="filter calls measured per scenario")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the adversarial input")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument(
        "--reference",
        default=None,
        metavar="REV",
        help="also measure the shield at this git revision and compare (e.g. 718dedd)",
    )
    args = parser.parse_args(argv)
    first = first_call_ms()
    reference = load_reference(args.reference) if args.reference else None
    results: dict[str, Any] = {}
    print(f"Shield.filter cost per call, microseconds ({args.calls} calls each, budget 1000 us per tick)")
    print(f"first shield built and first two calls (loads the compiled motion filter): {first:.1f} ms")
    for name in SCENARIOS:
        stats, digest = measure(name, args.calls, args.seed)
        results[name] = stats
        print(format_summary(name, stats, unit="us", width=34))
        if name in WITH_FK:
            base = results[WITH_FK[name]]
            print(f"  p50 ratio vs {WITH_FK[name]!r}: {stats['p50'] / base['p50']:.2f}x")
        if reference is not None:
            old, old_digest = measure(name, args.calls, args.seed, reference)
            results[f"{name} @ {args.reference}"] = old
            same = "same decisions" if digest == old_digest else "DIFFERENT DECISIONS"
            print(format_summary(f"  @ {args.reference}", old, unit="us", width=34))
            print(
                f"  p50 {stats['p50'] / old['p50']:.2f}x, p99 {stats['p99'] / old['p99']:.2f}x "
                f"of {args.reference}; {same}"
            )
    if args.json is not None:
        write_json(
            args.json,
            {
                "benchmark": "shield_cost",
                "unit": "us",
                "calls": args.calls,
                "first_call_ms": first,
                "reference": args.reference,
                "results": results,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

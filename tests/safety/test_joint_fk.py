"""Issue 10, kind 8, for joint-space policies: with the arm's forward kinematics the shield
checks every joint command's end-effector position against the workspace and the keep-out
zones (grown by the margin), as it does an end-effector command's.

The break test that found it: joint targets ``q + [0, s, 0, s, 0, 0, 0]`` with ``s`` growing
dive the Panda's tool into the table (a half-space z >= 0.05) while the shield, which checked
joint commands against the joint band only, never fired ``keep_out``. The kinematics here are
the real arm's (``panda_py.fk``, the Franka Hand's TCP, as the sim and Franka drivers use).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import Decision, Measured, Pose, SafetyConfig, Shield, StepRecord, Target, verify_trace
from safety.rotations import matrix_to_quat

from ._helpers import HOME_JOINTS

panda_py = pytest.importorskip("panda_py")  # the real arm's kinematics (the sim driver's)

DT = 0.01
TABLE_Z = 0.05
MARGIN = 0.005
FLOOR = TABLE_Z + MARGIN  # where commands keep above: the table grown by the margin
TABLE = {"kind": "half_space", "name": "table", "normal": [0.0, 0.0, 1.0], "offset": TABLE_Z}
# From home + 1.2 DIVE (TCP at x 0.52, z 0.22) the dive goes through the table near s = 1.63,
# inside the default workspace (x in [0.25, 0.75], z >= 0.02) and the joint limits.
DIVE = np.array([0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 0.0])


def fk(q: np.ndarray) -> Pose:
    t = np.asarray(panda_py.fk(np.asarray(q, dtype=float)), dtype=float)
    return Pose(t[:3, 3].copy(), matrix_to_quat(t[:3, :3]))


def tcp_z(q: np.ndarray) -> float:
    return float(fk(q).position[2])


def measured_at(q: np.ndarray) -> Measured:
    return Measured(time_s=0.0, ee=fk(q), joints=np.asarray(q, dtype=float).copy(), gripper=1.0)


def config(**overrides: object) -> SafetyConfig:
    base: dict[str, object] = {
        "keep_out": [TABLE],
        "keep_out_margin_m": MARGIN,
        "estop_after_interventions": 0,
        "tool": {"points": []},  # the TCP's zones here; test_tool_points.py checks the tool's
    }
    return SafetyConfig.from_mapping({**base, **overrides})


def run(shield: Shield, start: np.ndarray, targets: list[np.ndarray]) -> tuple[list, list[StepRecord]]:
    """Feed joint targets to the shield; the arm reaches each command exactly, and stays put on
    a hold. Returns the decisions and the step records (with the seed first, as a hold)."""
    measured = measured_at(start)
    shield.reset(measured)
    seed = Target(time_s=0.0, joints=measured.joints, gripper=1.0)

    records = [StepRecord.from_decision(Decision(target=seed, hold=True), 0.0, DT)]
    decisions = []
    for k, q in enumerate(targets, start=1):
        now = k * DT
        d = shield.filter(Target(time_s=now, joints=q, gripper=1.0), measured, now, DT)
        decisions.append(d)
        records.append(StepRecord.from_decision(d, now, DT))
        if d.target is not None and not d.hold:
            measured = measured_at(d.target.joints)
    return decisions, records


def dive_targets(start_s: float, end_s: float, rate: float = 0.5) -> list[np.ndarray]:
    """Joint targets moving along the dive at ``rate`` rad/s on joints 1 and 3."""
    n = int((end_s - start_s) / (rate * DT))
    return [HOME_JOINTS + DIVE * (start_s + rate * DT * k) for k in range(1, n + 1)]


def test_the_dive_does_reach_the_table() -> None:
    # The premise: along this path the TCP goes through the table within the joint limits.
    assert tcp_z(HOME_JOINTS + 1.2 * DIVE) > FLOOR
    assert tcp_z(HOME_JOINTS + 2.0 * DIVE) < TABLE_Z - 0.01


def test_a_joint_dive_into_the_table_is_held_before_the_command_crosses_it() -> None:
    shield = Shield(config(), fk=fk)
    decisions, records = run(shield, HOME_JOINTS + 1.2 * DIVE, dive_targets(1.2, 2.0))
    sent = [d.target.joints for d in decisions if not d.hold]
    zs = np.array([tcp_z(q) for q in sent])
    # Every command keeps its TCP above the grown table...
    assert zs.min() >= FLOOR - 1e-9, zs.min()
    # ...and got right up to it (the check is not a wall far above): within a tick's motion.
    assert zs.min() < FLOOR + 0.01, zs.min()
    held = [d for d in decisions if d.hold]
    assert held and all("keep_out" in d.fired for d in held), {d.fired for d in held}
    # The shield's own record passes the after-the-fact check with the same kinematics.
    assert verify_trace(records, shield.config, fk=fk) == []


def test_without_fk_the_dive_goes_in_and_verify_with_fk_reports_it() -> None:
    """What the break test saw: the joint band alone lets the dive through. The agent refuses
    a joint policy on an arm without FK when keep-out zones are configured (test_agent_kinematics)."""
    shield = Shield(config())
    decisions, records = run(shield, HOME_JOINTS + 1.2 * DIVE, dive_targets(1.2, 2.0))
    zs = np.array([tcp_z(d.target.joints) for d in decisions if not d.hold])
    assert zs.min() < TABLE_Z - 0.01
    assert verify_trace(records, shield.config) == []  # joint band only: blind to the table
    found = verify_trace(records, shield.config, fk=fk)
    # Into the grown table first, then (below z = 0.02) out of the workspace too.
    assert found and found[0].kind == "keep_out" and {v.kind for v in found} == {"keep_out", "workspace"}
    first = found[0]
    assert tcp_z(np.asarray(records[first.index].safe.joints)) < FLOOR  # the first one really is in


def test_a_joint_command_leaving_the_workspace_is_held() -> None:
    """The default workspace (x in [0.25, 0.75]): turning joint 0 swings the TCP toward x < 0.25."""
    cfg = SafetyConfig.from_mapping({"estop_after_interventions": 0})
    shield = Shield(cfg, fk=fk)
    targets = [HOME_JOINTS + np.array([0.5 * DT * k, 0, 0, 0, 0, 0, 0]) for k in range(1, 300)]
    decisions, records = run(shield, HOME_JOINTS, targets)
    xs = np.array([fk(d.target.joints).position[0] for d in decisions if not d.hold])
    assert xs.min() >= 0.25 - 1e-9 and xs.min() < 0.26, xs.min()
    assert any(d.hold and "workspace" in d.fired for d in decisions)
    assert verify_trace(records, cfg, fk=fk) == []


def test_an_fk_that_fails_holds() -> None:
    def broken(q: np.ndarray) -> Pose:
        raise RuntimeError("no kinematics today")

    shield = Shield(config(), fk=broken)
    decisions, _ = run(shield, HOME_JOINTS, [HOME_JOINTS + 0.001])
    assert decisions[0].hold and "workspace" in decisions[0].fired


def inside_seed(depth: float) -> np.ndarray:
    """Joints along the dive whose TCP is ``depth`` below the floor (bisection on s)."""
    lo, hi = 1.2, 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if tcp_z(HOME_JOINTS + mid * DIVE) > FLOOR - depth else (lo, mid)
    return HOME_JOINTS + lo * DIVE


PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(
    depth=st.floats(0.002, 0.03),
    offsets=st.lists(st.lists(st.floats(-0.05, 0.05), min_size=7, max_size=7), min_size=30, max_size=30),
)
def test_from_a_seed_inside_commands_only_move_out(depth: float, offsets: list[list[float]]) -> None:
    """Seeded with the TCP inside the grown table (the arm strayed in, a hold restarted there),
    arbitrary joint targets near it give commands whose depth never grows; once out, never in."""
    seed = inside_seed(depth)
    shield = Shield(config(), fk=fk)
    targets = [seed + np.asarray(o) for o in offsets]
    decisions, records = run(shield, seed, targets)
    depths = [FLOOR - tcp_z(seed)]
    for d in decisions:
        if not d.hold:
            depths.append(max(FLOOR - tcp_z(d.target.joints), 0.0))
    assert depths[0] == pytest.approx(depth, abs=1e-6)
    assert (np.diff(np.maximum(depths, 0.0)) <= 1e-9).all(), depths
    assert verify_trace(records, shield.config, fk=fk) == []


def test_from_a_seed_inside_a_target_above_is_followed_out() -> None:
    seed = inside_seed(0.02)
    shield = Shield(config(), fk=fk)
    decisions, records = run(shield, seed, [HOME_JOINTS + 1.2 * DIVE] * 200)
    zs = [tcp_z(d.target.joints) for d in decisions if not d.hold]
    assert not any(d.hold for d in decisions)
    assert (np.diff(zs) >= -1e-9).all()  # straight up the dive path: only ever out
    assert zs[-1] > FLOOR + 0.05  # and well out
    assert verify_trace(records, shield.config, fk=fk) == []

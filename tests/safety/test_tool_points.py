"""The tool's extent (``safety.tool``): every point of the tool, placed by each command's pose,
stays at or above the workspace floor and out of every grown keep-out zone.

Found on the MuJoCo arm (tests/e2e/test_adversarial_mujoco.py): the shield bounded only the TCP;
a policy tilting the Franka Hand at the table put the fingers 2-9 mm into it under the default
config. The properties here recompute every tool point with their own quaternion maths (not
the shield's kernels) and check them on every command the shield emits, whatever the targets.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import Measured, Pose, SafetyConfig, SafetyConfigError, Shield, StepRecord, Target, verify_trace
from safety.config import FRANKA_HAND_POINTS
from safety.rotations import quat_multiply, rotvec_to_quat
from safety.zones import inflate

from ._helpers import HOME_JOINTS, HOME_QUATERNION, follow, home_measured

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DT = 0.01
LOOSE = {"max_translation_m": 50.0, "max_rotation_rad": 4.0, "max_joint_rad": 50.0}
ZONES = [
    {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.04},
    {"kind": "box", "name": "fixture", "min": [0.55, -0.3, 0.0], "max": [0.7, -0.1, 0.15]},
    {"kind": "sphere", "name": "camera", "center": [0.35, 0.25, 0.2], "radius": 0.06},
]
CONFIGS = {
    "default": {"tracking": LOOSE},
    "zones": {"tracking": LOOSE, "keep_out": ZONES},
    "reject": {"tracking": LOOSE, "keep_out": ZONES[:1], "on_workspace_violation": "reject"},
    "fast": {
        "tracking": LOOSE,
        "translation": {"max_velocity": 1.5, "max_acceleration": 10.0, "max_jerk": 2000.0},
        "rotation": {"max_velocity": 2.5, "max_acceleration": 20.0, "max_jerk": 2000.0},
    },
}


def rotation(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a quaternion (x, y, z, w), written out here (not the shield's)."""
    x, y, z, w = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def tool_points(cfg: SafetyConfig, pose: Pose) -> np.ndarray:
    """The tool's points in the base frame, ``(n, 3)``."""
    pts = np.asarray(cfg.tool.points, dtype=float).reshape(-1, 3)
    return np.asarray(pose.position, dtype=float) + pts @ rotation(np.asarray(pose.quaternion)).T


def depth(cfg: SafetyConfig, pose: Pose) -> np.ndarray:
    """Per rule (floor, then each grown zone): how deep the deepest tool point is, 0 if out."""
    pts = tool_points(cfg, pose)
    out = [max(0.0, float(cfg.workspace.min[2] - pts[:, 2].min()))]
    for zone in cfg.keep_out:
        z = inflate(zone, cfg.keep_out_margin_m)
        if z.kind == "half_space":
            d = z.offset - pts @ np.asarray(z.normal)
        elif z.kind == "sphere":
            d = z.radius - np.linalg.norm(pts - np.asarray(z.center), axis=1)
        else:
            d = np.minimum((pts - np.asarray(z.min)).min(axis=1), (np.asarray(z.max) - pts).min(axis=1))
        out.append(max(0.0, float(d.max())))
    return np.array(out)


def tilted(rotvec: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """The tool pointing down, then turned by ``rotvec`` (rad, base frame)."""
    return quat_multiply(rotvec_to_quat(np.asarray(rotvec, dtype=float)), HOME_QUATERNION)


def drive(shield: Shield, measured: Measured, targets: list[Target | None]) -> tuple[list, list[StepRecord]]:
    """Feed targets (times relative to now); the arm reaches every command exactly."""
    shield.reset(measured)
    decisions, records = [], [StepRecord.from_decision(_hold(measured), 0.0, DT, measured=measured)]
    now = 0.0
    for target in targets:
        now += DT
        if target is not None:
            target = Target(time_s=now, ee=target.ee, joints=target.joints, gripper=target.gripper)
        d = shield.filter(target, measured, now, DT)
        decisions.append(d)
        records.append(StepRecord.from_decision(d, now, DT, measured=measured))
        measured = follow(measured, d.target, now)
    return decisions, records


def _hold(measured: Measured):  # the seed, recorded as a hold at the measured state
    from safety import Decision

    return Decision(target=Target(time_s=0.0, ee=measured.ee, joints=measured.joints), hold=True)


# --- config -------------------------------------------------------------------------------------


def test_the_default_tool_is_the_franka_hand_and_an_empty_list_is_the_tcp_only() -> None:
    assert SafetyConfig().tool.points == FRANKA_HAND_POINTS
    pts = np.asarray(FRANKA_HAND_POINTS)
    # Pointing down the fingertips reach 14 mm below the TCP (the finger mesh: 13.1 mm).
    assert -(pts @ rotation(HOME_QUATERNION).T)[:, 2].min() == pytest.approx(0.014)
    assert SafetyConfig.from_mapping({"tool": {"points": []}}).tool.points == ()
    cfg = SafetyConfig.from_mapping({"tool": {"points": [[0, 0, 0.05]]}})
    assert cfg.tool.points == ((0.0, 0.0, 0.05),)
    assert SafetyConfig.from_mapping(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([[0.0, 0.0]], "safety.tool.points[0] must have 3 values"),
        ([[0.0, 0.0, math.inf]], "safety.tool.points[0] must be finite"),
        ([[0.0, 0.0, 0.1], [0.0, 0.0, 14.0]], "safety.tool.points[1] is (0, 0, 14), 14 m from the TCP"),
        ("hand", "safety.tool.points must be a list of [x, y, z] points"),
    ],
)
def test_a_bad_tool_point_is_named(points: object, message: str) -> None:
    with pytest.raises(SafetyConfigError) as err:
        SafetyConfig.from_mapping({"tool": {"points": points}})
    assert message in str(err.value)


# --- end-effector commands ----------------------------------------------------------------------


@pytest.mark.parametrize("tilt", [0.0, 0.1, 0.5, 1.2])
def test_a_tilted_tool_pushed_at_the_floor_stops_with_its_lowest_point_on_it(tilt: float) -> None:
    """The MuJoCo finding: the hand tilted at the table. The TCP alone would reach z = 0.02;
    the tool's lowest point stops there instead, and a TCP-only tool goes down to it."""
    quat = tilted((tilt, 0.0, 0.0))
    target = Target(time_s=0.0, ee=Pose(np.array([0.45, 0.0, -0.2]), quat))
    for points in (None, []):
        cfg = SafetyConfig.from_mapping(
            {"tracking": LOOSE, **({} if points is None else {"tool": {"points": points}})}
        )
        decisions, records = drive(Shield(cfg), home_measured(), [target] * 400)
        final = decisions[-1].target.ee
        assert not decisions[-1].hold and "workspace" in decisions[0].fired
        if points is None:
            lowest = tool_points(cfg, final)[:, 2].min()
            # On it, to the filter's floor: the tool's reach below the TCP whatever the turn about
            # the vertical (conservative: 0.5 mm at 0.5 rad, 4.3 mm at 1.2 rad).
            assert 0.02 - 1e-9 <= lowest < 0.02 + 0.005
            assert all((depth(cfg, d.target.ee) == 0).all() for d in decisions)
        else:
            assert final.position[2] == pytest.approx(0.02, abs=1e-4)
        assert verify_trace(records, cfg) == []


def test_reject_mode_holds_a_target_whose_tool_is_in() -> None:
    cfg = SafetyConfig.from_mapping({"tracking": LOOSE, "on_workspace_violation": "reject"})
    shield = Shield(cfg)
    low = Pose(np.array([0.45, 0.0, 0.025]), tilted((0.3, 0.0, 0.0)))  # TCP in, tool 20+ mm below
    shield.reset(home_measured())
    d = shield.filter(Target(time_s=0.0, ee=low), home_measured(), 0.0, DT)
    assert d.hold and "workspace" in d.fired
    allowed = Pose(np.array([0.45, 0.0, 0.2]), tilted((0.3, 0.0, 0.0)))
    d = shield.filter(Target(time_s=0.0, ee=allowed), home_measured(), 0.0, DT)
    assert not d.hold


def test_a_hand_corner_keeps_out_of_a_box_zone_the_tcp_clears() -> None:
    """The hand is 0.2 m wide: approaching a fixture sideways, its corner stops at the margin."""
    fixture = {"kind": "box", "min": [0.2, 0.12, 0.0], "max": [0.8, 0.4, 0.3]}
    cfg = SafetyConfig.from_mapping({"tracking": LOOSE, "keep_out": [fixture]})
    target = Target(time_s=0.0, ee=Pose(np.array([0.45, 0.08, 0.1]), HOME_QUATERNION))
    decisions, records = drive(Shield(cfg), home_measured(), [target] * 300)
    assert all((depth(cfg, d.target.ee) == 0).all() for d in decisions)
    final = decisions[-1].target.ee
    assert final.position[2] == pytest.approx(0.1, abs=1e-6)  # beside the fixture, at its height
    # The hand's corner (108 mm to the side of the TCP) at the grown face; the TCP 35 mm short.
    y_max = tool_points(cfg, final)[:, 1].max()
    assert y_max == pytest.approx(0.12 - cfg.keep_out_margin_m, abs=1e-4)
    assert verify_trace(records, cfg) == []


def test_from_a_seed_with_the_tool_in_commands_only_bring_it_out() -> None:
    """The arm measured tilted with its fingers below the floor (it sagged there): no command
    puts any point deeper, whatever the target, and a target above is reached."""
    cfg = SafetyConfig.from_mapping({"tracking": LOOSE})
    seed_pose = Pose(np.array([0.45, 0.0, 0.03]), tilted((0.0, 0.4, 0.0)))
    start = depth(cfg, seed_pose)
    assert start[0] > 0.005
    seed = Measured(time_s=0.0, ee=seed_pose, joints=HOME_JOINTS.copy(), gripper=1.0)
    deeper = Target(time_s=0.0, ee=Pose(np.array([0.45, 0.0, -0.1]), tilted((0.0, 1.0, 0.0))))
    above = Target(time_s=0.0, ee=Pose(np.array([0.45, 0.0, 0.2]), HOME_QUATERNION))
    decisions, records = drive(Shield(cfg), seed, [deeper] * 50 + [above] * 300)
    previous = start
    for d in decisions:
        now = depth(cfg, d.target.ee)
        assert (now <= previous + 1e-9).all(), (now, previous, d.fired)
        previous = now
    assert not previous.any() and not decisions[-1].hold
    assert verify_trace(records, cfg) == []


ee_target = st.tuples(
    st.tuples(st.floats(0.1, 0.9), st.floats(-0.5, 0.5), st.floats(-0.3, 0.5)),  # m, around the box
    st.tuples(st.floats(-3.2, 3.2), st.floats(-3.2, 3.2), st.floats(-3.2, 3.2)),  # rad, rotation vector
    st.integers(1, 60),  # ticks held
)


@PROPS
@given(
    name=st.sampled_from(sorted(CONFIGS)),
    plan=st.lists(ee_target, min_size=1, max_size=6),
    dt=st.sampled_from([0.002, 0.004, 0.01]),
)
def test_every_tool_point_of_every_command_stays_above_the_floor_and_out_of_the_zones(
    name: str, plan: list, dt: float
) -> None:
    """For any sequence of targets (position and orientation), every command the shield emits,
    holds included, has every tool point at or above the floor and out of every grown zone."""
    cfg = SafetyConfig.from_mapping(CONFIGS[name])
    shield = Shield(cfg)
    measured = home_measured()
    shield.reset(measured)
    records = [StepRecord.from_decision(_hold(measured), 0.0, dt, measured=measured)]
    now = 0.0
    for position, rotvec, ticks in plan:
        pose = Pose(np.array(position), tilted(rotvec))
        for _ in range(ticks):
            now += dt
            d = shield.filter(Target(time_s=now, ee=pose), measured, now, dt)
            assert d.target is not None and d.target.ee is not None
            assert (depth(cfg, d.target.ee) <= 1e-9).all(), (d.fired, d.target.ee)
            records.append(StepRecord.from_decision(d, now, dt, measured=measured))
            measured = follow(measured, d.target, now)
    assert verify_trace(records, cfg) == []


# --- joint commands (through the FK) and the recording -------------------------------------------


def test_a_joint_dive_holds_before_a_tool_point_crosses_the_floor() -> None:
    panda_py = pytest.importorskip("panda_py")
    from safety.rotations import matrix_to_quat

    def fk(q: np.ndarray) -> Pose:
        t = np.asarray(panda_py.fk(np.asarray(q, dtype=float)), dtype=float)
        return Pose(t[:3, 3].copy(), matrix_to_quat(t[:3, :3]))

    cfg = SafetyConfig.from_mapping({"estop_after_interventions": 0})
    shield = Shield(cfg, fk=fk)
    dive = np.array([0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 0.0])
    q0 = HOME_JOINTS + 1.2 * dive
    measured = Measured(time_s=0.0, ee=fk(q0), joints=q0.copy(), gripper=1.0)
    targets = [Target(time_s=0.0, joints=q0 + 0.01 * k * dive) for k in range(1, 120)]
    decisions, records = drive(shield, measured, targets)
    moving = [d for d in decisions if not d.hold]
    lowest = [tool_points(cfg, fk(d.target.joints))[:, 2].min() for d in moving]
    assert min(lowest) >= 0.02 - 1e-9
    assert min(lowest) < 0.02 + 0.01  # the dive did reach the floor
    assert any("workspace" in d.fired and d.hold for d in decisions)
    assert verify_trace(records, cfg, fk=fk) == []
    # Without the tool the same dive takes the fingertips below the floor: verify says so.
    bare = SafetyConfig.from_mapping({"estop_after_interventions": 0, "tool": {"points": []}})
    _, bare_records = drive(Shield(bare, fk=fk), measured, targets)
    found = verify_trace(bare_records, cfg, fk=fk)
    assert found and found[0].kind == "workspace" and "tool point" in found[0].message


def test_verify_trace_finds_a_tool_point_below_the_floor_from_the_recorded_pose() -> None:
    cfg = SafetyConfig()
    seed = home_measured()
    low = Target(time_s=0.01, ee=Pose(np.array([0.307, 0.0, 0.03]), tilted((0.5, 0.0, 0.0))))
    records = [
        StepRecord(time_s=0.0, measured=seed, raw=None, safe=None, fired=(), holding=True),
        StepRecord(time_s=0.01, measured=seed, raw=low, safe=low, fired=(), holding=False),
    ]
    found = [v for v in verify_trace(records, cfg) if v.kind == "workspace"]
    assert len(found) == 1 and "the workspace floor (a tool point)" in found[0].message
    assert found[0].value == pytest.approx(depth(cfg, low.ee)[0])
    assert [
        v
        for v in verify_trace(records, SafetyConfig.from_mapping({"tool": {"points": []}}))
        if v.kind == "workspace"
    ] == []


def test_a_limits_report_from_before_the_tool_is_read_as_tcp_only() -> None:
    """A recording made by a TCP-only shield (its limits report has no ``tool``) is checked as
    that shield worked; today's reports carry the points and are checked with them."""
    from safety import Shield as _Shield

    report = _Shield(SafetyConfig()).limits_report()
    assert report["config"]["tool"]["points"]
    seed = home_measured()
    low = Target(time_s=0.01, ee=Pose(np.array([0.307, 0.0, 0.03]), tilted((0.5, 0.0, 0.0))))
    records = [
        StepRecord(time_s=0.0, measured=seed, raw=None, safe=None, fired=(), holding=True),
        StepRecord(time_s=0.01, measured=seed, raw=low, safe=low, fired=(), holding=False),
    ]
    assert any("tool point" in v.message for v in verify_trace(records, report))
    old = {**report, "config": {k: v for k, v in report["config"].items() if k != "tool"}}
    assert not any("tool point" in v.message for v in verify_trace(records, old))


def test_a_home_pose_that_puts_the_tool_below_the_floor_is_refused() -> None:
    cfg = SafetyConfig.from_mapping({"workspace": {"min": [0.25, -0.35, 0.2], "max": [0.75, 0.35, 0.7]}})
    cfg.validate_against(home=Pose(np.array([0.307, 0.0, 0.487]), HOME_QUATERNION))
    with pytest.raises(
        SafetyConfigError, match=r"safety.tool.points\[\d+\] is at z = 0.1960 at the home pose"
    ):
        cfg.validate_against(home=Pose(np.array([0.307, 0.0, 0.21]), HOME_QUATERNION))
    table = {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.3}
    with pytest.raises(
        SafetyConfigError, match=r"safety.keep_out\[0\] \(half_space 'table'\) contains safety.tool"
    ):
        SafetyConfig.from_mapping({"keep_out": [table]}).validate_against(
            home=Pose(np.array([0.307, 0.0, 0.31]), HOME_QUATERNION)
        )

"""Issue 10, kind 8: after a hold inside a keep-out zone, outside the workspace or past a joint
limit, commands only move out, and once out never go back in.

The shield is seeded (as on leaving a hold) at a state inside a zone (box, sphere, half-space),
outside a workspace wall or past a joint's margin band, and then fed arbitrary raw targets. The
penetration of each commanded target, computed here independently of ``safety.zones``, must
never grow from one tick to the next (so once zero it stays zero), and must reach zero within
the time the rate limits need.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from safety import Measured, Pose, SafetyConfig, Shield, StepRecord, Target, verify_trace

from ._helpers import HOME_JOINTS, HOME_POSITION, HOME_QUATERNION, follow, home_measured

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DT = 0.01
MARGIN = 0.005
LOOSE = {"max_translation_m": 10.0, "max_rotation_rad": 4.0, "max_joint_rad": 10.0}
NO_TOOL = {"points": []}  # these tests are about the TCP's zones (test_tool_points.py: the tool's)
WS_MIN = np.array([0.25, -0.35, 0.02])  # the default workspace
WS_MAX = np.array([0.75, 0.35, 0.70])
# Time the default rate limits need to leave a few centimetres of penetration, with room.
ESCAPE_TICKS = 150

ZONES = {
    "box": {"kind": "box", "min": [0.4, -0.1, 0.2], "max": [0.55, 0.1, 0.35]},
    "sphere": {"kind": "sphere", "center": [0.5, 0.0, 0.3], "radius": 0.08},
    "half_space": {"kind": "half_space", "normal": [0.0, 0.0, 1.0], "offset": 0.3},
    "slanted": {"kind": "half_space", "normal": [-0.6, 0.0, 0.8], "offset": 0.0},
}


def depth(zone: dict, p: np.ndarray, margin: float = MARGIN) -> float:
    """Depth of ``p`` in ``zone`` grown by ``margin`` (distance to its nearest exit; 0 outside)."""
    if zone["kind"] == "box":
        lo, hi = np.array(zone["min"]) - margin, np.array(zone["max"]) + margin
        return max(0.0, float(min((p - lo).min(), (hi - p).min())))
    if zone["kind"] == "sphere":
        return max(0.0, zone["radius"] + margin - float(np.linalg.norm(p - zone["center"])))
    n = np.array(zone["normal"]) / np.linalg.norm(zone["normal"])
    return max(0.0, zone["offset"] / np.linalg.norm(zone["normal"]) + margin - float(n @ p))


def outside_workspace(p: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(WS_MIN - p, p - WS_MAX), 0.0)


def measured_at(position: np.ndarray, joints: np.ndarray = HOME_JOINTS) -> Measured:
    return Measured(time_s=0.0, ee=Pose(position, HOME_QUATERNION.copy()), joints=joints.copy(), gripper=1.0)


def run(shield: Shield, seed: Measured, targets: list[Target | None]) -> tuple[list, list[StepRecord]]:
    """Seed at ``seed`` (as leaving a hold does), then feed ``targets`` with the arm obeying."""
    shield.reset(seed)
    measured, decisions = seed, []
    records: list[StepRecord] = [_seed_record(seed)]
    now = 0.0
    for target in targets:
        now += DT
        if target is not None:
            target = Target(time_s=now, ee=target.ee, joints=target.joints, gripper=target.gripper)
        d = shield.filter(target, measured, now, DT)
        decisions.append(d)
        records.append(StepRecord.from_decision(d, now, DT))
        measured = follow(measured, d.target, now)
    return decisions, records


def _seed_record(m: Measured) -> StepRecord:
    """The seed as a hold record: verify_trace then allows the commands its penetration."""
    seed = Target(time_s=0.0, ee=m.ee, joints=m.joints)
    return StepRecord(time_s=0.0, measured=None, raw=None, safe=seed, fired=(), holding=True)


point = st.tuples(st.floats(-0.5, 1.5), st.floats(-1.0, 1.0), st.floats(-0.5, 1.5))


def schedule(target: st.SearchStrategy) -> st.SearchStrategy:  # type: ignore[type-arg]
    """Arbitrary raw targets, piecewise constant: ESCAPE_TICKS of them, in which the commands
    must get out; then 60 more, some missing (a watchdog hold reseeds at the arm), in which
    they must stay out."""

    head = st.lists(st.tuples(target, st.integers(1, 60)), min_size=1, max_size=10)
    tail = st.lists(st.tuples(st.one_of(target, st.none()), st.integers(1, 20)), min_size=1, max_size=6)
    return st.tuples(head, tail)


def expand(schedule: tuple[list, list]) -> list:  # type: ignore[type-arg]
    """The targets, one a tick, of a ``schedule()`` example."""

    def run_of(segs: list, n: int) -> list:  # type: ignore[type-arg]
        out = [x for x, k in segs for _ in range(k)]
        return (out * (n // len(out) + 1))[:n]

    return run_of(schedule[0], ESCAPE_TICKS) + run_of(schedule[1], 60)


ee_targets = schedule(point.map(lambda p: Target(time_s=0.0, ee=Pose(np.array(p), HOME_QUATERNION.copy()))))
joint_targets = schedule(
    st.lists(st.floats(-4.0, 4.0), min_size=7, max_size=7).map(
        lambda q: Target(time_s=0.0, joints=np.array(q))
    )
)


def _inside_zone(name: str, u: tuple[float, float, float]) -> np.ndarray:
    """A point strictly inside zone ``name`` (grown by the margin), from ``u`` in [0, 1)^3."""
    z = ZONES[name]
    u_arr = np.array(u)
    if name == "box":
        lo, hi = np.array(z["min"]) - MARGIN, np.array(z["max"]) + MARGIN
        return lo + (hi - lo) * (0.001 + 0.998 * u_arr)
    if name == "sphere":
        direction = u_arr - 0.5 + 1e-3
        r = (z["radius"] + MARGIN) * 0.999 * u_arr[0]
        return np.array(z["center"]) + r * direction / np.linalg.norm(direction)
    if name == "half_space":  # below the plane by up to 4 cm, anywhere in x and y
        return np.array([0.3 + 0.4 * u_arr[0], -0.3 + 0.6 * u_arr[1], 0.3 + MARGIN - 0.04 * u_arr[2] - 1e-6])
    # slanted: 0.8 z - 0.6 x < margin, inside the workspace's x range
    x = 0.3 + 0.4 * u_arr[0]
    zc = (MARGIN + 0.6 * x) / 0.8 - 0.03 * u_arr[2] - 1e-6
    return np.array([x, -0.3 + 0.6 * u_arr[1], zc])


unit = st.floats(0.0, 0.999)


@PROPS
@given(
    name=st.sampled_from(sorted(ZONES)),
    u=st.tuples(unit, unit, unit),
    targets=ee_targets,
)
@example(  # seeded at a ball's centre (to rounding): the exit went up, the directions said down
    name="sphere",
    u=(1e-12, 0.0, 0.0),
    targets=(
        [(Target(time_s=0.0, ee=Pose(np.array([0.5, -0.849, 0.660]), HOME_QUATERNION.copy())), 17)],
        [(None, 1)],
    ),
)
@example(  # out of the ball but braking not yet inside a box that excludes it: the command aimed
    # at the target and went back 0.18 mm into the grown ball along an axis the ratchet had freed
    name="sphere",
    u=(1e-12, 0.0, 0.375),
    targets=(
        [(Target(time_s=0.0, ee=Pose(np.array([1.0, 0.0, 0.0]), HOME_QUATERNION.copy())), 1)],
        [(None, 1)],
    ),
)
def test_seeded_inside_a_zone_commands_only_move_out(name: str, u: tuple, targets: tuple) -> None:
    zone = ZONES[name]
    shield = Shield(SafetyConfig.from_mapping({"tracking": LOOSE, "keep_out": [zone], "tool": NO_TOOL}))
    seed = _inside_zone(name, u)
    assert depth(zone, seed) > 0
    decisions, records = run(shield, measured_at(seed), expand(targets))
    _assert_penetration_only_falls(lambda p: np.array([depth(zone, p)]), seed, decisions)
    assert verify_trace(records, shield.config) == []


wall_offset = st.floats(1e-4, 0.05)


@PROPS
@given(
    axis=st.integers(0, 2),
    side=st.sampled_from([-1, 1]),
    offset=wall_offset,
    other=st.tuples(unit, unit, unit),
    targets=ee_targets,
)
def test_seeded_outside_a_workspace_wall_commands_only_move_back(
    axis: int, side: int, offset: float, other: tuple, targets: list
) -> None:
    shield = Shield(SafetyConfig.from_mapping({"tracking": LOOSE, "tool": NO_TOOL}))
    seed = WS_MIN + (WS_MAX - WS_MIN) * np.array(other)
    seed[axis] = WS_MAX[axis] + offset if side > 0 else WS_MIN[axis] - offset
    decisions, records = run(shield, measured_at(seed), expand(targets))
    _assert_penetration_only_falls(outside_workspace, seed, decisions)
    assert verify_trace(records, shield.config) == []


def _assert_penetration_only_falls(pen, seed: np.ndarray, decisions: list) -> None:  # type: ignore[no-untyped-def]
    previous = pen(seed)
    for i, d in enumerate(decisions):
        assert d.target is not None and d.target.ee is not None
        now = pen(np.asarray(d.target.ee.position))
        # A hold commands the measured state, which is the last command here (the arm obeys).
        assert (now <= previous + 1e-12).all(), (i, previous, now, d.fired)
        previous = now
        if i == ESCAPE_TICKS - 1:
            assert not now.any(), now  # it got out, within the rate limits' time


@PROPS
@given(
    joint=st.integers(0, 6),
    side=st.sampled_from([-1, 1]),
    offset=st.floats(1e-4, 0.3),
    targets=joint_targets,
)
def test_seeded_past_a_joint_limit_commands_only_move_back(
    joint: int, side: int, offset: float, targets: list
) -> None:
    shield = Shield(SafetyConfig.from_mapping({"tracking": LOOSE, "tool": NO_TOOL}))
    cfg = shield.config.joints
    lo = np.array(cfg.min) + cfg.margin_rad
    hi = np.array(cfg.max) - cfg.margin_rad
    seed_q = HOME_JOINTS.copy()
    seed_q[joint] = hi[joint] + offset if side > 0 else lo[joint] - offset
    decisions, records = run(shield, measured_at(HOME_POSITION.copy(), seed_q), expand(targets))
    previous = np.maximum(np.maximum(lo - seed_q, seed_q - hi), 0.0)
    for i, d in enumerate(decisions):
        assert d.target is not None and d.target.joints is not None
        q = np.asarray(d.target.joints)
        now = np.maximum(np.maximum(lo - q, q - hi), 0.0)
        assert (now <= previous + 1e-12).all(), (i, previous, now, d.fired)
        previous = now
        if i == ESCAPE_TICKS - 1:
            assert not now.any(), now
    assert verify_trace(records, shield.config) == []


# --- the example, and the pieces of it ----------------------------------------------------


def test_a_slide_along_the_table_after_a_sag_into_it_climbs_out_and_stays_out() -> None:
    """The example: the arm sagged 2 mm into the table (z >= 0.05) during a flip; on resume the
    policy still slides along the table plane, 30 cm away. Before the fix the commands stayed up
    to 2.6 mm inside the plane for 560 ticks and dipped back 20 um after climbing out."""
    table = {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.05}
    for margin in (0.0, MARGIN):
        shield = Shield(
            SafetyConfig.from_mapping({"keep_out": [table], "keep_out_margin_m": margin, "tool": NO_TOOL})
        )
        seed = np.array([0.4, 0.0, 0.048])  # 2 mm below the plane
        slide = [
            Target(time_s=0.0, ee=Pose(np.array([0.4 + 0.3 * min(k / 100, 1.0), 0.2, 0.05]), HOME_QUATERNION))
            for k in range(400)
        ]
        decisions, records = run(shield, measured_at(seed), slide)
        z = np.array([d.target.ee.position[2] for d in decisions])
        floor = 0.05 + margin
        below = np.flatnonzero(z < floor - 1e-12)
        # Out in 2 mm + margin at the rate limits: a few tens of ticks (a tenth of a second).
        assert below.size and below[-1] < 40, below
        assert (np.diff(z[: below[-1] + 2]) >= 0).all()  # straight up, never down, while in
        assert (z[below[-1] + 1 :] >= floor).all()  # and never back in
        # Meanwhile the slide goes on once out.
        assert decisions[-1].target.ee.position[0] == pytest.approx(0.7, abs=1e-6)
        assert verify_trace(records, shield.config) == []


def test_the_old_free_box_would_let_a_command_dip_back() -> None:
    """Once out, the box excludes the zone again: a target asking to go back in is clamped at
    the (grown) surface, not let back down to the depth of the seed."""
    table = {"kind": "half_space", "normal": [0, 0, 1], "offset": 0.05}
    shield = Shield(SafetyConfig.from_mapping({"keep_out": [table], "tracking": LOOSE, "tool": NO_TOOL}))
    up = [Target(time_s=0.0, ee=Pose(np.array([0.4, 0.0, 0.1]), HOME_QUATERNION))] * 100
    down = [Target(time_s=0.0, ee=Pose(np.array([0.4, 0.0, 0.0]), HOME_QUATERNION))] * 200
    decisions, _ = run(shield, measured_at(np.array([0.4, 0.0, 0.045])), up + down)
    z = np.array([d.target.ee.position[2] for d in decisions])
    first_out = int(np.argmax(z >= 0.055))
    assert first_out > 0 and (z[first_out:] >= 0.055 - 1e-12).all()
    assert z[-1] == pytest.approx(0.055, abs=1e-4)  # back down to the grown surface (braking to it)


def test_ik_joint_check_compares_with_the_last_command_not_the_lagging_arm() -> None:
    """The arm's measured joints lag deep past joint 0's band; commands that came back toward
    it may not go deeper again just because the arm is still deep."""
    cfg = SafetyConfig.from_mapping({"tracking": LOOSE})
    hi0 = cfg.joints.max[0] - cfg.joints.margin_rad

    def ik(pose: Pose, seed: np.ndarray) -> np.ndarray:
        q = HOME_JOINTS.copy()
        q[0] = hi0 + 5.0 * (float(pose.position[0]) - 0.4)  # past the band for x > 0.4
        return q

    shield = Shield(cfg, ik=ik)
    deep = HOME_JOINTS.copy()
    deep[0] = hi0 + 0.25  # x = 0.45
    arm = measured_at(np.array([0.45, 0.0, 0.4]), deep)
    shield.reset(arm)
    now = 0.0
    kept, held = [], []
    for x in [0.44] * 60 + [0.46] * 20:  # back toward the band, then deeper again
        now += DT
        d = shield.filter(Target(time_s=now, ee=Pose(np.array([x, 0.0, 0.4]), HOME_QUATERNION)), arm, now, DT)
        if d.hold:
            held.append(d.fired)
        else:
            kept.append(ik(d.target.ee, deep)[0])  # the arm stays where it was: lagging
    assert len(kept) == 60 and len(held) == 20 and all("joint_limit" in f for f in held)
    pen = np.maximum(np.array(kept) - hi0, 0.0)
    assert (np.diff(pen) <= 1e-12).all()
    assert pen[-1] == pytest.approx(0.2, abs=1e-6)  # got to x = 0.44 and went no deeper


def test_an_arm_that_strays_past_the_margin_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """The margin's check: commands keep 5 mm off the table; an arm measured inside the table
    itself has a tracking error beyond the margin: keep_out fires and one warning says so."""
    table = {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.05}
    shield = Shield(SafetyConfig.from_mapping({"keep_out": [table], "tool": NO_TOOL}))
    shield.reset(home_measured())
    sagged = measured_at(np.array([0.307, 0.0, 0.048]))
    sagged = Measured(time_s=0.0, ee=sagged.ee, joints=sagged.joints, gripper=1.0)
    caplog.set_level(logging.WARNING, logger="safety.shield")
    d = shield.filter(Target(time_s=0.0, ee=Pose(HOME_POSITION, HOME_QUATERNION)), home_measured(), 0.0, DT)
    assert d.fired == ()  # an arm well above the table: nothing to report
    fired = []
    shield = Shield(SafetyConfig.from_mapping({"keep_out": [table], "tracking": LOOSE, "tool": NO_TOOL}))
    above = measured_at(np.array([0.307, 0.0, 0.06]))
    shield.reset(above)
    assert shield.filter(Target(time_s=0.0, ee=above.ee), above, 0.0, DT).fired == ()
    for k in range(1, 4):
        d = shield.filter(
            Target(time_s=k * DT, ee=Pose(np.array([0.307, 0.0, 0.06]), HOME_QUATERNION)), sagged, k * DT, DT
        )
        fired.append(d.fired)
        assert not d.hold and d.target.ee.position[2] >= 0.055
    assert all("keep_out" in f for f in fired)
    warnings = [r.getMessage() for r in caplog.records if "keep_out_margin_m" in r.getMessage()]
    assert len(warnings) == 1 and "2.0 mm inside safety.keep_out[0] (half_space 'table')" in warnings[0]


def test_margin_must_be_a_non_negative_number() -> None:
    from safety.errors import SafetyConfigError

    with pytest.raises(SafetyConfigError, match=r"safety.keep_out_margin_m .*-0.001"):
        SafetyConfig.from_mapping({"keep_out_margin_m": -0.001})
    assert SafetyConfig().keep_out_margin_m == MARGIN

"""Each rule of the shield on its own: what fires, what is held, where the arm ends up."""

from __future__ import annotations

import math

import numpy as np
import pytest

from safety import (
    ESTOP_COUNTED_KINDS,
    SAFETY_RULE_KINDS,
    Decision,
    Measured,
    Pose,
    SafetyConfig,
    SafetyConfigError,
    Shield,
    StepRecord,
    Target,
    verify_trace,
)
from safety.config import tool_tilt
from safety.rotations import quat_angle, quat_multiply, rotvec_to_quat

from ._helpers import HOME_JOINTS, HOME_POSITION, HOME_QUATERNION, follow, home_measured

DT = 0.01


def ee(pos: object, quat: object = HOME_QUATERNION, t: float = 0.0, gripper: float | None = None) -> Target:
    return Target(
        time_s=t, ee=Pose(np.asarray(pos, dtype=float), np.asarray(quat, dtype=float)), gripper=gripper
    )


def drive(
    shield: Shield,
    make: object,
    ticks: int,
    measured: Measured | None = None,
    dt: float = DT,
) -> tuple[list[Decision], list[StepRecord], Measured]:
    """Run ``ticks`` ticks of ``make(now) -> Target`` with the arm obeying."""
    measured = measured or home_measured()
    decisions, records = [], []
    now = 0.0
    for _ in range(ticks):
        now += dt
        d = shield.filter(make(now), measured, now, dt)  # type: ignore[operator]
        decisions.append(d)
        records.append(StepRecord.from_decision(d, now, dt))
        measured = follow(measured, d.target, now)
    return decisions, records, measured


def fresh(**cfg: object) -> Shield:
    shield = Shield(SafetyConfig.from_mapping(cfg))
    shield.reset(home_measured())
    return shield


LOOSE = {"max_translation_m": 10.0, "max_rotation_rad": 4.0, "max_joint_rad": 10.0}


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        (None, "no_target"),  # nothing for now
        (ee([math.nan, 0.0, 0.4]), "non_finite"),  # NaN position
        (ee([0.4, math.inf, 0.4]), "non_finite"),  # inf position
        (ee([0.4, 0.0, 0.4], [0.0, math.nan, 0.0, 1.0]), "non_finite"),  # NaN quaternion
        (ee([0.4, 0.0, 0.4], gripper=math.nan), "non_finite"),  # NaN gripper
        (Target(time_s=math.nan, ee=Pose(HOME_POSITION, HOME_QUATERNION)), "non_finite"),  # NaN time
        (ee([0.4, 0.0, 0.4], [0.0, 0.0, 0.0, 0.0]), "invalid"),  # zero quaternion
        (ee([0.4, 0.0]), "invalid"),  # wrong shape
        (Target(time_s=0.0), "invalid"),  # neither ee nor joints
        (Target(time_s=0.0, ee=Pose(HOME_POSITION, HOME_QUATERNION), joints=HOME_JOINTS), "invalid"),  # both
        (Target(time_s=0.0, joints=np.zeros(6)), "invalid"),  # 6 joints for a 7-joint arm
        (Target(time_s=0.0, joints=np.full(7, math.nan)), "non_finite"),  # NaN joints
        (ee([0.4, 0.0, 0.4], t=-1.0), "stale"),  # one second old
        (Target(time_s=None, ee=Pose(HOME_POSITION, HOME_QUATERNION)), "invalid"),  # type: ignore[arg-type]
        (
            Target(time_s=0.0, ee=Pose(np.array(["a", 0.0, 0.4], dtype=object), HOME_QUATERNION)),
            "invalid",
        ),  # text
    ],
)
def test_refused_targets_hold_at_the_measured_state(target: Target | None, kind: str) -> None:
    shield = fresh()
    measured = home_measured()
    d = shield.filter(target, measured, 0.0, DT)
    assert d.hold and not d.estop
    assert d.fired == (kind,)
    assert d.target is not None and d.target.ee is measured.ee and d.target.gripper == measured.gripper


@pytest.mark.parametrize("dt", [0.0, -0.01, math.nan, math.inf])
def test_bad_dt_holds(dt: float) -> None:
    d = fresh().filter(ee(HOME_POSITION), home_measured(), 0.0, dt)
    assert d.hold and d.fired == ("invalid",)


def test_a_stalled_tick_holds_instead_of_jumping() -> None:
    shield = fresh(tracking=LOOSE)
    m = home_measured()
    far = HOME_POSITION + np.array([0.3, 0.0, 0.0])
    d = shield.filter(ee(far, t=2.0), m, 2.0, 2.0)  # two seconds since the last tick
    assert d.hold and d.fired == ("stall",)
    d = shield.filter(ee(far, t=2.01), m, 2.01, DT)  # then on again, from the arm, at rest
    assert not d.hold
    assert float(np.linalg.norm(d.target.ee.position - HOME_POSITION)) < 1e-3


def test_fired_kinds_come_from_the_closed_set() -> None:
    shield = fresh(tracking=LOOSE, orientation={"max_tilt_rad": 0.3})
    rng = np.random.default_rng(1)
    seen: set[str] = set()
    decisions, _, _ = drive(
        shield,
        lambda now: ee(rng.uniform(-1, 2, 3), rng.normal(size=4), now, gripper=float(rng.uniform(-1, 2))),
        100,
    )
    for d in decisions:
        seen.update(d.fired)
    assert seen <= set(SAFETY_RULE_KINDS)
    assert {"workspace", "tilt", "velocity", "gripper"} <= seen
    assert set(SAFETY_RULE_KINDS) >= ESTOP_COUNTED_KINDS


# --- workspace and keep-out ----------------------------------------------------------------------


def test_target_outside_workspace_is_clamped_and_reached() -> None:
    shield = fresh(tracking=LOOSE)
    decisions, records, measured = drive(shield, lambda now: ee([1.5, 0.0, -0.3], t=now), 400)
    assert "workspace" in decisions[0].fired
    # The TCP at the x wall; the default tool's fingertips (14 mm past the TCP, pointing down)
    # on the floor, not the TCP.
    np.testing.assert_allclose(measured.ee.position, [0.75, 0.0, 0.02 + 0.014], atol=1e-3)
    assert verify_trace(records, shield.config) == []


def test_reject_mode_holds_instead_of_clamping() -> None:
    shield = fresh(on_workspace_violation="reject")
    d = shield.filter(ee([1.5, 0.0, 0.4]), home_measured(), 0.0, DT)
    assert d.hold and d.fired == ("workspace",)


@pytest.mark.parametrize(
    "zone",
    [
        {"kind": "sphere", "center": [0.5, 0.0, 0.3], "radius": 0.1},
        {"kind": "box", "min": [0.45, -0.1, 0.02], "max": [0.55, 0.1, 0.35]},
        {"kind": "half_space", "normal": [0, 0, 1], "offset": 0.35},
    ],
)
def test_keep_out_zone_is_never_entered(zone: dict) -> None:
    shield = fresh(tracking=LOOSE, keep_out=[zone])
    target = np.array([0.5, 0.0, 0.3])  # inside every zone above
    decisions, records, measured = drive(shield, lambda now: ee(target, t=now), 400)
    assert "keep_out" in decisions[0].fired
    assert verify_trace(records, shield.config) == []
    # It got as close as the zone allows (within a couple of centimetres of its surface).
    surface_gap = {
        "sphere": lambda p: np.linalg.norm(p - [0.5, 0.0, 0.3]) - 0.1,
        "box": lambda p: np.linalg.norm(
            np.maximum(np.maximum([0.45, -0.1, 0.02] - p, p - [0.55, 0.1, 0.35]), 0)
        ),
        "half_space": lambda p: p[2] - 0.35,
    }[zone["kind"]](measured.ee.position)
    margin = shield.config.keep_out_margin_m
    assert margin == 0.005  # the default
    assert margin - 1e-9 <= surface_gap < 0.1


def test_keep_out_reject_mode_holds() -> None:
    shield = fresh(
        on_workspace_violation="reject",
        keep_out=[{"kind": "sphere", "center": [0.4, 0, 0.4], "radius": 0.05}],
    )
    d = shield.filter(ee([0.4, 0.0, 0.4]), home_measured(), 0.0, DT)
    assert d.hold and d.fired == ("keep_out",)


def test_motion_goes_around_no_zone_it_cannot_cross() -> None:
    # Target beyond a box wall between the arm and it: the arm stops at the wall, the margin
    # (keep_out_margin_m, 5 mm by default) short of it; with the default tool, its hand's
    # corners (32 mm ahead of the TCP along x) stop there.
    wall = {"kind": "box", "min": [0.4, -0.35, 0.02], "max": [0.45, 0.35, 0.7]}
    for points, stop in (([], 0.395), (None, 0.395 - 0.032)):
        tool = {} if points is None else {"tool": {"points": points}}
        shield = fresh(tracking=LOOSE, keep_out=[wall], **tool)
        _, records, measured = drive(shield, lambda now: ee([0.6, 0.0, 0.487], t=now), 300)
        assert verify_trace(records, shield.config) == []
        assert measured.ee.position[0] == pytest.approx(stop, abs=1e-3)
        assert measured.ee.position[0] <= stop + 1e-9


# --- orientation ------------------------------------------------------------------------------


def test_tilt_is_clamped_to_the_cone() -> None:
    shield = fresh(tracking=LOOSE, orientation={"max_tilt_rad": 0.3})
    tilted = quat_multiply(rotvec_to_quat(np.array([0.0, 1.2, 0.0])), HOME_QUATERNION)
    decisions, records, measured = drive(shield, lambda now: ee(HOME_POSITION, tilted, t=now), 300)
    assert "tilt" in decisions[0].fired
    assert tool_tilt(HOME_QUATERNION, measured.ee.quaternion) == pytest.approx(0.3, abs=1e-6)
    assert verify_trace(records, shield.config) == []


def test_rotation_about_the_tool_axis_is_free() -> None:
    shield = fresh(tracking=LOOSE, orientation={"max_tilt_rad": 0.1})
    yawed = quat_multiply(rotvec_to_quat(np.array([0.0, 0.0, 1.0])), HOME_QUATERNION)
    decisions, _, measured = drive(shield, lambda now: ee(HOME_POSITION, yawed, t=now), 300)
    assert all("tilt" not in d.fired for d in decisions)
    assert quat_angle(measured.ee.quaternion, yawed) < 1e-6


# --- rate limits ------------------------------------------------------------------------------


def test_jump_is_spread_over_time_within_rate_limits() -> None:
    shield = fresh(tracking=LOOSE)
    target = HOME_POSITION + np.array([0.3, 0.2, -0.3])
    decisions, records, measured = drive(shield, lambda now: ee(target, t=now), 400)
    assert {"velocity", "acceleration", "jerk"} <= set(decisions[0].fired)
    assert verify_trace(records, shield.config) == []
    np.testing.assert_allclose(measured.ee.position, target, atol=1e-9)  # and it arrives exactly
    assert decisions[-1].fired == ()


def test_hold_then_resume_does_not_jump() -> None:
    shield = fresh(tracking=LOOSE)
    target = HOME_POSITION + np.array([0.3, 0.0, 0.0])
    plan = [target] * 30 + [None] * 3 + [target] * 100  # a watchdog hold mid-motion
    _, records, _ = drive(
        shield,
        lambda now: None if plan[round(now / DT) - 1] is None else ee(plan[round(now / DT) - 1], t=now),
        len(plan),
    )
    assert any(r.holding for r in records)
    assert verify_trace(records, shield.config) == []


# --- joints -----------------------------------------------------------------------------------


def test_joint_target_beyond_limit_is_clamped_to_the_margin_band() -> None:
    shield = fresh(tracking=LOOSE)
    cfg = shield.config.joints
    target = HOME_JOINTS.copy()
    target[0] = 10.0
    decisions, records, measured = drive(shield, lambda now: Target(time_s=now, joints=target), 600)
    assert "joint_limit" in decisions[0].fired
    assert verify_trace(records, shield.config) == []
    assert measured.joints[0] <= cfg.max[0] - cfg.margin_rad + 1e-12
    assert measured.joints[0] > cfg.max[0] - cfg.margin_rad - 0.01  # and it gets close


def test_soft_zone_slows_motion_toward_a_limit() -> None:
    def steps_to_reach(soft: float) -> int:
        shield = fresh(tracking=LOOSE, joints={"soft_zone_rad": soft})
        target = HOME_JOINTS.copy()
        target[0] = 3.0
        decisions, _, _ = drive(shield, lambda now: Target(time_s=now, joints=target), 800)
        q0 = [d.target.joints[0] for d in decisions]
        band = shield.config.joints.max[0] - shield.config.joints.margin_rad
        return next(i for i, q in enumerate(q0) if q > band - 0.02)

    assert steps_to_reach(0.5) > steps_to_reach(0.0) + 10


def test_ik_failure_holds() -> None:
    shield = Shield(SafetyConfig(), ik=lambda pose, seed: None)
    shield.reset(home_measured())
    d = shield.filter(ee(HOME_POSITION), home_measured(), 0.0, DT)
    assert d.hold and d.fired == ("ik",)


def test_ik_that_raises_holds() -> None:
    def ik(pose: Pose, seed: np.ndarray) -> np.ndarray:
        raise RuntimeError("solver exploded")

    shield = Shield(SafetyConfig(), ik=ik)
    shield.reset(home_measured())
    d = shield.filter(ee(HOME_POSITION), home_measured(), 0.0, DT)
    assert d.hold and d.fired == ("ik",)


def test_ik_beyond_joint_limits_holds() -> None:
    beyond = HOME_JOINTS.copy()
    beyond[3] = 0.0  # joint 4 max is -0.0698
    seen = []

    def ik(pose: Pose, seed: np.ndarray) -> np.ndarray:
        seen.append((pose, seed))
        return beyond

    shield = Shield(SafetyConfig(), ik=ik)
    shield.reset(home_measured())
    d = shield.filter(ee(HOME_POSITION), home_measured(), 0.0, DT)
    assert d.hold and d.fired == ("joint_limit",)
    np.testing.assert_array_equal(seen[0][1], HOME_JOINTS)  # seeded with the measured joints


def test_without_ik_measured_joints_near_a_limit_hold() -> None:
    near = HOME_JOINTS.copy()
    near[0] = 2.89
    m = Measured(0.0, Pose(HOME_POSITION, HOME_QUATERNION), near, 1.0)
    shield = fresh()
    d = shield.filter(ee(HOME_POSITION), m, 0.0, DT)
    assert d.hold and d.fired == ("joint_limit",)


# --- tracking ---------------------------------------------------------------------------------


def test_far_target_is_clamped_to_the_tracking_bound() -> None:
    shield = fresh()
    d = shield.filter(ee(HOME_POSITION + np.array([0.3, 0.0, 0.0])), home_measured(), 0.0, DT)
    assert "tracking" in d.fired and not d.hold


def test_far_target_holds_in_hold_mode() -> None:
    shield = fresh(tracking={"on_violation": "hold"})
    d = shield.filter(ee(HOME_POSITION + np.array([0.3, 0.0, 0.0])), home_measured(), 0.0, DT)
    assert d.hold and d.fired == ("tracking",)


def test_arm_that_does_not_follow_trips_tracking() -> None:
    shield = fresh()
    stuck = home_measured()  # the arm never moves
    now, held = 0.0, None
    for _ in range(300):
        now += DT
        d = shield.filter(ee(HOME_POSITION + np.array([0.3, 0.0, 0.0]), t=now), stuck, now, DT)
        if d.hold:
            held = d
            break
    assert held is not None and held.fired == ("tracking",)


# --- gripper ----------------------------------------------------------------------------------


def test_gripper_range_and_rate() -> None:
    shield = fresh()
    m = home_measured(gripper=1.0)
    d = shield.filter(ee(HOME_POSITION, gripper=-5.0), m, 0.0, DT)
    assert d.target.gripper == pytest.approx(1.0 - 2.0 * DT)  # rate-limited from the measured 1.0
    assert "gripper" in d.fired
    d2 = shield.filter(ee(HOME_POSITION, gripper=7.0), m, DT, DT)
    assert d2.target.gripper == 1.0  # range


@pytest.mark.parametrize("g", [1.00000002, 1.0000787, 1.0 + 9e-4, -3e-8])
def test_gripper_rounding_is_no_intervention(g: float) -> None:
    """Issue 11: a 15 s demo run counted 563 gripper interventions: the policy's "open",
    interpolated, is 0.99986..1.0000787 (float32 alone: 1.00000002), clamped to 1.0. Below
    ``safety.gripper.tolerance`` (1e-3) the value is clamped but nothing fires."""
    shield = fresh()
    m = home_measured(gripper=max(0.0, min(g, 1.0)))
    d = shield.filter(ee(HOME_POSITION, gripper=g), m, 0.0, DT)
    assert d.target.gripper == max(0.0, min(g, 1.0)) and d.fired == ()
    d2 = fresh().filter(ee(HOME_POSITION, gripper=1.0 + 2e-3), home_measured(gripper=1.0), 0.0, DT)
    assert d2.target.gripper == 1.0 and d2.fired == ("gripper",)


def test_gripper_tolerance_is_validated() -> None:
    with pytest.raises(
        SafetyConfigError, match=r"safety.gripper.tolerance is 0.5, must be below 1% of the gripper range"
    ):
        SafetyConfig.from_mapping({"gripper": {"tolerance": 0.5}})
    exact = fresh(gripper={"tolerance": 0.0})
    assert exact.filter(ee(HOME_POSITION, gripper=1.00000002), home_measured(), 0.0, DT).fired == ("gripper",)


def test_no_gripper_command_stays_none() -> None:
    d = fresh().filter(ee(HOME_POSITION), home_measured(), 0.0, DT)
    assert d.target.gripper is None and d.fired == ()


# --- e-stop -----------------------------------------------------------------------------------


def test_consecutive_refusals_latch_the_estop_until_reset() -> None:
    shield = fresh(estop_after_interventions=5)
    m = home_measured()
    decisions = [shield.filter(ee([math.nan, 0, 0]), m, 0.0, DT) for _ in range(5)]
    assert [d.estop for d in decisions] == [False] * 4 + [True]
    assert shield.estop.active and "5 consecutive" in shield.estop.reason
    after = shield.filter(ee(HOME_POSITION), m, 0.0, DT)  # a good target does not clear it
    assert after.estop and after.hold and after.fired == ("estop",)
    shield.estop.reset()
    shield.reset(m)
    assert not shield.filter(ee(HOME_POSITION), m, 0.0, DT).hold


def test_interleaved_good_targets_reset_the_count() -> None:
    shield = fresh(estop_after_interventions=3)
    m = home_measured()
    for _ in range(10):
        shield.filter(ee([math.nan, 0, 0]), m, 0.0, DT)
        shield.filter(ee(HOME_POSITION), m, 0.0, DT)
    assert not shield.estop.active


def test_watchdog_holds_and_clamps_never_latch_the_estop() -> None:
    shield = fresh(estop_after_interventions=3, tracking=LOOSE)
    m = home_measured()
    for _ in range(10):
        shield.filter(None, m, 0.0, DT)
        shield.filter(ee([0.4, 0, 0.4], t=-1.0), m, 0.0, DT)  # stale
        shield.filter(ee([5.0, 0, 0.4]), m, 0.0, DT)  # clamped into the workspace
    assert not shield.estop.active


def test_operator_trigger_stops_everything() -> None:
    shield = fresh()
    assert shield.estop.trigger("operator: SIGUSR1")
    d = shield.filter(ee(HOME_POSITION), home_measured(), 0.0, DT)
    assert d.estop and d.hold
    assert shield.estop.reason == "operator: SIGUSR1"


def test_non_finite_measured_state_latches_the_estop() -> None:
    shield = fresh()
    bad = Measured(0.0, Pose(np.array([math.nan, 0, 0]), HOME_QUATERNION), HOME_JOINTS, 1.0)
    d = shield.filter(ee(HOME_POSITION), bad, 0.0, DT)
    assert d.estop and d.target is None and shield.estop.active


# --- reporting --------------------------------------------------------------------------------


def test_limits_report_is_json_and_loads_back() -> None:
    import json

    shield = fresh(keep_out=[{"kind": "sphere", "center": [0.5, 0.3, 0.4], "radius": 0.05}])
    report = json.loads(json.dumps(shield.limits_report()))
    assert report["rule_kinds"] == list(SAFETY_RULE_KINDS)
    assert SafetyConfig.from_mapping(report["config"]) == shield.config


def test_ik_lets_the_arm_back_out_of_the_margin_band() -> None:
    deep = HOME_JOINTS.copy()
    deep[3] = -3.05  # joint 4: inside the 0.05 rad margin above its -3.0718 limit
    answers = iter([deep - np.eye(7)[3] * 0.01, deep + np.eye(7)[3] * 0.01])  # deeper, then back out

    shield = Shield(SafetyConfig(), ik=lambda pose, seed: next(answers))
    m = Measured(0.0, Pose(HOME_POSITION, HOME_QUATERNION), deep, 1.0)
    shield.reset(m)
    assert shield.filter(ee(HOME_POSITION), m, 0.0, DT).fired == ("joint_limit",)  # deeper: refused
    d = shield.filter(ee(HOME_POSITION), m, DT, DT)
    assert not d.hold and d.fired == ()  # back toward the band: allowed


def test_resetting_on_every_hold_does_not_defeat_the_estop_count() -> None:
    # The agent resets the shield when it leaves a hold; the count must survive that.
    shield = fresh(estop_after_interventions=4)
    m = home_measured()
    for _ in range(4):
        shield.reset(m)
        d = shield.filter(ee([math.nan, 0, 0]), m, 0.0, DT)
    assert d.estop and shield.estop.active
    shield.estop.reset()
    shield.reset(m)
    assert not shield.filter(ee([math.nan, 0, 0]), m, 0.0, DT).estop  # counted afresh


@pytest.mark.parametrize("mode", ["ee", "joints"])
def test_a_ramp_started_abruptly_is_rejoined_then_passed_unchanged(mode: str) -> None:
    """A target that starts moving at 3 cm/s (0.3 rad/s) at once is too abrupt for the jerk
    limit: the filter falls behind, then rejoins the moving target, lands on it in a state that
    can follow it (no overshoot), and from then on passes it untouched. Without following the
    target's velocity it trailed it for ever by the braking distance at that speed."""
    shield = fresh()
    speed = 0.03 if mode == "ee" else 0.3

    def make(now: float) -> Target:
        if mode == "ee":
            return ee(HOME_POSITION + np.array([0.0, speed * now, 0.0]), t=now)
        q = HOME_JOINTS.copy()
        q[0] += speed * now
        return Target(time_s=now, joints=q)

    decisions, records, _ = drive(shield, make, 200)
    assert verify_trace(records, shield.config) == []
    fired = [i for i, d in enumerate(decisions) if d.fired]
    assert fired and fired[0] == 0 and max(fired) < 40  # trimmed at first, for a few ticks only
    assert fired == list(range(len(fired)))  # and never again once it has rejoined
    last = decisions[-1].target
    assert last is not None
    got = last.ee.position[1] if mode == "ee" else last.joints[0] - HOME_JOINTS[0]
    assert got == pytest.approx(speed * 2.0, abs=1e-12)  # exactly on the target


@pytest.mark.parametrize(("factor", "held"), [(0.9, False), (1.1, True)])
def test_ik_needing_joints_faster_than_their_limit_holds(factor: float, held: bool) -> None:
    """Near a singularity a tiny Cartesian step can need a large joint step: hold, not lag."""
    config = SafetyConfig()
    step = np.asarray(config.joints.max_velocity) * config.joints.ik_velocity_factor * DT

    def ik(pose: Pose, seed: np.ndarray) -> np.ndarray:
        return seed + factor * step

    shield = Shield(config, ik=ik)
    shield.reset(home_measured())
    d = shield.filter(ee(HOME_POSITION + np.array([0.0, 0.01, 0.0])), home_measured(), 0.0, DT)
    assert d.hold == held
    assert ("velocity" in d.fired) if held else ("ik" not in d.fired and "joint_limit" not in d.fired)


def test_rounding_dust_on_the_gripper_is_no_intervention() -> None:
    shield = fresh()
    d = shield.filter(ee(HOME_POSITION, gripper=1.0 + 2e-16), home_measured(), 0.0, DT)
    assert d.fired == () and d.target is not None and d.target.gripper == 1.0

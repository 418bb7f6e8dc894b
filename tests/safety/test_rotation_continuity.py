"""Issue 10, kind 5, the shield's half: an orientation is one orientation, however it is written.

A target rotation vector that wraps from +3.107 to -3.107 rad (the policy turning the tool past
180 degrees), or a quaternion whose sign flips (q and -q), must not read as a 6 rad jump
anywhere the shield differences or interpolates rotations (tracking bound, tilt, rate limits,
the target's velocity) nor in ``verify_trace``. Property: re-expressing every orientation of a
sequence with another representative gives the same shield output.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import Decision, Measured, Pose, SafetyConfig, Shield, StepRecord, Target, verify_trace
from safety.config import tool_tilt
from safety.rotations import (
    quat_angle,
    quat_conjugate,
    quat_multiply,
    quat_nearest,
    quat_to_rotvec,
    rotvec_nearest,
    rotvec_to_quat,
    unwrap_angles,
)

from ._helpers import HOME_POSITION, HOME_QUATERNION, follow, home_measured

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DT = 0.01
LOOSE = {"tracking": {"max_translation_m": 10.0, "max_rotation_rad": 4.0, "max_joint_rad": 10.0}}
CONFIGS = {
    "default": {},  # tracking clamp at 0.5 rad: slerp from the measured orientation
    "loose": LOOSE,  # the rate limits alone
    "tilt": {**LOOSE, "orientation": {"max_tilt_rad": 0.4}},  # the tilt cone as well
}


def principal(v: np.ndarray) -> np.ndarray:
    """The rotation vector with angle in [0, pi] (what quat_to_rotvec, and most code, gives)."""
    return quat_to_rotvec(rotvec_to_quat(v))


def run(shield: Shield, quats: list[np.ndarray], start: np.ndarray | None = None) -> list[Decision]:
    """From rest at ``start`` (default ``quats[0]``), feed one target a tick (fixed position,
    orientation ``quats[k]``), the arm obeying."""
    home = home_measured()
    start = quats[0] if start is None else start
    measured = Measured(time_s=0.0, ee=Pose(HOME_POSITION, start), joints=home.joints, gripper=1.0)
    shield.reset(measured)
    out = []
    for k, q in enumerate(quats):
        now = (k + 1) * DT
        d = shield.filter(Target(time_s=now, ee=Pose(HOME_POSITION, q)), measured, now, DT)
        out.append(d)
        measured = follow(measured, d.target, now)
    return out


def same(a: list[Decision], b: list[Decision], atol: float = 0.0) -> None:
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        assert (x.hold, x.fired) == (y.hold, y.fired), k
        assert (
            x.target is not None
            and y.target is not None
            and x.target.ee is not None
            and y.target.ee is not None
        )
        if atol == 0.0:
            assert np.array_equal(x.target.ee.position, y.target.ee.position), k
            assert np.array_equal(x.target.ee.quaternion, y.target.ee.quaternion), k
        else:
            np.testing.assert_allclose(x.target.ee.position, y.target.ee.position, atol=atol, rtol=0)
            np.testing.assert_allclose(x.target.ee.quaternion, y.target.ee.quaternion, atol=atol, rtol=0)


# A random walk of rotation vectors that starts near the +-pi boundary and wanders across it:
# "rough", steps up to 0.1 rad a tick (10 rad/s: the rate limits engage); "smooth", a random
# walk of the angular velocity, within every limit (the targets pass unchanged).
axis = st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(0.1, 1))
walk = st.tuples(
    axis,
    st.floats(math.pi - 0.3, math.pi + 0.3),
    st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(-1, 1)), min_size=20, max_size=60),
    st.sampled_from(["rough", "smooth"]),
)


def rotvecs(w: tuple) -> list[np.ndarray]:  # type: ignore[type-arg]
    """Unwrapped rotation vectors (the angle may pass pi) of the walk, relative to tool-down."""
    u = np.array(w[0]) / np.linalg.norm(w[0])
    v = u * w[1]
    omega = np.zeros(3) if w[3] == "smooth" else None
    out = [v]
    for step in w[2]:
        if omega is None:
            v = v + 0.1 * np.array(step)
        else:
            omega = omega + 1e-5 * np.array(step)  # rad a tick: 0.1 rad/s^2 a tick at most
            v = v + omega
        out.append(v)
    return out


def oriented(v: np.ndarray) -> np.ndarray:
    return quat_multiply(rotvec_to_quat(v), HOME_QUATERNION)


@PROPS
@given(
    w=walk, flips=st.lists(st.booleans(), min_size=61, max_size=61), config=st.sampled_from(sorted(CONFIGS))
)
def test_negated_quaternions_give_identical_output(w: tuple, flips: list[bool], config: str) -> None:
    quats = [oriented(v) for v in rotvecs(w)]
    negated = [-q if f else q for q, f in zip(quats, flips, strict=False)]
    cfg = SafetyConfig.from_mapping(CONFIGS[config])
    # The same arm (its measured quaternion as it is); only the targets are re-expressed.
    same(run(Shield(cfg), quats), run(Shield(cfg), negated, start=quats[0]))


@PROPS
@given(w=walk, config=st.sampled_from(sorted(CONFIGS)))
def test_the_other_rotation_vector_representative_gives_the_same_output(w: tuple, config: str) -> None:
    unwrapped = rotvecs(w)
    cfg = SafetyConfig.from_mapping(CONFIGS[config])
    a = run(Shield(cfg), [oriented(v) for v in unwrapped])
    b = run(Shield(cfg), [oriented(principal(v)) for v in unwrapped], start=oriented(unwrapped[0]))
    same(a, b, atol=1e-9)


def test_turning_the_tool_past_180_degrees_keeps_turning_the_same_way() -> None:
    """The example: tool down, the policy turning it +2 degrees an action about the vertical past
    180 degrees; the waypoint rotation vectors wrap from +3.107 to -3.107. The shield's output
    turns one way, within the rotation rate limit, and arrives at the last target."""
    cfg = SafetyConfig.from_mapping(LOOSE)
    shield = Shield(cfg)
    angles = np.radians(170.0 + 2.0 * np.minimum(np.arange(400) // 5, 10))  # 170 .. 190 degrees
    wrapped = [principal(np.array([0.0, 0.0, a])) for a in angles]
    assert wrapped[-1][2] < -2.9 < 2.9 < wrapped[0][2]  # the targets do wrap across pi
    # Start at 170 degrees, as a previous run left it.
    start = oriented(np.array([0.0, 0.0, angles[0]]))
    shield.reset(home_measured())
    measured = home_measured()
    measured = type(measured)(time_s=0.0, ee=Pose(HOME_POSITION, start), joints=measured.joints, gripper=1.0)
    shield.reset(measured)
    records, turns = [], []
    prev = start
    for k, v in enumerate(wrapped):
        now = (k + 1) * DT
        d = shield.filter(Target(time_s=now, ee=Pose(HOME_POSITION, oriented(v))), measured, now, DT)
        assert d.target is not None and d.target.ee is not None and not d.hold
        records.append(StepRecord.from_decision(d, now, DT))
        q = d.target.ee.quaternion
        turns.append(quat_to_rotvec(quat_multiply(q, quat_conjugate(prev))))
        prev = q
        measured = follow(measured, d.target, now)
    turn_z = np.array([t[2] for t in turns])
    assert (turn_z >= -1e-12).all()  # never back the other way round
    assert np.abs(turn_z).max() <= cfg.rotation.max_velocity * DT * (1 + 1e-9)
    assert quat_angle(prev, oriented(np.array([0.0, 0.0, np.radians(190.0)]))) < 1e-9
    assert turn_z.sum() == pytest.approx(np.radians(20.0), abs=1e-9)  # 20 degrees, not 340
    assert verify_trace(records, cfg) == []


@PROPS
@given(w=walk, flips=st.lists(st.booleans(), min_size=61, max_size=61))
def test_verify_trace_reads_negated_quaternions_the_same(w: tuple, flips: list[bool]) -> None:
    cfg = SafetyConfig.from_mapping({**LOOSE, "rotation": {"max_velocity": 3.0}})
    decisions = run(Shield(SafetyConfig.from_mapping(LOOSE)), [oriented(v) for v in rotvecs(w)])
    records = [StepRecord.from_decision(d, (k + 1) * DT, DT) for k, d in enumerate(decisions)]
    negated = [
        dataclasses.replace(
            r, safe=dataclasses.replace(r.safe, ee=Pose(r.safe.ee.position, -r.safe.ee.quaternion))
        )
        if f
        else r
        for r, f in zip(records, flips, strict=False)
    ]
    # Checked against looser limits than it ran with, and against tighter ones (which it breaks).
    assert verify_trace(records, cfg) == verify_trace(negated, cfg) == []
    tight = SafetyConfig.from_mapping({"rotation": {"max_velocity": 0.2}})
    assert [(v.index, v.kind) for v in verify_trace(records, tight)] == [
        (v.index, v.kind) for v in verify_trace(negated, tight)
    ]


# --- the helpers the agent uses to keep its own rotations continuous -----------------------------


@pytest.mark.parametrize(
    ("v", "ref", "expected"),
    [
        ([0, 0, -3.107], [0, 0, 3.1], [0, 0, 2 * math.pi - 3.107]),  # across +-pi
        ([0, 0, 3.107], [0, 0, -3.1], [0, 0, 3.107 - 2 * math.pi]),  # the other way
        ([0, 0, 1.0], [0, 0, 0.9], [0, 0, 1.0]),  # already nearest
        ([0, 0, 0.0], [0, 0, 6.2], [0, 0, 2 * math.pi]),  # the identity, one turn on
        ([0.5, 0, 0], [0, 0, 0], [0.5, 0, 0]),  # near zero stays principal
    ],
)
def test_rotvec_nearest(v: list, ref: list, expected: list) -> None:
    np.testing.assert_allclose(rotvec_nearest(np.array(v, float), np.array(ref, float)), expected, atol=1e-12)


@given(
    v=st.tuples(st.floats(-4, 4), st.floats(-4, 4), st.floats(-4, 4)),
    ref=st.tuples(st.floats(-10, 10), st.floats(-10, 10), st.floats(-10, 10)),
)
def test_rotvec_nearest_is_the_same_rotation_and_nearest(v: tuple, ref: tuple) -> None:
    v_arr, ref_arr = np.array(v), np.array(ref)
    out = rotvec_nearest(v_arr, ref_arr)
    assert quat_angle(rotvec_to_quat(out), rotvec_to_quat(v_arr)) < 1e-6
    theta = float(np.linalg.norm(out))
    if theta > 1e-6:  # the neighbours one turn either way are no nearer
        u = out / theta
        for k in (-1, 1):
            assert (
                np.linalg.norm(out - ref_arr)
                <= np.linalg.norm(u * (theta + 2 * math.pi * k) - ref_arr) + 1e-9
            )


def test_unwrap_angles_follows_the_reference() -> None:
    np.testing.assert_allclose(
        unwrap_angles(np.array([3.1416, 0.1, -3.1]), np.array([-3.14, 0.0, 3.1])),
        [3.1416 - 2 * math.pi, 0.1, -3.1 + 2 * math.pi],
    )


@pytest.mark.parametrize(
    "q",
    [
        [1.0, 0.0, 0.0, 0.0],  # a half turn about x: w = 0 exactly
        [0.0, -1.0, 0.0, 0.0],
        [0.6, 0.0, -0.8, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ],
)
def test_q_and_minus_q_give_the_same_rotation_vector_even_at_a_half_turn(q: list) -> None:
    qa = np.array(q)
    assert np.array_equal(quat_to_rotvec(qa), quat_to_rotvec(-qa))
    assert np.array_equal(
        quat_nearest(qa, np.array([0.0, 0.0, 0.0, 1.0])), quat_nearest(-qa, np.array([0, 0, 0, 1.0]))
    )


def test_a_long_turn_about_the_vertical_stays_a_turn_about_the_vertical() -> None:
    """Tool tilted 0.4 rad (the cone's edge), then turned 3 rad about the vertical: the turn
    keeps the tilt. Each axis of the rotation filter moves on its own, so full steps on the
    small axes beside a partial one on the large axis were not a step along the turn; the error
    grew tick after tick and the tool left its cone by 0.02 rad. The filter now aims a little
    ahead along the turn."""
    cfg = SafetyConfig.from_mapping(
        {"orientation": {"max_tilt_rad": 0.4}, "tracking": {"max_rotation_rad": 4.0}}
    )
    shield = Shield(cfg)
    start = oriented(np.array([0.0, 0.4, 0.0]))
    target = quat_multiply(rotvec_to_quat(np.array([0.0, 0.0, 3.0])), start)
    decisions = run(shield, [target] * 700, start=start)  # 3 rad at 1 / sqrt(3) rad/s a axis
    nominal = np.array(cfg.orientation.nominal_quaternion)
    prev = start
    for d in decisions:
        assert d.target is not None and d.target.ee is not None and not d.hold
        q = d.target.ee.quaternion
        assert tool_tilt(nominal, q) <= 0.4 + 1e-9
        step = quat_to_rotvec(quat_multiply(q, quat_conjugate(prev)))
        assert abs(step[0]) + abs(step[1]) < 1e-9  # about the vertical only
        prev = q
    assert quat_angle(prev, target) < 1e-9


@pytest.mark.xfail(
    strict=True,
    reason="known hole, not fixed: the rotation filter moves each world axis on its own toward the "
    "shortest rotation, which need not keep the tool axis in its tilt cone (0.016 rad past a 0.4 "
    "rad cone here; up to 0.7 rad with smooth random targets). Needs the cone as a constraint "
    "of the filter (e.g. swing-twist coordinates) and a tilt check in verify_trace.",
)
def test_the_commanded_tool_axis_never_leaves_its_cone() -> None:
    cfg = SafetyConfig.from_mapping(
        {"orientation": {"max_tilt_rad": 0.4}, "tracking": {"max_rotation_rad": 4.0}}
    )
    start = oriented(np.array([0.0, 0.4, 0.0]))  # on the cone's edge, toward +y
    # On the opposite edge, twisted 3 rad: the shortest rotation there swings the tool axis out.
    target = quat_multiply(rotvec_to_quat(np.array([0.0, -0.4, 0.0])), oriented(np.array([0.0, 0.0, 3.0])))
    decisions = run(Shield(cfg), [target] * 900, start=start)
    nominal = np.array(cfg.orientation.nominal_quaternion)
    worst = max(
        tool_tilt(nominal, d.target.ee.quaternion) for d in decisions if d.target and d.target.ee is not None
    )
    assert worst <= 0.4 + 1e-9, worst

"""Properties of the shield: nothing breaks a limit, and what is already safe passes untouched.

Adversarial sequences mix NaN, inf, 10 m and 1e6 m jumps, oscillation at the tick rate, random
orientations, missing targets, garbage grippers and arbitrary tick dts; the recorded safe
commands are then checked by ``verify_trace`` (position box, keep-out, joint band, velocity,
acceleration, jerk, gripper) at 1e-9 relative tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from safety import Pose, SafetyConfig, Shield, StepRecord, Target, verify_trace
from safety.rotations import quat_multiply, rotvec_to_quat

from ._helpers import HOME_JOINTS, HOME_POSITION, HOME_QUATERNION, follow, home_measured

PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONFIGS = {
    "default": {},
    # Tracking bound out of the way, so the motion filter meets raw far-away targets.
    "loose_tracking": {
        "tracking": {"max_translation_m": 50.0, "max_rotation_rad": 4.0, "max_joint_rad": 50.0}
    },
    "keep_out": {
        "tracking": {"max_translation_m": 50.0, "max_rotation_rad": 4.0, "max_joint_rad": 50.0},
        "keep_out": [
            {"kind": "sphere", "name": "camera", "center": [0.5, 0.15, 0.3], "radius": 0.08},
            {"kind": "box", "name": "fixture", "min": [0.55, -0.3, 0.02], "max": [0.7, -0.1, 0.2]},
            {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.05},
            {"kind": "half_space", "name": "slanted wall", "normal": [-1, 0, -0.3], "offset": -0.9},
        ],
        # Fast and jerky limits: more room for overshoot, a harder test of braking.
        "translation": {"max_velocity": 1.5, "max_acceleration": 10.0, "max_jerk": 2000.0},
    },
    # Room to reach full speed before a wall: the velocity and jerk bounds meet.
    "big_workspace": {
        "workspace": {"min": [-3.0, -3.0, -3.0], "max": [3.0, 3.0, 3.0]},
        "tracking": {"max_translation_m": 50.0, "max_rotation_rad": 4.0, "max_joint_rad": 50.0},
        "joints": {"margin_rad": 0.0, "soft_zone_rad": 0.0},
    },
    "reject_and_tilt": {
        "on_workspace_violation": "reject",
        "orientation": {"max_tilt_rad": 0.6},
        "estop_after_interventions": 0,
        "tracking": {"max_translation_m": 50.0, "max_rotation_rad": 4.0, "max_joint_rad": 50.0},
    },
}

finite = st.floats(-1.0, 1.0)
BAD = np.array([math.nan, math.inf, -math.inf])


@st.composite
def segments(draw: st.DrawFn) -> list[tuple[str, int, float, float, int]]:
    """A command sequence as a few segments (kind, length, dt, magnitude, seed).

    Hypothesis picks the structure and shrinks it; numpy fills in each tick from the seed,
    which keeps generation fast enough for long sequences (reaching full speed takes time).
    """
    kinds = st.sampled_from(["far", "far", "oscillate", "random", "bad", "none", "stale", "smooth"])
    dt = st.one_of(st.floats(5e-4, 0.1), st.sampled_from([0.004, 0.01, -1.0]))  # -1: jitter each tick
    magnitude = st.one_of(st.floats(0.0, 2.0), st.sampled_from([10.0, 1e6]))
    return draw(
        st.lists(
            st.tuples(kinds, st.integers(1, 80), dt, magnitude, st.integers(0, 2**31)),
            min_size=1,
            max_size=6,
        )
    )


def expand(
    segs: list[tuple[str, int, float, float, int]], *, joints: bool
) -> list[tuple[float, Target | None]]:
    """Turn segments into (dt, target) ticks; target times are relative to now (stale: -5 s)."""
    out: list[tuple[float, Target | None]] = []
    for kind, length, dt, mag, seed in segs:
        rng = np.random.default_rng(seed)
        direction = rng.normal(size=7 if joints else 3)
        direction /= np.linalg.norm(direction)
        rot = rng.normal(size=3) * min(mag, 3.0)
        for k in range(length):
            tick = dt if dt > 0 else float(np.exp(rng.uniform(np.log(5e-4), np.log(0.1))))
            if kind == "none":
                out.append((tick, None))
                continue
            sign = 1.0 if k % 2 else -1.0
            offset = {
                "far": mag * direction,
                "oscillate": sign * mag * direction,
                "random": rng.uniform(-1.5, 1.5, size=direction.size) * max(mag, 0.1),
                "bad": np.where(rng.random(direction.size) < 0.5, rng.choice(BAD, direction.size), 0.0),
                "stale": mag * direction,
                "smooth": 0.05 * np.sin(0.3 * k) * direction,
            }[kind]
            g = [None, float(rng.uniform(-2, 3)), math.nan][int(rng.integers(0, 3))]
            age = 5.0 if kind == "stale" else 0.0
            if joints:
                out.append((tick, Target(time_s=-age, joints=HOME_JOINTS + offset, gripper=g)))
                continue
            if kind == "random":
                quat = rng.normal(size=4) if rng.random() < 0.9 else np.zeros(4)
            elif kind == "bad":
                quat = np.array([rng.choice(BAD), 0.0, 0.0, 1.0])
            else:
                quat = quat_multiply(
                    rotvec_to_quat(rot * (sign if kind == "oscillate" else 1.0)), HOME_QUATERNION
                )
            out.append((tick, Target(time_s=-age, ee=Pose(HOME_POSITION + offset, quat), gripper=g)))
    return out


def run(config: SafetyConfig, commands: list[tuple[float, Target | None]]) -> list[StepRecord]:
    """Drive the shield with the arm obeying; targets are stamped relative to now."""
    shield = Shield(config)
    measured = home_measured()
    shield.reset(measured)
    now = 0.0
    records = []
    for dt, target in commands:
        now += dt
        if target is not None:
            target = Target(
                time_s=now + target.time_s, ee=target.ee, joints=target.joints, gripper=target.gripper
            )
        decision = shield.filter(target, measured, now, dt)
        records.append(StepRecord.from_decision(decision, now, dt))
        if decision.target is not None:
            for value in (decision.target.joints, decision.target.gripper):
                assert value is None or bool(np.all(np.isfinite(value)))
            if decision.target.ee is not None:
                assert np.all(np.isfinite(decision.target.ee.position))
                assert np.all(np.isfinite(decision.target.ee.quaternion))
        measured = follow(measured, decision.target, now)
    return records


def assert_clean(records: list[StepRecord], config: SafetyConfig) -> None:
    violations = verify_trace(records, config)
    assert violations == [], "\n".join(str(v) for v in violations[:10])


@PROPS
@given(name=st.sampled_from(sorted(CONFIGS)), segs=segments())
def test_ee_outputs_never_break_a_limit(name: str, segs: list) -> None:
    config = SafetyConfig.from_mapping(CONFIGS[name])
    assert_clean(run(config, expand(segs, joints=False)), config)


@PROPS
@given(name=st.sampled_from(sorted(CONFIGS)), segs=segments())
def test_joint_outputs_never_break_a_limit(name: str, segs: list) -> None:
    config = SafetyConfig.from_mapping(CONFIGS[name])
    assert_clean(run(config, expand(segs, joints=True)), config)


@PROPS
@given(name=st.sampled_from(sorted(CONFIGS)), first=segments(), second=segments())
def test_switching_between_ee_and_joint_targets_never_breaks_a_limit(
    name: str, first: list, second: list
) -> None:
    config = SafetyConfig.from_mapping(CONFIGS[name])
    ticks = expand(first, joints=False) + expand(second, joints=True) + expand(first, joints=False)
    assert_clean(run(config, ticks), config)


def _smooth(t: np.ndarray, omega: float) -> np.ndarray:
    """Starts at rest with zero acceleration: (1 - cos wt)^2, between 0 and 4."""
    return (1.0 - np.cos(omega * t)) ** 2


@PROPS
@given(
    fraction=st.floats(0.02, 0.25),
    omega=st.floats(0.5, 6.0),
    dt=st.floats(0.002, 0.02),
    direction=st.tuples(finite, finite, finite).filter(lambda d: sum(x * x for x in d) > 0.01),
    joints=st.booleans(),
)
@example(fraction=0.25, omega=1.0, dt=0.015625, direction=(-1.0, 0.0, 0.0), joints=False)  # towards x min
def test_smooth_input_inside_all_limits_passes_unchanged(
    fraction: float, omega: float, dt: float, direction: tuple[float, float, float], joints: bool
) -> None:
    config = SafetyConfig()
    t_, r_, j_ = config.translation, config.rotation, config.joints

    # Peak derivatives of A * f: |f'| <= 2.6 w, |f''| <= 6 w^2, |f'''| <= 20 w^3; keep each a
    # fraction of the per-axis limit (the shield enforces norms at limit / sqrt(3)).
    def amplitude(v: float, a: float, j: float) -> float:
        return fraction * min(v / (2.6 * omega), a / (6 * omega**2), j / (20 * omega**3)) / math.sqrt(3)

    # The path reaches 4 * amp_t from home: keep it, and the braking distance at its speed, inside
    # the workspace (a path heading into a wall must be slowed: that is not "inside all limits").
    room = min(
        min(h - lo, hi - h)
        for h, lo, hi in zip(HOME_POSITION, config.workspace.min, config.workspace.max, strict=True)
    )
    amp_t = min(amplitude(t_.max_velocity, t_.max_acceleration, t_.max_jerk), 0.03, room / 5)
    amp_r = min(amplitude(r_.max_velocity, r_.max_acceleration, r_.max_jerk), 0.1)
    amp_j = min(amplitude(min(j_.max_velocity), min(j_.max_acceleration), min(j_.max_jerk)), 0.1)
    u = np.array(direction) / np.linalg.norm(direction)
    times = np.arange(1, int(2.0 / dt)) * dt
    shield = Shield(config)
    measured = home_measured()
    shield.reset(measured)
    g0 = measured.gripper
    for now in times:
        f = float(_smooth(np.array([now]), omega)[0])
        g = g0 - fraction * 0.05 * f
        if joints:
            target = Target(time_s=now, joints=HOME_JOINTS + amp_j * f * np.resize(u, 7), gripper=g)
        else:
            quat = quat_multiply(rotvec_to_quat(amp_r * f * u[::-1]), HOME_QUATERNION)
            target = Target(time_s=now, ee=Pose(HOME_POSITION + amp_t * f * u, quat), gripper=g)
        decision = shield.filter(target, measured, float(now), dt)
        assert decision.fired == () and not decision.hold, (now, decision.fired)
        out = decision.target
        assert out is not None and out.gripper == g
        if joints:
            assert np.array_equal(out.joints, target.joints)
        else:
            assert np.array_equal(out.ee.position, target.ee.position)
            np.testing.assert_allclose(out.ee.quaternion, target.ee.quaternion, rtol=0, atol=1e-15)
        measured = follow(measured, out, float(now))


@PROPS
@given(
    dt=st.one_of(st.floats(1e-3, 0.05), st.just(-1.0)),
    seed=st.integers(0, 2**31),
    joints=st.booleans(),
    legs=st.integers(1, 3),
)
def test_full_speed_runs_keep_every_bound(dt: float, seed: int, joints: bool, legs: int) -> None:
    """Long runs toward far targets: velocity, acceleration and jerk all meet their bounds."""
    config = SafetyConfig.from_mapping(CONFIGS["big_workspace"])
    # Far enough (and long enough) to reach full speed, then reverse: the bounds meet.
    segs = [
        ("far" if k % 2 == 0 else "oscillate", 60 if dt > 0.01 else 150, dt, 2.5, seed + k)
        for k in range(legs)
    ]
    assert_clean(run(config, expand(segs, joints=joints)), config)


@pytest.mark.parametrize("dt", [0.004, 0.0123, 0.01, 0.0371, 0.001])
@pytest.mark.parametrize("joints", [False, True])
def test_back_and_forth_at_awkward_dts(dt: float, joints: bool) -> None:
    """A regression guard: at these dts the velocity limit is reached mid-tick, where a filter
    without velocity viability has no admissible step left (found when that bound was dropped)."""
    config = SafetyConfig.from_mapping(CONFIGS["big_workspace"])
    n = int(2.0 / dt)
    ticks: list[tuple[float, Target | None]] = []
    for k in range(3 * n):
        sign = 1.0 if (k // n) % 2 else -1.0
        if joints:
            ticks.append((dt, Target(time_s=0.0, joints=HOME_JOINTS + sign * 1.0)))
        else:
            quat = quat_multiply(rotvec_to_quat(np.array([0.0, 0.0, sign * 2.0])), HOME_QUATERNION)
            ticks.append(
                (dt, Target(time_s=0.0, ee=Pose(HOME_POSITION + sign * np.array([2.0, 1.0, 1.0]), quat)))
            )
    assert_clean(run(config, ticks), config)

"""The shield on compiled kernels decides what the numpy shield before them decided, bit for bit.

``safety.ee_kernels`` runs the end effector's per-tick maths in compiled calls (issue 13);
``_shield_reference.py`` is the shield as it was before (22fbb8f, on the numpy motion filter of
``_motion_reference.py``), kept as the oracle. Both get the same targets and the same measured
states (an arm that follows the commands, now and then knocked off them); every decision must
match: hold, e-stop, the rules that fired, and every bit of the command. Run compiled and
interpreted (numba absent), over configurations that reach every branch: keep-out zones, the
tool's points or none, a tilt limit, reject mode, tracking holds, seeds outside the allowed set.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import (
    Decision,
    Measured,
    Pose,
    SafetyConfig,
    Shield,
    Target,
    compiled,
    ee_kernels,
    motion,
    rotation_kernels,
    zones,
)
from safety import shield as shield_module
from safety.rotations import quat_multiply, quat_normalize, rotvec_to_quat

from . import _shield_reference as reference
from . import _zones_reference
from ._helpers import HOME_JOINTS, HOME_POSITION, HOME_QUATERNION, interpreted_kernels

KEEP_OUT = [
    {"kind": "sphere", "name": "camera", "center": [0.5, 0.15, 0.3], "radius": 0.08},
    {"kind": "box", "name": "fixture", "min": [0.55, -0.3, 0.02], "max": [0.7, -0.1, 0.2]},
    {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": 0.05},
]

configs = st.fixed_dictionaries(
    {},
    optional={
        "keep_out": st.just(KEEP_OUT),
        "tool": st.just({"points": []}),
        "orientation": st.just({"max_tilt_rad": 0.3}),
        "on_workspace_violation": st.just("reject"),
        "tracking": st.just({"on_violation": "hold"}),
    },
).map(lambda c: {**c, "estop_after_interventions": 0})

finite = st.floats(-1.0, 1.0, allow_nan=False)
quat_parts = st.tuples(finite, finite, finite, finite).filter(lambda q: sum(v * v for v in q) > 0.01)

# One tick: what the target is, how the tick goes.
ticks = st.tuples(
    st.sampled_from(["near", "near", "near", "jump", "around", "floor", "nan", "none", "joints"]),
    st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.floats(-1.0, 1.0)),  # a direction
    quat_parts,
    st.sampled_from([0.01, 0.01, 0.01, 0.004, 0.05, 0.2]),  # dt: 0.2 is a stall
    st.sampled_from([0.0, 0.0, 0.0, 0.0, 0.003, 0.2]),  # how far the arm is knocked off
)


def _target(kind: str, u: np.ndarray, q: np.ndarray, last: Decision | None, now: float) -> Target | None:
    ee = last.target.ee if last is not None and last.target is not None else None
    base_p = ee.position if ee is not None else HOME_POSITION
    base_q = ee.quaternion if ee is not None else HOME_QUATERNION
    if kind == "none":
        return None
    if kind == "joints":
        return Target(time_s=now, joints=HOME_JOINTS + 0.05 * u.sum(), gripper=0.5)
    if kind == "near":  # a smooth step, and a small turn
        quat = quat_multiply(rotvec_to_quat(0.02 * u), base_q)
        return Target(time_s=now, ee=Pose(base_p + 0.003 * u, quat), gripper=1.0)
    if kind == "jump":
        return Target(time_s=now, ee=Pose(HOME_POSITION + 5.0 * u, q), gripper=2.0)
    if kind == "around":  # in and around the workspace, any orientation
        return Target(time_s=now, ee=Pose(np.array([0.5, 0.0, 0.35]) + 0.45 * u, q), gripper=0.0)
    if kind == "floor":  # at the floor, tilted: the tool's points reach below the TCP
        turn = quat_multiply(rotvec_to_quat(0.8 * u), HOME_QUATERNION)
        return Target(
            time_s=now, ee=Pose(np.array([0.45, 0.1 * u[1], 0.03 + 0.05 * abs(u[2])]), turn), gripper=1.0
        )
    return Target(time_s=now, ee=Pose(np.array([math.nan, 0.0, 0.4]), q), gripper=1.0)


def _same(got: Decision, want: Decision, k: int) -> None:
    assert (got.hold, got.estop, got.fired) == (want.hold, want.estop, want.fired), k
    assert (got.target is None) == (want.target is None), k
    if got.target is None or want.target is None:
        return
    a, b = got.target, want.target
    assert a.gripper == b.gripper or (
        a.gripper is not None and b.gripper is not None and math.isnan(a.gripper)
    )
    for x, y in (
        (a.joints, b.joints),
        *(
            ((a.ee.position, b.ee.position), (a.ee.quaternion, b.ee.quaternion))
            if a.ee is not None and b.ee is not None
            else ()
        ),
    ):
        assert (x is None) == (y is None), k
        if x is not None:
            assert np.asarray(x, dtype=float).tobytes() == np.asarray(y, dtype=float).tobytes(), (k, x, y)
    assert (a.ee is None) == (b.ee is None), k


@pytest.fixture(params=["compiled", "interpreted"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the kernels run: compiled by numba, and as plain Python (numba absent)."""
    if request.param == "interpreted":
        interpreted_kernels(monkeypatch, shield_module, ee_kernels, motion, rotation_kernels, zones, compiled)
    return str(request.param)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.filter_too_much,
    ],
)
@given(
    overrides=configs,
    start=st.tuples(st.floats(0.2, 0.8), st.floats(-0.4, 0.4), st.floats(0.0, 0.75)),
    start_turn=st.tuples(st.floats(-0.6, 0.6), st.floats(-0.6, 0.6), st.floats(-3.0, 3.0)),
    sequence=st.lists(ticks, min_size=10, max_size=40),
)
def test_the_shield_decides_as_the_numpy_shield_did(
    mode: str,
    overrides: dict[str, object],
    start: tuple[float, float, float],
    start_turn: tuple[float, float, float],
    sequence: list[tuple[str, tuple[float, float, float], tuple[float, ...], float, float]],
) -> None:
    config = SafetyConfig.from_mapping(overrides)
    new, old = Shield(config), reference.Shield(config)
    # Seeded anywhere, in zones and out of the workspace too: leaving them is part of the test.
    quat0 = quat_multiply(rotvec_to_quat(np.array(start_turn)), HOME_QUATERNION)
    measured = Measured(0.0, Pose(np.array(start), quat0), HOME_JOINTS.copy(), 1.0)
    new.reset(measured)
    old.reset(measured)
    now, last = 0.0, None
    for k, (kind, direction, q, dt, knock) in enumerate(sequence):
        now += dt
        u = np.array(direction)
        target = _target(kind, u, quat_normalize(np.array(q)), last, now)
        got = new.filter(target, measured, now, dt)
        want = old.filter(target, measured, now, dt)
        _same(got, want, k)
        last = got
        out = got.target
        if out is not None:
            ee = out.ee if out.ee is not None else measured.ee
            if knock:  # the arm off its command: tracking bounds, an arm inside a zone
                ee = Pose(np.asarray(ee.position) + knock * u, ee.quaternion)
            joints = out.joints if out.joints is not None else measured.joints
            gripper = out.gripper if out.gripper is not None else measured.gripper
            measured = Measured(now, ee, np.asarray(joints), gripper)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tool=st.integers(0, 14).flatmap(
        lambda n: st.lists(st.tuples(*[st.floats(-0.15, 0.15)] * 3), min_size=n, max_size=n)
    ),
    keep_out=st.booleans(),
    p=st.tuples(
        st.floats(0.0, 1.0), st.floats(-0.6, 0.6), st.floats(-0.2, 0.4)
    ),  # mostly where the tool lifts
    qa=quat_parts,
    qb=quat_parts,
    both=st.booleans(),
)
def test_zone_projections_match_the_numpy_ones(
    mode: str,
    tool: list[tuple[float, float, float]],
    keep_out: bool,
    p: tuple[float, float, float],
    qa: tuple[float, ...],
    qb: tuple[float, ...],
    both: bool,
) -> None:
    """Zones.project and Zones.project_tool (compiled) against 22fbb8f's numpy ones, for any
    number of tool points (one point is a matrix-vector product, which numpy rounds otherwise)."""
    config = SafetyConfig.from_mapping({"keep_out": KEEP_OUT if keep_out else []})
    args = (config.workspace, config.keep_out, config.keep_out_margin_m, np.array(tool).reshape(-1, 3))
    new, old = zones.Zones(*args), _zones_reference.Zones(*args)
    pa = np.array(p)
    quats = (np.array(qa), np.array(qb)) if both else (np.array(qa),)
    for got, want in (
        (new.project(pa), old.project(pa)),
        (new.project_tool(pa, quats), old.project_tool(pa, quats)),
    ):
        assert (got is None) == (want is None)
        if got is not None and want is not None:
            assert got.tobytes() == want.tobytes(), (got, want)


@pytest.mark.parametrize("n_points", [1, 2, 12])
def test_tool_projection_at_the_floor_matches_the_numpy_one(n_points: int) -> None:
    """Lifted off the floor, the TCP's height is the floor minus a point's offset: every bit of
    the offsets shows (one point is a matrix-vector product in numpy's BLAS, rounded otherwise)."""
    rng = np.random.default_rng(n_points)
    config = SafetyConfig.from_mapping({})
    for _ in range(50):
        tool = rng.uniform(-0.15, 0.0, size=(n_points, 3))
        args = (config.workspace, config.keep_out, config.keep_out_margin_m, tool)
        new, old = zones.Zones(*args), _zones_reference.Zones(*args)
        p = np.array([0.5, 0.0, 0.0])
        quats = (quat_normalize(rng.normal(size=4)), quat_normalize(rng.normal(size=4)))
        got, want = new.project_tool(p, quats), old.project_tool(p, quats)
        assert got is not None and want is not None
        assert got.tobytes() == want.tobytes(), (got, want)


zone_sets = st.lists(
    st.one_of(
        st.builds(
            lambda c, r: {"kind": "sphere", "center": list(c), "radius": r},
            st.tuples(st.floats(0.2, 0.8), st.floats(-0.4, 0.4), st.floats(0.0, 0.7)),
            st.floats(0.01, 0.2),
        ),
        st.builds(
            lambda a, d: {"kind": "box", "min": list(a), "max": [x + e for x, e in zip(a, d, strict=True)]},
            st.tuples(st.floats(0.2, 0.8), st.floats(-0.4, 0.4), st.floats(0.0, 0.7)),
            st.tuples(*[st.floats(0.01, 0.3)] * 3),
        ),
        st.builds(
            lambda n, o: {"kind": "half_space", "normal": list(n), "offset": o},
            st.sampled_from([(0.0, 0.0, 1.0), (-0.6, 0.0, 0.8), (0.0, 1.0, 0.0), (0.6, -0.48, 0.64)]),
            st.floats(-0.4, 0.4),
        ),
    ),
    min_size=1,
    max_size=4,
)
points = st.tuples(st.floats(0.1, 0.9), st.floats(-0.5, 0.5), st.floats(-0.1, 0.8))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep_out=zone_sets, p=points, toward=points)
def test_free_box_matches_the_numpy_one(
    mode: str, keep_out: list[dict[str, object]], p: tuple[float, ...], toward: tuple[float, ...]
) -> None:
    """Zones.free_box (compiled) against 22fbb8f's numpy one: every bit of the box, from inside
    and outside zones and the workspace, toward any target."""
    config = SafetyConfig.from_mapping({"keep_out": keep_out})
    args = (config.workspace, config.keep_out, config.keep_out_margin_m, None)
    new, old = zones.Zones(*args), _zones_reference.Zones(*args)
    pa, ta = np.array(p), np.array(toward)
    got, want = new.free_box(pa, ta), old.free_box(pa, ta)
    assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes(), (got, want)


def test_free_box_near_zones_matches_the_numpy_one() -> None:
    """free_box from points in and around zones' bounding cubes (a ball's corners, where the box
    shrinks by bisection), on faces (ties between cuts), toward targets on either side."""
    rng = np.random.default_rng(5)
    for _ in range(1500):
        keep_out: list[dict[str, object]] = []
        for _ in range(int(rng.integers(1, 4))):
            kind = rng.choice(["sphere", "box", "half_space"], p=[0.45, 0.45, 0.1])
            c = rng.uniform([0.3, -0.3, 0.1], [0.7, 0.3, 0.6])
            if kind == "sphere":
                keep_out.append(
                    {"kind": "sphere", "center": c.tolist(), "radius": float(rng.uniform(0.02, 0.15))}
                )
            elif kind == "box":
                h = rng.uniform(0.02, 0.15, 3)
                keep_out.append({"kind": "box", "min": (c - h).tolist(), "max": (c + h).tolist()})
            else:
                n = rng.normal(size=3)
                keep_out.append(
                    {"kind": "half_space", "normal": (n / np.linalg.norm(n)).tolist(), "offset": -0.5}
                )
        config = SafetyConfig.from_mapping({"keep_out": keep_out})
        args = (config.workspace, config.keep_out, config.keep_out_margin_m, None)
        new, old = zones.Zones(*args), _zones_reference.Zones(*args)
        zone = keep_out[int(rng.integers(len(keep_out)))]
        centre = np.array(zone.get("center", zone.get("min", [0.5, 0.0, 0.3])), dtype=float)
        p = centre + rng.uniform(-0.2, 0.2, 3)
        if rng.random() < 0.3:  # on a face of the zone's cube: equal rooms, ties between cuts
            p[int(rng.integers(3))] = centre[int(rng.integers(3))]
        toward = p + rng.uniform(-0.3, 0.3, 3)
        got, want = new.free_box(p, toward), old.free_box(p, toward)
        assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes(), (
            keep_out,
            p,
            toward,
        )

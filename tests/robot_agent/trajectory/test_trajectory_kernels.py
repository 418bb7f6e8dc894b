"""The compiled trajectory computes what the numpy one did, bit for bit (issue 13: chunk intake).

``robot_agent.trajectory`` evaluates its curves and fades as loops over float64 scalars
(``_kernels``, compiled by numba when installed); ``_reference_trajectory.py`` is the numpy
implementation they replaced, kept as the oracle. The same chunks into both, at random times and
arrivals, for every interpolation and blend mode, with and without a bounded column: the same
targets, remaining waypoints, derivatives, frozen curves and chunk results, every bit (the sign
of a zero included; a NaN is a NaN), compiled and interpreted.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_agent.trajectory import Trajectory, _kernels, make_curve
from tests.robot_agent.trajectory import _reference_trajectory as reference

KERNELS = ("_maximum", "_minimum", "_clip", "_point", "_continued", "_plan_row")
ENTRIES = ("curve_at", "curve_at1", "plan_at", "plan_at1")
LIMITS = (np.full(4, 1.0), np.full(4, 10.0), np.full(4, 200.0))


@pytest.fixture(params=["compiled", "interpreted"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Both ways the loops run: compiled by numba, and as plain Python (numba absent)."""
    if request.param == "interpreted":
        for name in KERNELS + ENTRIES:
            kernel = getattr(_kernels, name)
            monkeypatch.setattr(_kernels, name, getattr(kernel, "py_func", kernel))
    yield str(request.param)


def same(got: Any, want: Any) -> None:
    """Every bit: equal values, NaN where NaN, and the same sign on zeros."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.array_equal(got, want, equal_nan=True), (got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want) | np.isnan(want) & np.signbit(got)), (got, want)


def outcome(call: Any) -> tuple[str, Any]:
    """``call()``'s value, or the type of what it raised (Ruckig refuses huge targets)."""
    try:
        return "value", call()
    except Exception as exc:
        return "raised", type(exc)


def _same_curve(got: Any, want: Any) -> None:
    same(got.times, want.times)
    same(got.values, want.values)
    for name in ("velocities", "accelerations"):
        if getattr(want, name, None) is not None:
            same(getattr(got, name), getattr(want, name))
    assert got.bounded == want.bounded


# One chunk: where it is captured and arrives relative to the last, its waypoints.
chunks = st.tuples(
    st.floats(0.0, 0.12),  # arrival after the previous one (s)
    st.floats(0.0, 0.08),  # capture before arrival (s)
    st.integers(1, 12),  # actions
    st.integers(0, 2**32 - 1),  # waypoint seed
    st.sampled_from(["walk", "walk", "walk", "step", "huge"]),
)


def _waypoints(n: int, seed: int, kind: str, columns: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.normal(0.0, 0.01, (n, columns)), axis=0)
    values[:, -1] = rng.choice([0.0, 1.0], n) if kind == "step" else rng.uniform(0.0, 1.0, n)
    if kind == "huge":  # overflows to inf and nan in the tangents and fades
        values[rng.integers(0, n)] = rng.choice([1e300, -1e300, 1e308])
    return values


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    interpolation=st.sampled_from(["linear", "cubic", "minimum_jerk", "ruckig"]),
    blend_mode=st.sampled_from(["replace", "crossfade", "ensemble"]),
    bounded=st.booleans(),
    fade=st.integers(1, 6),
    sequence=st.lists(chunks, min_size=1, max_size=8),
    probe_seed=st.integers(0, 2**32 - 1),
)
def test_the_trajectory_matches_the_numpy_one_bit_for_bit(
    kernels: str,
    interpolation: str,
    blend_mode: str,
    bounded: bool,
    fade: int,
    sequence: list[tuple[float, float, int, int, str]],
    probe_seed: int,
) -> None:
    columns = 4
    options: dict[str, Any] = {
        "blend_mode": blend_mode,
        "crossfade_steps": fade,
        "interpolation": interpolation,
        "control_dt": 0.004,
        "ruckig_limits": LIMITS,
        "bounded_columns": (columns - 1,) if bounded else (),
    }
    new, old = Trajectory(**options), reference.Trajectory(**options)
    probe = np.random.default_rng(probe_seed)
    now, dt = 10.0, 0.1
    for arrival, age, n, seed, kind in sequence:
        now += arrival
        waypoints = _waypoints(n, seed, kind, columns)
        start = probe.normal(0.0, 0.01, columns)
        with np.errstate(all="ignore"):
            got = new.add_chunk(waypoints, now - age, dt, now, start=start)
            want = old.add_chunk(waypoints, now - age, dt, now, start=start)
        assert (got.dropped, got.kept) == (want.dropped, want.kept)
        if old._plan is None:
            assert new._plan is None
            continue
        plan, ref = new._plan, old._plan
        assert plan is not None
        _same_curve(plan.curve, ref.curve)
        assert (plan.t0, plan.length) == (ref.t0, ref.length)
        if ref.old is None:
            assert plan.old is None
        else:
            assert plan.old is not None
            _same_curve(plan.old, ref.old.curve)
        # Times inside and outside the span, at the knots, the fade's ends and the span's ends.
        ts = np.sort(probe.uniform(now - 0.3, plan.end + 0.3, 12))
        ts = np.concatenate([ts, plan.curve.times, [plan.t0, plan.t0 + plan.length, plan.end + 1e-3]])
        with np.errstate(all="ignore"):
            for g, w in zip(plan.derivatives_at(ts), ref.derivatives_at(ts), strict=True):
                same(g, w)
            same(plan.samples_at(ts), ref.samples_at(ts))
            for t in ts[::3]:
                same(plan.sample(float(t)), ref.sample(float(t)))
                for g, w in zip(plan.derivatives(float(t)), ref.derivatives(float(t)), strict=True):
                    same(g, w)
            for g, w in zip(new.remaining(now), old.remaining(now), strict=True):
                same(g, w)
            frozen_new = plan.frozen(now, now + fade * dt, dt)
            frozen_old = ref.frozen(now, now + fade * dt, dt)
            _same_curve(frozen_new, frozen_old.curve)
            # The control ticks up to the next arrival (under Ruckig each advances the follower).
            for tick in np.arange(now, now + 0.05, 0.004):
                (g_kind, g), (w_kind, w) = (
                    outcome(lambda t=float(tick), x=x: x.sample(t)) for x in (new, old)
                )
                assert g_kind == w_kind
                if w_kind == "raised" or w is None:
                    assert g == w
                else:
                    same(g, w)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["linear", "cubic", "minimum_jerk"]),
    n=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
    bounded=st.booleans(),
)
def test_curves_match_the_numpy_ones_bit_for_bit(
    kernels: str, kind: str, n: int, seed: int, bounded: bool
) -> None:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.uniform(0.01, 0.2, n))
    values = _waypoints(n, seed, "walk", 3)
    cols = (2,) if bounded else ()
    start_velocity = rng.normal(size=3) if kind != "linear" and rng.random() < 0.5 else None
    got = make_curve(kind, times, values, start_velocity=start_velocity, bounded=cols)
    want = reference.make_curve(kind, times, values, start_velocity=start_velocity, bounded=cols)
    _same_curve(got, want)
    ts = np.sort(np.concatenate([rng.uniform(times[0] - 0.1, times[-1] + 0.1, 10), times]))
    for g, w in zip(got.derivatives_at(ts), want.derivatives_at(ts), strict=True):
        same(g, w)
    same(got.samples_at(ts), want.samples_at(ts))
    for t in ts:
        same(got.sample(float(t)), want.sample(float(t)))
        for g, w in zip(got.derivatives(float(t)), want.derivatives(float(t)), strict=True):
            same(g, w)
        assert got._segment(float(t)) == want._segment(float(t))


def test_the_kernels_are_compiled_when_numba_is_installed() -> None:
    """The agent extra installs numba; without it the same loops run interpreted (slowly)."""
    numba = pytest.importorskip("numba")
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT is set")
    for name in KERNELS + ENTRIES:
        assert isinstance(getattr(_kernels, name), numba.core.registry.CPUDispatcher), name


SPECIAL = [np.nan, -np.inf, -1.5, -0.0, 0.0, 0.25, 1.0, np.inf]


def test_maxima_minima_and_clips_are_numpys() -> None:
    """NaN propagates, ties and signed zeros as numpy's ufuncs on float64 give them."""
    for x in SPECIAL:
        for y in SPECIAL:
            same(_kernels._maximum(x, y), np.maximum(x, y))
            same(_kernels._minimum(x, y), np.minimum(x, y))
            for z in SPECIAL:
                same(_kernels._clip(x, y, z), np.clip(np.array([x]), y, z)[0])


def test_a_fade_that_rounds_past_its_ends_is_clipped_as_before() -> None:
    """``old + s * (new - old)`` rounded an ulp above ``new`` here (found by search): the bounded
    column is clipped to ``new``, as the numpy fade did."""
    from robot_agent.trajectory.trajectory import _Plan

    old_value, new_value = float.fromhex("0x1.44079223578a9p-1"), float.fromhex("0x1.b0fa23578aec5p-1")
    tau = float.fromhex("0x1.fffff02c91213p-1")
    curve = make_curve("minimum_jerk", np.array([0.0, 2.0]), np.full((2, 1), new_value), bounded=(0,))
    old = make_curve("linear", np.array([0.0]), np.full((1, 1), old_value), bounded=(0,))
    want_curve = reference.make_curve(
        "minimum_jerk", np.array([0.0, 2.0]), np.full((2, 1), new_value), bounded=(0,)
    )
    want_old = reference.make_curve("linear", np.array([0.0]), np.full((1, 1), old_value), bounded=(0,))
    plan = _Plan(curve, old, 0.0, 1.0)
    ref = reference._Plan(want_curve, reference._Continued(want_old), 0.0, 1.0)
    unclipped = old_value + reference._smoothstep(tau)[0] * (new_value - old_value)
    assert unclipped > new_value
    same(plan.sample(tau), ref.sample(tau))
    assert plan.sample(tau)[0] == new_value
    for g, w in zip(plan.derivatives(tau), ref.derivatives(tau), strict=True):
        same(g, w)


def _signatures() -> dict[str, int]:
    return {name: len(getattr(_kernels, name).signatures) for name in ENTRIES}


@pytest.mark.parametrize(
    "form",
    ["list", "float32", "read-only", "strided"],
)
def test_inputs_of_any_array_form_use_the_kernels_loaded_at_build(form: str) -> None:
    """Chunks, starts and times come as whatever arrays the caller has: the kernels never compile
    a new specialisation for them (seconds inside the event loop)."""
    numba = pytest.importorskip("numba")
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT is set")

    def shaped(x: np.ndarray) -> Any:
        if form == "list":
            return x.tolist()
        if form == "float32":
            return x.astype(np.float32)
        if form == "read-only":
            x = x.copy()
            x.flags.writeable = False
            return x
        wide = np.zeros((x.shape[0], 2 * x.shape[1]) if x.ndim == 2 else 2 * x.shape[0])
        wide[..., ::2] = x
        return wide[..., ::2]

    for kind in ("linear", "cubic", "minimum_jerk"):
        traj = Trajectory(interpolation=kind, bounded_columns=(2,))
        compiled = _signatures()
        rng = np.random.default_rng(0)
        for i in range(3):
            now = 1.0 + 0.033 * i
            traj.add_chunk(
                shaped(rng.normal(0.0, 0.01, (10, 3))), now - 0.01, 0.1, now, start=shaped(np.zeros(3))
            )
            traj.sample(now)
            traj.remaining(now)
        curve = make_curve(kind, shaped(np.arange(4) * 0.1), shaped(rng.normal(size=(4, 3))))
        curve.samples_at(shaped(np.linspace(0.0, 0.3, 5)))
        curve.derivatives(np.float32(0.1))  # type: ignore[arg-type]
        assert _signatures() == compiled


ARRIVAL, POLICY_DT, FADE_STEPS, LENGTH = 0.033, 0.05, 6, 20


def _work(
    blend_mode: str, interpolation: str, chunks: int, monkeypatch: pytest.MonkeyPatch
) -> dict[str, int]:
    """Compiled evaluation in one tick, one ``remaining`` and one more chunk after ``chunks``
    chunks (one every 33 ms, 2 mm behind the last, a 0.3 s fade: about nine fading at once):
    calls, times evaluated and waypoints of the curves handed over. ``test_trajectory_cost.py``
    counted ``Curve._segment`` calls, which the compiled path no longer makes."""
    traj = Trajectory(
        blend_mode=blend_mode,
        crossfade_steps=FADE_STEPS,
        interpolation=interpolation,
        control_dt=0.01,
        ruckig_limits=(np.full(2, 1.0), np.full(2, 10.0), np.full(2, 200.0)),
    )
    now = 0.0
    for i in range(chunks):
        now = i * ARRIVAL
        capture = max(now - 0.02, 0.0)
        values = np.stack(
            [0.03 * (capture + POLICY_DT * np.arange(LENGTH)) - 0.002 * i, np.zeros(LENGTH)], axis=1
        )
        traj.add_chunk(values, capture, POLICY_DT, now, start=np.zeros(2))
        traj.sample(now)
    counted = {"calls": 0, "times": 0, "waypoints": 0}

    def counting(name: str) -> Any:
        kernel = getattr(_kernels, name)

        def counted_call(*args: Any) -> Any:
            counted["calls"] += 1
            counted["times"] += args[8].shape[0] if name == "plan_at" else 1
            counted["waypoints"] += args[0].shape[0] + (args[4].shape[0] if name.startswith("plan") else 0)
            return kernel(*args)

        return counted_call

    work: dict[str, int] = {}
    with monkeypatch.context() as patch:
        for name in ENTRIES:
            patch.setattr(_kernels, name, counting(name))
        last = now
        for label, call in (
            ("tick", lambda: traj.sample(last + 0.01)),
            ("remaining", lambda: traj.remaining(last + 0.01)),
            (
                "chunk",
                lambda: traj.add_chunk(
                    np.zeros((LENGTH, 2)), last + 0.013, POLICY_DT, last + ARRIVAL, np.zeros(2)
                ),
            ),
            ("tick after", lambda: traj.sample(last + ARRIVAL + 0.01)),
        ):
            counted.update(calls=0, times=0, waypoints=0)
            call()
            work.update({f"{label} {key}": value for key, value in counted.items()})
    return work


@pytest.mark.parametrize("blend_mode", ["replace", "crossfade", "ensemble"])
@pytest.mark.parametrize("interpolation", ["linear", "cubic", "minimum_jerk", "ruckig"])
def test_the_compiled_work_does_not_grow_with_the_chunks_received(
    blend_mode: str, interpolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = _work(blend_mode, interpolation, 5, monkeypatch)
    late = _work(blend_mode, interpolation, 200, monkeypatch)
    assert late == early
    # A tick is one compiled call on the plan's curve and at most one older one.
    assert early["tick calls"] == early["tick after calls"] == 1
    assert early["tick times"] == 1

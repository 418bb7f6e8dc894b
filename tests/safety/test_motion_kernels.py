"""The compiled motion filter computes what the numpy one did, bit for bit.

``safety.motion`` runs its per-axis maths as scalar loops (compiled by numba when installed);
``_motion_reference.py`` is the numpy implementation they replaced (safety/motion.py before the
shield-cost work of issue 13), kept here as the oracle. Same state, same inputs: the same
positions (``np.array_equal``: every bit) and the same flags, tick after tick, at walls, behind
moving targets and on ratchets.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safety import motion

from . import _motion_reference as reference

N = 4

unit = st.floats(-1.0, 1.0, allow_nan=False)
vectors = st.lists(unit, min_size=N, max_size=N).map(np.array)
ticks = st.tuples(
    # target: near (direct steps), far (limited steps), and a target velocity hint
    st.one_of(vectors.map(lambda x: 0.001 * x), vectors.map(lambda x: 2.0 * x)),
    st.floats(0.001, 0.05),
    st.one_of(st.none(), vectors),
)


KERNELS = ("_direct_kernel", "_step_kernel", "_commit_kernel")


@pytest.fixture(params=["compiled", "interpreted"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways the loops run: compiled by numba, and as plain Python (numba absent)."""
    if request.param == "interpreted":
        for name in KERNELS:
            kernel = getattr(motion, name)
            monkeypatch.setattr(motion, name, getattr(kernel, "py_func", kernel))
    return str(request.param)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    limits=st.tuples(st.floats(0.1, 3.0), st.floats(1.0, 30.0), st.floats(50.0, 5000.0)),
    walls=st.floats(0.05, 1.0),
    seed=vectors.map(lambda x: 0.9 * x),
    ratchet=st.one_of(st.none(), st.tuples(st.integers(0, 2**N - 1), st.integers(0, 2**N - 1))),
    sequence=st.lists(ticks, min_size=1, max_size=40),
)
def test_step_matches_the_numpy_filter_bit_for_bit(
    kernels: str,
    limits: tuple[float, float, float],
    walls: float,
    seed: np.ndarray,
    ratchet: tuple[int, int] | None,
    sequence: list[tuple[np.ndarray, float, np.ndarray | None]],
) -> None:
    v, a, j = (np.full(N, x) * np.linspace(1.0, 1.5, N) for x in limits)
    new, old = motion.Axes(v, a, j), reference.Axes(v, a, j)
    new.seed(seed)
    old.seed(seed)
    lo, hi = np.full(N, -walls), np.full(N, walls)
    direction = None
    if ratchet is not None:
        bits = np.arange(N)
        direction = ((ratchet[0] >> bits) & 1 == 1, (ratchet[1] >> bits) & 1 == 1)
    for offset, dt, velocity in sequence:
        target = new.p + offset

        def hint(velocity: np.ndarray | None = velocity) -> np.ndarray:
            return np.zeros(N) if velocity is None else velocity

        got, got_res = new.step(target, dt, lo, hi, hint, direction)
        want, want_res = old.step(target, dt, lo, hi, hint, direction)
        assert np.array_equal(got, want), (got, want)
        assert np.array_equal(got_res.direct, want_res.direct)
        for flag in ("changed", "jerk", "acceleration", "velocity", "position"):
            assert getattr(got_res, flag) == getattr(want_res, flag), flag
        new.commit(got, dt)
        old.commit(want, dt)


def test_the_kernels_are_compiled_when_numba_is_installed() -> None:
    """The agent extra installs numba; without it the same loops run interpreted (slowly)."""
    numba = pytest.importorskip("numba")
    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT is set")
    for name in KERNELS:
        assert isinstance(getattr(motion, name), numba.core.registry.CPUDispatcher), name

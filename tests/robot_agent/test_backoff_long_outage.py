"""The reconnect (and INVALID/ERROR) backoff survives a long outage: its exponent grew by one per
attempt without end, so with the defaults (0.2 s, x2, capped at 5 s) attempt 1025, about 85 min
into a server outage, raised OverflowError from ``factor ** attempt`` and the agent exited 1
("OverflowError: (34, 'Numerical result out of range')")."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robot_agent.policy_client import Backoff


def test_ten_thousand_attempts_stay_at_the_cap_and_reset_starts_over() -> None:
    backoff = Backoff(0.2, 2.0, 5.0, 0.2, rng=random.Random(0))
    delays = [backoff.next() for _ in range(10_000)]
    assert all(5.0 * 0.8 <= d <= 5.0 * 1.2 for d in delays[5:])
    backoff.reset()
    assert backoff.next() == pytest.approx(0.2, rel=0.2)


@given(
    initial=st.floats(1e-3, 10.0),
    factor=st.floats(1.0, 1e6),
    ceiling_ratio=st.floats(1.0, 1e6),
    attempts=st.integers(1, 3000),
)
def test_any_valid_config_never_raises_and_never_exceeds_the_cap(
    initial: float, factor: float, ceiling_ratio: float, attempts: int
) -> None:
    ceiling = initial * ceiling_ratio  # config: backoff_max_s >= backoff_initial_s, factor >= 1
    backoff = Backoff(initial, factor, ceiling, 0.0)
    for _ in range(attempts):
        delay = backoff.next()
        assert initial <= delay <= ceiling

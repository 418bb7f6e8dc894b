"""A tick costs the same after 200 chunks as after 5 (issue 10, kind 6).

Chunks arriving every 33 ms with a 0.3 s fade keep about nine plans fading at once; sampling a
plan used to evaluate the previous plan twice, recursively, so a tick cost grew exponentially
with the plans fading (and the chain of plans with the run). Work is counted, not timed: every
curve evaluation goes through ``Curve._segment``.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from robot_agent.trajectory import Curve, Trajectory

ARRIVAL = 0.033  # an observation every 33 ms
DT = 0.05  # policy period
FADE_STEPS = 6  # 0.3 s fade
LENGTH = 20  # actions per chunk
LIMITS = (np.full(2, 1.0), np.full(2, 10.0), np.full(2, 200.0))


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return counted


def feed(traj: Trajectory, chunks: int) -> float:
    """``chunks`` chunks, one every 33 ms, each captured 20 ms before it arrives and 2 mm behind
    the last (an ee_delta policy on a lagging arm); returns the time of the last arrival."""
    now = 0.0
    for i in range(chunks):
        now = i * ARRIVAL
        capture = max(now - 0.02, 0.0)
        values = np.stack([0.03 * (capture + DT * np.arange(LENGTH)) - 0.002 * i, np.zeros(LENGTH)], axis=1)
        traj.add_chunk(values, capture, DT, now, start=np.zeros(2))
        traj.sample(now)
    return now


def work(blend_mode: str, interpolation: str, chunks: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Curve evaluations in one tick, one ``remaining`` and one more chunk, after ``chunks``."""
    traj = Trajectory(
        blend_mode=blend_mode,
        crossfade_steps=FADE_STEPS,
        interpolation=interpolation,
        control_dt=0.01,
        ruckig_limits=LIMITS,
    )
    last = feed(traj, chunks)
    counter = Counter()
    with monkeypatch.context() as patch:
        patch.setattr(Curve, "_segment", counter.wrap(Curve._segment))
        now = last + 0.01
        counted: dict[str, int] = {}
        for name, call in (
            ("tick", lambda: traj.sample(now)),
            ("remaining", lambda: traj.remaining(now)),
            (
                "chunk",
                lambda: traj.add_chunk(
                    np.zeros((LENGTH, 2)), last + ARRIVAL - 0.02, DT, last + ARRIVAL, start=np.zeros(2)
                ),
            ),
            ("tick after", lambda: traj.sample(last + ARRIVAL + 0.01)),
        ):
            counter.calls = 0
            call()
            counted[name] = counter.calls
    return counted


@pytest.mark.parametrize("blend_mode", ["replace", "crossfade", "ensemble"])
@pytest.mark.parametrize("interpolation", ["linear", "cubic", "minimum_jerk", "ruckig"])
def test_per_tick_work_does_not_grow_with_the_chunks_received(
    blend_mode: str, interpolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = work(blend_mode, interpolation, 5, monkeypatch)
    late = work(blend_mode, interpolation, 200, monkeypatch)
    assert late == early
    # A tick evaluates the plan's curve and at most one older one (the frozen previous plan).
    assert early["tick"] <= 2 and early["tick after"] <= 2, early


@pytest.mark.parametrize("blend_mode", ["replace", "crossfade", "ensemble"])
def test_the_plans_kept_do_not_grow_with_the_chunks_received(
    blend_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory too: with chunks faster than the fade the old chain was never released (every
    plan of the run stayed reachable from the current one). Curves alive after 200 chunks: the
    current plan's and the frozen one it fades from."""
    alive: list[weakref.ref[Curve]] = []
    init = Curve.__init__

    def tracked(self: Curve, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        alive.append(weakref.ref(self))

    monkeypatch.setattr(Curve, "__init__", tracked)
    traj = Trajectory(blend_mode=blend_mode, crossfade_steps=FADE_STEPS, interpolation="minimum_jerk")
    feed(traj, 200)
    gc.collect()
    assert len(alive) >= 200
    assert sum(ref() is not None for ref in alive) <= 2

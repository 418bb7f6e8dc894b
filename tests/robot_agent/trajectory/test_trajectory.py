from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from robot_agent.trajectory import Trajectory

LIMITS = (np.full(2, 1.0), np.full(2, 10.0), np.full(2, 200.0))


def ramp(n: int = 10) -> np.ndarray:
    return np.stack([np.linspace(0.0, 0.9, n), np.zeros(n)], axis=1)


def test_action_k_is_for_capture_time_plus_k_dt() -> None:
    traj = Trajectory(interpolation="linear")
    traj.add_chunk(ramp(), capture_time=10.0, dt=0.1, now=10.0 - 1e-6, start=np.zeros(2))
    for k in (1, 4, 9):
        np.testing.assert_allclose(traj.sample(10.0 + 0.1 * k), ramp()[k])
    assert traj.end_time == pytest.approx(10.9)


def test_actions_already_past_are_dropped_and_counted() -> None:
    traj = Trajectory(interpolation="linear")
    result = traj.add_chunk(ramp(), capture_time=0.0, dt=0.1, now=0.35, start=np.zeros(2))
    assert (result.dropped, result.kept) == (4, 6)  # actions at 0.0, 0.1, 0.2, 0.3 are past
    times, values = traj.remaining(0.35)
    np.testing.assert_allclose(times, 0.1 * np.arange(4, 10))
    np.testing.assert_allclose(values, ramp()[4:])


def test_a_chunk_entirely_in_the_past_changes_nothing() -> None:
    traj = Trajectory(interpolation="linear")
    result = traj.add_chunk(ramp(), capture_time=0.0, dt=0.1, now=5.0, start=np.zeros(2))
    assert (result.dropped, result.kept) == (10, 0)
    assert traj.sample(5.0) is None and traj.end_time is None


@pytest.mark.parametrize("interpolation", ["linear", "cubic", "minimum_jerk", "ruckig"])
def test_the_plan_starts_where_the_arm_is_and_ends_with_the_chunk(interpolation: str) -> None:
    """Leaving hold never jumps: the first target is the held pose; nothing after the last action."""
    traj = Trajectory(interpolation=interpolation, control_dt=0.01, ruckig_limits=LIMITS)
    held = np.array([0.05, 0.02])
    traj.add_chunk(ramp(), capture_time=0.0, dt=0.1, now=0.15, start=held)
    first = traj.sample(0.15)
    assert np.abs(first - held).max() < 0.01 * 1.0 + 1e-9  # at most one tick at the velocity limit
    assert traj.sample(0.9) is not None
    assert traj.sample(0.9 + 1e-6) is None


def test_a_new_chunk_continues_from_the_current_plan_without_a_jump() -> None:
    traj = Trajectory(blend_mode="replace", interpolation="cubic")
    traj.add_chunk(ramp(), capture_time=0.0, dt=0.1, now=0.0, start=np.zeros(2))
    before = traj.sample(0.42)
    shifted = ramp() + np.array([0.2, 0.0])  # the new chunk disagrees by 20 cm
    traj.add_chunk(shifted, capture_time=0.3, dt=0.1, now=0.42, start=np.zeros(2))
    np.testing.assert_allclose(traj.sample(0.42), before, atol=1e-12)
    # The switch fades over crossfade_steps (3) actions, 0.42 .. 0.72; then the new chunk alone.
    assert 0.0 < traj.sample(0.6)[0] - ramp()[3][0] < 0.2
    np.testing.assert_allclose(traj.sample(0.8), shifted[5])
    np.testing.assert_allclose(traj.sample(0.9), shifted[6])


def test_crossfade_fades_from_the_old_plan_to_the_new_chunk_in_time() -> None:
    traj = Trajectory(blend_mode="crossfade", crossfade_steps=2, interpolation="linear")
    traj.add_chunk(np.zeros((10, 1)), capture_time=0.0, dt=0.1, now=0.0, start=np.zeros(1))
    traj.add_chunk(np.ones((10, 1)), capture_time=0.2, dt=0.1, now=0.25, start=np.zeros(1))
    xs = [float(traj.sample(t)[0]) for t in np.arange(0.25, 0.451, 0.01)]
    assert xs[0] == 0.0 and bool(np.all(np.diff(xs) >= 0))  # monotone
    assert 0.0 < traj.sample(0.3)[0] < 0.5  # on its way, and the crossfade is still on
    np.testing.assert_allclose(traj.sample(0.6), [1.0])  # new chunk alone from its 2nd action on


@pytest.mark.parametrize("blend_mode", ["crossfade", "ensemble"])  # replace switches in one action
@pytest.mark.parametrize("first_action_in", [0.0051, 0.02, 0.049])
def test_a_chunk_switch_is_smooth_however_close_the_next_action_is(
    blend_mode: str, first_action_in: float
) -> None:
    """A steady 3 cm/s ramp whose next chunk starts 2 mm behind (ee_delta from a lagging arm):
    at 100 Hz the target's acceleration and jerk stay small, wherever the switch falls between
    two actions. (Before the fade, the gap was absorbed in the few ms before the next action.)"""
    dt, tick, speed = 0.05, 0.01, 0.03
    traj = Trajectory(blend_mode=blend_mode, crossfade_steps=3, interpolation="minimum_jerk", control_dt=tick)
    path = speed * dt * np.arange(20)[:, None]  # covers the whole window (ensemble averages it)
    traj.add_chunk(path, capture_time=0.0, dt=dt, now=0.0, start=np.zeros(1))
    now = 0.2 + first_action_in - dt  # the next chunk's first kept action is first_action_in away
    capture = 0.2 - 2 * dt
    behind = speed * capture - 0.002 + speed * dt * np.arange(10)[:, None]
    ts = now + tick * np.arange(-5, 25)
    xs = [traj.sample(t)[0] for t in ts[:5]]
    traj.add_chunk(behind, capture_time=capture, dt=dt, now=now, start=np.zeros(1))
    xs += [traj.sample(t)[0] for t in ts[5:]]
    v = np.diff(xs) / tick
    a = np.diff(v) / tick
    j = np.diff(a) / tick
    limit_a, limit_j = 2.0 / np.sqrt(3), 100.0 / np.sqrt(3)  # the shield's default per-axis limits
    assert np.abs(a).max() < 0.5 * limit_a, np.abs(a).max()
    assert np.abs(j).max() < 0.8 * limit_j, np.abs(j).max()


def test_clear_forgets_the_plan() -> None:
    traj = Trajectory()
    traj.add_chunk(ramp(), capture_time=0.0, dt=0.1, now=0.0, start=np.zeros(2))
    traj.clear()
    assert traj.sample(0.5) is None
    assert traj.remaining(0.5)[0].size == 0


def test_ruckig_respects_its_limits_tick_by_tick() -> None:
    dt = 0.004
    traj = Trajectory(interpolation="ruckig", control_dt=dt, ruckig_limits=LIMITS)
    big = np.stack([np.linspace(0.0, 3.0, 10), np.zeros(10)], axis=1)  # asks for 3 m/s
    traj.add_chunk(big, capture_time=0.0, dt=0.1, now=0.0, start=np.zeros(2))
    xs = [traj.sample(k * dt)[0] for k in range(int(0.9 / dt))]
    v = np.diff(xs) / dt
    a = np.diff(v) / dt
    assert np.abs(v).max() <= LIMITS[0][0] * (1 + 1e-6)
    assert np.abs(a).max() <= LIMITS[1][0] * (1 + 1e-3)
    assert min(xs) >= -1e-9  # never backs up first


def test_ruckig_needs_limits() -> None:
    with pytest.raises(ValueError, match="ruckig_limits"):
        Trajectory(interpolation="ruckig")


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["replace", "crossfade", "ensemble"]),
    st.sampled_from(["linear", "cubic", "minimum_jerk"]),
    st.lists(
        st.tuples(st.floats(0.0, 0.3), st.floats(-1.0, 1.0), st.floats(0.0, 0.2)), min_size=1, max_size=6
    ),
)
def test_chunks_never_make_the_target_jump_nor_outlive_their_actions(
    blend_mode: str, interpolation: str, arrivals: list[tuple[float, float, float]]
) -> None:
    """Whatever arrives when, the target right after a chunk equals the target right before it,
    and no target is given past the last action's time."""
    traj = Trajectory(blend_mode=blend_mode, interpolation=interpolation, control_dt=0.01)
    now = 0.0
    held = np.zeros(1)
    for gap, offset, age in arrivals:
        now += gap
        before = traj.sample(now)
        values = offset + 0.01 * np.arange(8)[:, None]
        result = traj.add_chunk(values, capture_time=now - age, dt=0.05, now=now, start=held)
        after = traj.sample(now)
        if result.kept:
            assert after is not None
            np.testing.assert_allclose(after, held if before is None else before, atol=1e-9)
            assert traj.end_time == pytest.approx(now - age + 0.05 * 7)
        if traj.end_time is not None:
            assert traj.sample(traj.end_time + 1e-6) is None
        if after is None:
            held = np.zeros(1)


def test_an_action_due_within_half_a_tick_counts_as_past() -> None:
    """Otherwise the first segment would last microseconds and the target would leap."""
    traj = Trajectory(interpolation="linear", control_dt=0.01)
    result = traj.add_chunk(ramp(), capture_time=0.0, dt=0.1, now=0.098, start=np.zeros(2))
    assert (result.dropped, result.kept) == (2, 8)  # 0.1 is 2 ms away: dropped
    np.testing.assert_allclose(traj.sample(0.098), [0.0, 0.0])


def _path(t: np.ndarray | float) -> np.ndarray:
    """5 cm, 0.5 Hz: up to 0.16 m/s and 0.5 m/s^2."""
    return 0.05 * np.sin(np.pi * np.asarray(t))


def _rapid_chunks(interpolation: str, blend_mode: str, disagree: float) -> tuple[np.ndarray, np.ndarray]:
    """Chunks of 20 actions of 50 ms on ``_path``, one every 33 ms captured 20 ms before, each
    off the path by +-``disagree`` in turn, with a 0.3 s fade: about nine plans fading at once,
    the plan being left always still fading (so always frozen). Targets at 100 Hz for 2 s."""
    tick = 0.01
    traj = Trajectory(blend_mode=blend_mode, crossfade_steps=6, interpolation=interpolation, control_dt=tick)
    ts, xs = [], []
    next_chunk, sign = 0.0, 1.0
    for i in range(200):
        now = i * tick
        if now >= next_chunk - 1e-9:
            capture = max(now - 0.02, 0.0)
            values = _path(capture + 0.05 * np.arange(20))[:, None] + sign * disagree
            traj.add_chunk(values, capture, 0.05, now, start=_path(now)[None] + sign * disagree)
            next_chunk += 0.033
            sign = -sign
        ts.append(now)
        xs.append(float(traj.sample(now)[0]))
    return np.array(ts), np.array(xs)


# The first plan leaves its start at rest and catches up with the path: measure after that.
SETTLED = 40  # ticks


@pytest.mark.parametrize(
    ("interpolation", "blend_mode", "error"),
    [
        # linear: h^2/8 * 0.5 m/s^2 = 1.6e-4 m between waypoints 50 ms apart
        ("linear", "replace", 2.5e-4),
        ("linear", "crossfade", 2.5e-4),
        # ensembling averages the old plan's chords with the path: a bias of its own (2.0 mm
        # before the cost fix too), not the freezing's
        ("linear", "ensemble", 2.5e-3),
        ("cubic", "replace", 2e-5),
        ("cubic", "crossfade", 2e-5),
        ("cubic", "ensemble", 1e-4),
        ("minimum_jerk", "replace", 2e-5),
        ("minimum_jerk", "crossfade", 2e-5),
        ("minimum_jerk", "ensemble", 1e-4),
    ],
)
def test_chunks_faster_than_the_fade_follow_the_path_they_agree_on(
    interpolation: str, blend_mode: str, error: float
) -> None:
    """Freezing the plan being left (kind 6's cost fix) keeps the fade faithful: chunks that all
    lie on one path give that path, within the interpolation error of a 50 ms grid, however
    many fades overlap."""
    ts, xs = _rapid_chunks(interpolation, blend_mode, disagree=0.0)
    assert np.abs(xs - _path(ts))[SETTLED:].max() < error


@pytest.mark.parametrize("blend_mode", ["crossfade", "ensemble"])
def test_chunks_faster_than_the_fade_keep_the_target_smooth(blend_mode: str) -> None:
    """Minimum jerk with chunks that disagree by 2 mm (+-1 mm in turn), arriving every 33 ms:
    the target's acceleration and jerk at 100 Hz stay near the path's own (0.49 m/s^2,
    1.6 m/s^3), far inside the shield's limits (1.15 m/s^2, 58 m/s^3 per axis): each frozen
    plan joins its successor C2."""
    _, xs = _rapid_chunks("minimum_jerk", blend_mode, disagree=0.001)
    tick = 0.01
    a = np.diff(xs[SETTLED:], 2) / tick**2
    j = np.diff(xs[SETTLED:], 3) / tick**3
    assert np.abs(a).max() < 0.6, np.abs(a).max()
    assert np.abs(j).max() < 10.0, np.abs(j).max()

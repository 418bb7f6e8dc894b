"""The demo task's pieces: tokenizer, the expert's plan, and the expert solving the sim task."""

from __future__ import annotations

import numpy as np
import pytest

from vla_demo.expert import GOAL_ABOVE_M, HOVER_ABOVE_M, expert_chunk, plan_positions
from vla_demo.rollout import Noise, expert_policy, run_episode
from vla_demo.task import ACTION_DIM, CHUNK_LENGTH, DT_S, MAX_TOKENS, VOCAB, make_sim_robot, tokenize


def test_tokenize_pads_cuts_and_maps_unknown_words() -> None:
    ids = tokenize("Touch the RED cube!")
    assert ids.dtype == np.int64 and ids.shape == (MAX_TOKENS,)
    assert [VOCAB[i] for i in ids[:4]] == ["touch", "the", "red", "cube"]
    assert np.all(ids[4:] == 0)
    assert VOCAB[tokenize("zorp the blue cube")[0]] == "<unk>"
    assert len(set(tokenize(f"touch the {c} cube")[2] for c in ("red", "green", "blue"))) == 3
    assert tokenize(" ".join(["red"] * 20)).shape == (MAX_TOKENS,)


def test_plan_goes_over_then_down_at_bounded_speed() -> None:
    tip = np.array([0.3, 0.0, 0.45])
    top = np.array([0.5, 0.2, 0.045])
    times = np.arange(0, 5, 0.01)
    path = plan_positions(tip, top, times)
    np.testing.assert_allclose(path[0], tip)
    np.testing.assert_allclose(path[-1], top + np.array([0, 0, GOAL_ABOVE_M]), atol=1e-3)
    speed = np.linalg.norm(np.diff(path, axis=0), axis=1) / 0.01
    assert speed.max() <= np.hypot(0.3, 0.15) + 1e-9
    # It never goes below the hover height (clear of the other cubes) until it is near the cube.
    far = np.hypot(path[:, 0] - top[0], path[:, 1] - top[1]) > 0.04
    assert far[0] and not far[-1]
    assert np.all(path[far, 2] >= top[2] + HOVER_ABOVE_M - 1e-6)


def test_expert_chunk_is_ee_delta_from_the_tip() -> None:
    tip = np.array([0.4, 0.1, 0.3])
    chunk = expert_chunk(tip, np.array([0.5, -0.1, 0.045]))
    assert chunk.shape == (CHUNK_LENGTH, ACTION_DIM) and chunk.dtype == np.float32
    np.testing.assert_allclose(chunk[0], [0, 0, 0, 0, 0, 0, 1])  # action 0 is "now": where the tip is
    np.testing.assert_allclose(chunk[:, 3:6], 0)
    np.testing.assert_allclose(
        chunk[1, :3], plan_positions(tip, np.array([0.5, -0.1, 0.045]), np.array([DT_S]))[0] - tip, atol=1e-6
    )


@pytest.mark.parametrize("noise", [None, Noise(std_m=0.005, kick_probability_per_s=0.5)])
def test_the_expert_touches_the_named_cube(noise: Noise | None) -> None:
    robot = make_sim_robot(realtime=False, seed=0, physics_dt_s=0.005)
    for seed in range(4):
        result = run_episode(
            robot, expert_policy(robot), seed=seed, noise=noise, needs_image=False, latency_s=0.1
        )
        assert result.success, result
        assert result.reached == result.target == robot.world.target
        assert result.time_to_success_s is not None
        if noise is None:
            assert result.time_to_success_s < 6.0

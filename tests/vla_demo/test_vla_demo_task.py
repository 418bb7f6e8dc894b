"""The demo task's pieces: tokenizer, the pick-and-place expert's plan, and the expert solving the
MuJoCo task (static and conveyor) in the loop the agent runs."""

from __future__ import annotations

import numpy as np
import pytest

from robot_agent.sim.mujoco_task import PICK_PLACE_TEMPLATES
from vla_demo.expert import (
    CARRY_Z_M,
    Scene,
    cube_width_fraction,
    pick_place_chunk,
    pick_place_plan,
)
from vla_demo.rollout import Noise, expert_policy, run_episode
from vla_demo.task import ACTION_DIM, CHUNK_LENGTH, MAX_TOKENS, STATE_NAMES, VOCAB, make_sim_robot, tokenize

SCENE = Scene(
    cube=np.array([0.5, -0.1, 0.02]), yaw=0.3, cube_velocity=np.zeros(3), pad=np.array([0.5, 0.3, 0.002])
)


def test_tokenize_pads_cuts_and_maps_unknown_words() -> None:
    ids = tokenize("Put the RED cube on the pad!")
    assert ids.dtype == np.int64 and ids.shape == (MAX_TOKENS,)
    assert [VOCAB[i] for i in ids[:7]] == ["put", "the", "red", "cube", "on", "the", "pad"]
    assert np.all(ids[7:] == 0)
    assert VOCAB[tokenize("zorp the blue cube")[0]] == "<unk>"
    assert len({int(tokenize(f"put the {c} cube")[2]) for c in ("red", "green", "blue")}) == 3
    for template in PICK_PLACE_TEMPLATES:  # every phrasing the task uses is in the vocabulary
        assert "<unk>" not in [VOCAB[i] for i in tokenize(template.format(colour="red")) if i]


def test_state_names_are_the_servers_vocabulary() -> None:
    from vla.vocabulary import STATE_NAMES as SERVER_STATE_NAMES

    assert set(STATE_NAMES) <= set(SERVER_STATE_NAMES)


def test_chunk_is_ee_delta_with_an_absolute_gripper() -> None:
    tip = np.array([0.4, 0.1, 0.3])
    chunk = pick_place_chunk(tip, 1.0, SCENE)
    assert chunk.shape == (CHUNK_LENGTH, ACTION_DIM) and chunk.dtype == np.float32
    np.testing.assert_allclose(chunk[0, :6], 0)  # action 0 is "now": where the tip is
    np.testing.assert_allclose(chunk[:, 3:6], 0)
    assert set(np.unique(chunk[:, 6])) <= {0.0, 1.0}
    assert np.all(chunk[:5, 6] == 1.0)  # far from the cube: open (it closes once there)


def test_plan_approaches_closes_lifts_carries_releases() -> None:
    """Played forward long enough from the home pose, the plan goes over the cube, closes on it,
    carries it at height over the pad and lets go there."""
    times = np.arange(0, 12, 0.02)
    path, grip = pick_place_plan(np.array([0.3, 0.0, 0.45]), 1.0, SCENE, times)
    closed = np.flatnonzero(grip == 0)
    assert closed.size, "the plan never closes the gripper"
    at_close = path[closed[0]]
    assert np.hypot(*(at_close[:2] - SCENE.cube[:2])) < 0.01 and abs(at_close[2] - SCENE.cube[2]) < 0.01
    reopened = closed[-1] + 1
    assert reopened < len(times), "the plan never lets go"
    assert np.hypot(*(path[reopened][:2] - SCENE.pad[:2])) < 0.03 and path[reopened][2] < 0.06
    # Between the two it rose to the carry height before crossing to the pad.
    assert path[closed[0] : reopened, 2].max() > CARRY_Z_M - 0.01
    # It only moves sideways at height while carrying (the held cube clears the others).
    carry = path[closed[0] : reopened]
    moving = np.linalg.norm(np.diff(carry[:, :2], axis=0), axis=1) > 0.004
    assert np.all(carry[1:][moving & (np.hypot(*(carry[1:, :2] - SCENE.pad[:2]).T) > 0.05), 2] > 0.1)


def test_the_phase_follows_the_gripper_opening() -> None:
    """At the grasp pose, open: close now; closing on the cube: hold; closed on it: lift."""
    grasp = SCENE.cube + np.array([0, 0, 0.003])
    assert pick_place_chunk(grasp, 1.0, SCENE)[0, 6] == 0.0
    width = cube_width_fraction(SCENE.yaw)
    closing = pick_place_chunk(grasp, 0.95, SCENE)
    held = pick_place_chunk(grasp, width, SCENE)
    assert np.all(closing[:, 6] == 0.0) and np.all(held[:, 6] == 0.0)
    # Holding lifts at once; still closing waits for the fingers first.
    assert held[-1, 2] > 0.05 and held[1, 2] > closing[1, 2] + 0.005
    # Closed on nothing (the cube is elsewhere): open again.
    missed = pick_place_chunk(grasp + np.array([0.1, 0, 0]), 0.0, SCENE)
    assert missed[0, 6] == 1.0


def test_a_moving_cube_is_met_where_it_will_be() -> None:
    moving = Scene(SCENE.cube, SCENE.yaw, np.array([0.0, 0.04, 0.0]), SCENE.pad)
    times = np.arange(0, 6, 0.02)
    path, grip = pick_place_plan(np.array([0.3, 0.0, 0.45]), 1.0, moving, times)
    first = np.flatnonzero(grip == 0)[0]
    cube_then = moving.cube + moving.cube_velocity * times[first]
    assert np.hypot(*(path[first][:2] - cube_then[:2])) < 0.01


@pytest.mark.parametrize("conveyor", [False, True], ids=["static", "conveyor"])
@pytest.mark.parametrize("latency_s", [0.0, 0.2])
def test_the_expert_picks_and_places(conveyor: bool, latency_s: float) -> None:
    robot = make_sim_robot(conveyor=conveyor)
    noise = Noise() if latency_s else None
    for seed in range(3):
        result = run_episode(
            robot, expert_policy(robot), seed=seed, latency_s=latency_s, noise=noise, needs_image=False
        )
        assert result.success, result
        assert result.time_to_success_s is not None and result.time_to_success_s < 12.0

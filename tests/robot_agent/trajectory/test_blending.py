from __future__ import annotations

import numpy as np
import pytest

from robot_agent.trajectory import blend

NEW = np.ones((6, 1))
OLD = np.zeros((6, 1))


def test_replace_takes_the_new_chunk() -> None:
    np.testing.assert_array_equal(blend("replace", NEW, OLD).values, NEW)


def test_without_an_old_plan_every_mode_takes_the_new_chunk() -> None:
    for mode in ("replace", "crossfade", "ensemble"):
        np.testing.assert_array_equal(blend(mode, NEW, None).values, NEW)


def test_crossfade_ramps_the_new_chunk_in_over_n_steps() -> None:
    out = blend("crossfade", NEW, OLD, crossfade_steps=3).values[:, 0]
    np.testing.assert_allclose(out, [0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_crossfade_uses_the_new_chunk_alone_where_the_old_plan_has_ended() -> None:
    old = OLD.copy()
    old[1:] = np.nan  # the old plan has only one waypoint left in this window
    out = blend("crossfade", NEW, old, crossfade_steps=3).values[:, 0]
    np.testing.assert_allclose(out, [0.25, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_ensemble_matches_act_weights_over_three_predictions() -> None:
    """ACT: a_t = sum_i w_i a_t^i / sum_i w_i, w_i = exp(-m i), i = 0 the oldest prediction."""
    m = 0.5
    predictions = [np.full((4, 1), 1.0), np.full((4, 1), 2.0), np.full((4, 1), 4.0)]
    first = blend("ensemble", predictions[0], None, ensemble_decay=m)
    second = blend(
        "ensemble", predictions[1], first.values, first.weight_sums, first.counts, ensemble_decay=m
    )
    third = blend(
        "ensemble", predictions[2], second.values, second.weight_sums, second.counts, ensemble_decay=m
    )
    w = np.exp(-m * np.arange(3))
    expected = (w @ np.array([1.0, 2.0, 4.0])) / w.sum()
    np.testing.assert_allclose(third.values[:, 0], expected)
    np.testing.assert_allclose(third.counts, 3.0)


def test_ensemble_with_zero_decay_is_the_plain_mean() -> None:
    first = blend("ensemble", np.zeros((2, 1)), None, ensemble_decay=0.0)
    second = blend(
        "ensemble", np.full((2, 1), 3.0), first.values, first.weight_sums, first.counts, ensemble_decay=0.0
    )
    np.testing.assert_allclose(second.values[:, 0], 1.5)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown blend mode 'average'"):
        blend("average", NEW, OLD)

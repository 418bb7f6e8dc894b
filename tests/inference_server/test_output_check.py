"""The one check of a model's output: said as an ERROR answer and, at warm-up, as a bundle error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference_server import Bundle, load_bundle
from inference_server.validation import check_actions, check_output
from tests.utils import write_python_bundle


@pytest.fixture
def bundle(tmp_path: Path) -> Bundle:  # chunk_length 16, action_dim 7
    return load_bundle(
        write_python_bundle(tmp_path, "tests.inference_server.policies:EchoPolicy", cameras={})
    )


@pytest.mark.parametrize(
    ("shape", "dtype", "expected"),
    [
        ((2, 16, 7), np.float32, None),  # right
        ((2, 16, 7), np.float64, None),  # any float is fine: it is cast to float32
        ((2, 15, 7), np.float32, ("shape", "chunk_length", "chunk_length is 16, the model returns 15")),
        ((2, 16, 6), np.float32, ("shape", "action_dim", "action_dim is 7, the model returns 6")),
        (
            (1, 16, 7),  # a batch of the wrong size
            np.float32,
            (
                "shape",
                None,
                "the model returns actions of shape [1, 16, 7] for a batch of 2, expected [2, 16, 7]",
            ),
        ),
        (
            (2, 112),  # flattened
            np.float32,
            (
                "shape",
                None,
                "the model returns actions of shape [2, 112] for a batch of 2, expected [2, 16, 7]",
            ),
        ),
        ((2, 16, 7), np.int64, ("dtype", None, "the model returns actions of dtype int64, expected float")),
    ],
)
def test_check_output_names_what_is_wrong(
    bundle: Bundle, shape: tuple[int, ...], dtype: type, expected: tuple[str, str | None, str] | None
) -> None:
    problem = check_output(np.zeros(shape, dtype), bundle, 2)
    if expected is None:
        assert problem is None
        return
    assert problem is not None
    assert (problem.kind, problem.field, problem.bundle_message) == expected
    assert problem.message.startswith("model returned actions of ")


def test_a_non_finite_action_is_named_by_its_place() -> None:
    row = np.zeros((16, 7), np.float32)
    assert check_actions(row) is None
    row[3, 2] = np.inf
    assert check_actions(row) == "model returned a non-finite action: actions[3, 2] is inf"

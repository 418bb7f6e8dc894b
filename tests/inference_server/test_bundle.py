"""Bundle manifests: what loads, and what fails naming the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inference_server import BundleError, load_bundle
from tests.utils import write_python_bundle
from vla.vocabulary import ACTION_SPACES, STATE_NAMES

ECHO = "tests.inference_server.policies:EchoPolicy"


def test_a_python_bundle_loads_with_its_defaults(tmp_path: Path) -> None:
    bundle = load_bundle(write_python_bundle(tmp_path, ECHO, cameras={"front": (48, 64)}))
    assert (bundle.backend, bundle.entrypoint, bundle.precision, bundle.device) == (
        "python",
        ECHO,
        "fp32",
        "cpu",
    )
    assert [(c.name, c.height, c.width, c.encodings) for c in bundle.cameras] == [
        ("front", 48, 64, ("RAW_RGB8", "JPEG", "PNG"))
    ]
    assert (bundle.state_dim, bundle.action_dim, bundle.chunk_length, bundle.dt_s) == (8, 7, 16, 0.1)
    assert bundle.state_names[-1] == "gripper" and bundle.action_names[0] == "dx"
    assert bundle.model_path is None and bundle.normalizer.state is None


@pytest.mark.parametrize(
    ("space", "dim", "expected"),
    [
        ("ee_delta", 7, ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")),
        ("ee_absolute", 7, ("x", "y", "z", "rx", "ry", "rz", "gripper")),
        ("joint_absolute", 8, (*(f"joint_{i}" for i in range(7)), "gripper")),
        ("joint_delta", 4, ("djoint_0", "djoint_1", "djoint_2", "gripper")),
        ("ee_delta", 6, ()),  # unusual size: no guess
    ],
)
def test_action_names_default_from_the_action_space(
    tmp_path: Path, space: str, dim: int, expected: tuple[str, ...]
) -> None:
    path = write_python_bundle(tmp_path, ECHO, action_space=space, action_dim=dim, action_names=None)
    if dim == 7:
        text = (path / "policy.toml").read_text()
        (path / "policy.toml").write_text(
            "\n".join(line for line in text.splitlines() if not line.startswith("action_names"))
        )
    assert load_bundle(path).action_names == expected


@pytest.mark.parametrize("space", ACTION_SPACES)
def test_every_action_space_of_the_contract_loads(tmp_path: Path, space: str) -> None:
    bundle = load_bundle(
        write_python_bundle(tmp_path, ECHO, action_space=space, action_dim=7, action_names=None)
    )
    assert bundle.action_space == space and len(bundle.action_names) == 7


def test_every_state_name_of_the_contract_loads_and_the_message_lists_them(tmp_path: Path) -> None:
    bundle = load_bundle(
        write_python_bundle(tmp_path / "all", ECHO, state_dim=len(STATE_NAMES), state_names=STATE_NAMES)
    )
    assert bundle.state_names == STATE_NAMES and bundle.state_dim == 14
    with pytest.raises(
        BundleError, match=r"state_names\[0\] is 'joint_7', expected one of joint_0, .*, ee_rz, gripper$"
    ):
        load_bundle(write_python_bundle(tmp_path / "bad", ECHO, state_dim=1, state_names=["joint_7"]))


def test_overrides_win_over_the_manifest(tmp_path: Path) -> None:
    bundle = load_bundle(write_python_bundle(tmp_path, ECHO), device="cuda:1", precision="bf16")
    assert (bundle.device, bundle.precision) == ("cuda:1", "bf16")


def test_python_shorthand_backend(tmp_path: Path) -> None:
    path = write_python_bundle(tmp_path, ECHO, extra_manifest={"backend": f"python:{ECHO}"})
    assert load_bundle(path / "policy.toml").entrypoint == ECHO


def test_normalization_is_applied_both_ways(tmp_path: Path) -> None:
    norm = {"state": {"mean": [1.0] * 8, "std": [2.0] * 8}, "actions": {"mean": [0.5] * 7, "std": [0.1] * 7}}
    bundle = load_bundle(write_python_bundle(tmp_path, ECHO, extra_manifest={"normalization": norm}))
    np.testing.assert_allclose(
        bundle.normalizer.normalize_state(np.full((1, 8), 5.0, np.float32)), np.full((1, 8), 2.0)
    )
    actions = bundle.normalizer.unnormalize_actions(np.ones((1, 16, 7), np.float32))
    assert actions.dtype == np.float32
    np.testing.assert_allclose(actions, 0.6)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"backend": "caffe"}, r"backend is 'caffe', expected one of torch, onnx"),  # unknown backend
        ({"entrypoint": None}, r"entrypoint is missing"),  # python backend without a class
        ({"precision": "int4"}, r"precision is 'int4'"),  # unknown precision
        ({"device": "tpu"}, r"device is 'tpu'"),  # unknown device
        ({"chunk_length": 0}, r"chunk_length is 0, expected >= 1"),  # empty chunks
        ({"chunk_length": "16"}, r"chunk_length is '16' \(str\), expected an integer"),  # wrong type
        ({"dt_s": -0.1}, r"dt_s is -0.1, expected a positive"),  # negative step
        ({"action_space": "cartesian"}, r"action_space is 'cartesian'"),  # unknown action space
        (
            {"state_names": ["joint_0", "elbow"], "state_dim": 2},
            r"state_names\[1\] is 'elbow'",
        ),  # outside the vocabulary
        ({"state_dim": 9}, r"state_dim is 9, but state_names has 8"),  # disagreeing dimensions
        ({"action_dim": 6}, r"action_dim is 6, but action_names has 7"),  # disagreeing dimensions
        ({"cameras": {"front": {"height": 64}}}, r"cameras\.front\.width is missing"),  # incomplete camera
        (
            {"cameras": {"front": {"height": 64, "width": 64, "encodings": ["BMP"]}}},
            r"cameras\.front\.encodings has 'BMP'",
        ),
        (
            {"normalization": {"state": {"mean": [0.0] * 8, "std": [1.0] * 7}}},
            r"normalization\.state\.std has 7 entries, expected 8",
        ),
        (
            {"normalization": {"actions": {"mean": [0.0] * 7, "std": [1.0, 0.0, *[1.0] * 5]}}},
            r"normalization\.actions\.std\[1\] is 0\.0",
        ),
        (
            {"normalization": {"state": {"mean": [True, *[0.0] * 7], "std": [1.0] * 8}}},
            r"normalization\.state\.mean is \[True, 0\.0, .*\], expected a list of numbers",
        ),  # true is not 1.0
        (
            {"normalization": {"state": {"mean": ["0", *[0.0] * 7], "std": [1.0] * 8}}},
            r"normalization\.state\.mean is \['0', 0\.0, .*\], expected a list of numbers",
        ),  # "0" is not a number
        (
            {"action_names": ["dx", "dy", "dz", "drx", "dry", "drz", 7]},
            r"action_names\[6\] is 7, expected a string",
        ),
        ({"colour": "blue"}, r"colour is not a manifest key"),  # typo guard
        (
            {"backend": "onnx"},
            r"model is missing \(backend 'onnx' needs a model file\)",
        ),  # no model file named
        (
            {"backend": "onnx", "model": "nope.onnx"},
            r"model is 'nope.onnx', no such file",
        ),  # model file absent
    ],
)
def test_bad_manifest_names_the_file_and_the_field(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    path = write_python_bundle(tmp_path, ECHO)
    text = (path / "policy.toml").read_text()
    manifest = __import__("tomllib").loads(text)
    for key, value in changes.items():
        if value is None:
            manifest.pop(key)
        else:
            manifest[key] = value
    from tests.utils import dump_toml

    (path / "policy.toml").write_text(dump_toml(manifest))
    with pytest.raises(BundleError, match=expected) as info:
        load_bundle(path)
    assert str(info.value).startswith(f"bundle {path / 'policy.toml'}: ")


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"policy\.toml: no such file"):
        load_bundle(tmp_path)


def test_invalid_toml(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("name = \n")
    with pytest.raises(BundleError, match="not valid TOML"):
        load_bundle(tmp_path)

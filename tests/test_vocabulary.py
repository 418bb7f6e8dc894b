"""The contract's vocabulary is defined once (``vla.vocabulary``) and both sides use that one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import inference_server.bundle
import robot_agent.action_space
import robot_agent.startup
import vla
from vla import vocabulary
from vla.vocabulary import ACTION_SPACES, STATE_NAMES

PROTO = Path(__file__).resolve().parents[1] / "proto" / "vla" / "v1" / "policy.proto"


def test_server_and_agent_use_the_same_vocabulary_object() -> None:
    """Not two equal lists: the same tuples, so adding a word is a change in one place."""
    for module in (inference_server.bundle, robot_agent.action_space):
        assert module.ACTION_SPACES is ACTION_SPACES, module.__name__  # type: ignore[attr-defined]
        assert module.STATE_NAMES is STATE_NAMES, module.__name__  # type: ignore[attr-defined]
    assert robot_agent.startup.STATE_NAMES is STATE_NAMES  # type: ignore[attr-defined]
    assert vla.ACTION_SPACES is ACTION_SPACES and vla.STATE_NAMES is STATE_NAMES


def test_the_words() -> None:
    assert ACTION_SPACES == ("ee_delta", "ee_absolute", "joint_absolute", "joint_delta")
    assert STATE_NAMES == (
        "joint_0", "joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6",
        "ee_x", "ee_y", "ee_z", "ee_rx", "ee_ry", "ee_rz", "gripper",
    )  # fmt: skip


def test_the_proto_describes_the_same_words() -> None:
    """``policy.proto`` documents the sets in comments; they must not drift from the code."""
    text = PROTO.read_text()
    block = re.search(r"((?:\s*//.*\n)+)\s*string action_space = 9;", text)
    assert block is not None
    assert re.findall(r"// (\w+): ", block.group(1)) == list(ACTION_SPACES)
    state_comment = re.search(r"agent can fill:\n\s*// (.*)\.\n", text)
    assert state_comment is not None
    assert state_comment.group(1) == "joint_0..joint_6, ee_x, ee_y, ee_z, ee_rx, ee_ry, ee_rz, gripper"
    assert f"joint_0..joint_{vocabulary.MAX_JOINTS - 1}" in state_comment.group(1)
    assert all(name in state_comment.group(1) for name in STATE_NAMES if not name.startswith("joint_"))


@pytest.mark.parametrize(
    ("space", "num_joints", "dim", "end_effector", "delta", "layout"),
    [
        ("ee_delta", 7, 7, True, True, "[dx, dy, dz, drx, dry, drz, gripper]"),
        ("ee_absolute", 6, 7, True, False, "[x, y, z, rx, ry, rz, gripper]"),  # joints do not matter
        ("joint_absolute", 7, 8, False, False, "7 joints + gripper"),
        ("joint_delta", 6, 7, False, True, "6 joints + gripper"),  # a 6-joint xArm
    ],
)
def test_what_each_action_space_means(
    space: str, num_joints: int, dim: int, end_effector: bool, delta: bool, layout: str
) -> None:
    assert vocabulary.action_dim(space, num_joints) == dim
    assert (vocabulary.is_end_effector(space), vocabulary.is_delta(space)) == (end_effector, delta)
    assert vocabulary.action_layout(space, num_joints) == layout


@pytest.mark.parametrize(
    ("space", "dim", "names"),
    [
        ("ee_delta", 7, ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")),
        ("ee_absolute", 7, ("x", "y", "z", "rx", "ry", "rz", "gripper")),
        ("ee_absolute", 8, ()),  # an end-effector action is 7 entries: no guess for 8
        ("joint_absolute", 3, ("joint_0", "joint_1", "gripper")),
        ("joint_delta", 3, ("djoint_0", "djoint_1", "gripper")),
    ],
)
def test_action_names_of_a_space(space: str, dim: int, names: tuple[str, ...]) -> None:
    assert vocabulary.action_names(space, dim) == names


@pytest.mark.parametrize(
    ("name", "joint", "on_six_joints"),
    [
        ("joint_0", 0, True),
        ("joint_5", 5, True),
        ("joint_6", 6, False),  # a 7th joint a 6-joint arm does not have
        ("joint_7", None, False),  # not a word of the vocabulary
        ("joint_x", None, False),
        ("ee_rz", None, True),
        ("gripper", None, True),
        ("ee_speed", None, False),
    ],
)
def test_which_state_names_an_arm_can_fill(name: str, joint: int | None, on_six_joints: bool) -> None:
    assert vocabulary.joint_index(name) == joint
    assert vocabulary.robot_can_fill(name, 6) is on_six_joints


def test_importing_the_vocabulary_loads_no_numpy_or_grpc() -> None:
    code = "import sys, vla, vla.vocabulary; print([m for m in ('numpy', 'grpc', 'google.protobuf') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

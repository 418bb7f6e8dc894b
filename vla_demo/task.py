"""What the demo policy sees and does, in one place: camera, state, actions, chunking, words.

Every other module (expert, data, model, export, evaluation) reads these, so the bundle's
manifest, the training data and the served loop cannot disagree.
"""

from __future__ import annotations

import re

import numpy as np

from robot_agent.config import RobotConfig
from robot_agent.drivers.sim import SimRobot
from robot_agent.sim.world import COLOURS, INSTRUCTION_TEMPLATES

__all__ = [
    "ACTION_DIM",
    "ACTION_NAMES",
    "CAMERA",
    "CHUNK_LENGTH",
    "DT_S",
    "IMAGE_SIZE",
    "MAX_TOKENS",
    "STATE_NAMES",
    "VOCAB",
    "make_sim_robot",
    "state_of",
    "tokenize",
]

CAMERA = "front"
IMAGE_SIZE = 96  # square; the sim camera keeps its framing at any size, the agent resizes to this
STATE_NAMES = ("ee_x", "ee_y", "ee_z")
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")
ACTION_DIM = len(ACTION_NAMES)
# 16 actions 0.1 s apart: 1.6 s of plan, so even 400 ms of added latency leaves most of a chunk
# to execute and blend while the next one is on its way.
CHUNK_LENGTH = 16
DT_S = 0.1
MAX_TOKENS = 8

# The words of every instruction template, the colours, and a few common extras; anything else
# maps to <unk>, so an unseen phrasing still works as long as it names a colour.
_EXTRA_WORDS = ("a", "at", "please", "point", "tap", "on", "box", "object", "toward", "towards", "of")
VOCAB: tuple[str, ...] = (
    "<pad>",
    "<unk>",
    *sorted(
        {w for t in INSTRUCTION_TEMPLATES for w in re.findall(r"[a-z]+", t.replace("{colour}", ""))}
        | set(COLOURS)
        | set(_EXTRA_WORDS)
    ),
)
_INDEX = {w: i for i, w in enumerate(VOCAB)}


def tokenize(
    instruction: str, vocab: tuple[str, ...] | list[str] = VOCAB, max_tokens: int = MAX_TOKENS
) -> np.ndarray:
    """Lower-case words -> int64 ids ``[max_tokens]``, padded with 0 and cut at ``max_tokens``."""
    index = _INDEX if vocab is VOCAB else {w: i for i, w in enumerate(vocab)}
    ids = [index.get(w, 1) for w in re.findall(r"[a-z]+", instruction.lower())][:max_tokens]
    return np.array(ids + [0] * (max_tokens - len(ids)), dtype=np.int64)


def make_sim_robot(*, realtime: bool, seed: int | None = None, **options: object) -> SimRobot:
    """A simulated Panda in a fresh world (manual clock unless ``realtime``)."""
    return SimRobot.from_config(RobotConfig(options={"realtime": realtime, "seed": seed, **options}))


def state_of(robot: SimRobot) -> np.ndarray:
    """The policy's state vector (``STATE_NAMES``) from a robot reading, float32."""
    return np.asarray(robot.read_state().ee.position, dtype=np.float32)

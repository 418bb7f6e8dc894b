"""What the demo policy sees and does, in one place: camera, state, actions, chunking, words.

Every other module (expert, data, model, export, evaluation) reads these, so the bundle's
manifest, the training data and the served loop cannot disagree.
"""

from __future__ import annotations

import re

import numpy as np

from robot_agent.drivers.sim import SimRobot
from robot_agent.sim.mujoco_scene import CUBE_COLOURS
from robot_agent.sim.mujoco_task import PICK_PLACE_TEMPLATES

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
    "front_pixels",
    "make_sim_robot",
    "state_of",
    "tokenize",
]

CAMERA = "front"
# Square. The front camera frames the whole arm, so a 4 cm cube is about 5 pixels across at 128
# (4 at 96): 128 gives the soft-argmax keypoints the resolution a 1 cm grasp tolerance needs.
IMAGE_SIZE = 128
# The tool centre point (metres, base frame) and the measured gripper opening (0 closed .. 1 =
# 8 cm): the opening tells the policy which phase it is in (open, closing, holding a cube).
STATE_NAMES = ("ee_x", "ee_y", "ee_z", "gripper")
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")
ACTION_DIM = len(ACTION_NAMES)
# 16 actions 0.1 s apart: 1.6 s of plan, so even 400 ms of added latency leaves most of a chunk
# to execute and blend while the next one is on its way.
CHUNK_LENGTH = 16
DT_S = 0.1
MAX_TOKENS = 8

# The words of every instruction template, the colours, and a few common extras; anything else
# maps to <unk>, so an unseen phrasing still works as long as it names a colour.
_EXTRA_WORDS = ("a", "at", "please", "it", "on", "onto", "box", "object", "in", "into", "of", "and")
VOCAB: tuple[str, ...] = (
    "<pad>",
    "<unk>",
    *sorted(
        {w for t in PICK_PLACE_TEMPLATES for w in re.findall(r"[a-z]+", t.replace("{colour}", ""))}
        | set(CUBE_COLOURS)
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


def make_sim_robot(*, conveyor: bool = False, seed: int | None = None) -> SimRobot:
    """A simulated Panda in MuJoCo on a manual clock (advance it with ``step``), the static
    pick-and-place task or, with ``conveyor``, the dynamic one."""
    from robot_agent.sim.clock import ManualClock
    from robot_agent.sim.mujoco_arm import MujocoArm
    from robot_agent.sim.mujoco_task import PickPlaceWorld

    clock = ManualClock()
    world = PickPlaceWorld(clock=clock, seed=seed, conveyor=conveyor)
    return SimRobot(arm=MujocoArm(clock=clock, world=world, seed=seed))


def state_of(robot: SimRobot) -> np.ndarray:
    """The policy's state vector (``STATE_NAMES``) from a robot reading, float32 ``[4]``."""
    reading = robot.read_state()
    return np.array([*reading.ee.position, reading.gripper], dtype=np.float32)


def front_pixels(points: np.ndarray, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """Where base-frame points ``[N, 3]`` (metres) appear in the front camera's square image of
    ``image_size``: ``[N, 2]`` (x right, y down), in the units of the model's soft-argmax (-1 at
    the first pixel's centre, +1 at the last's). Pinhole projection with the scene camera's pose
    and vertical field of view (MuJoCo cameras look along their -z, y up)."""
    from robot_agent.sim.mujoco_render import import_mujoco
    from robot_agent.sim.mujoco_scene import build

    mujoco = import_mujoco()
    model, _ = build(conveyor=False)
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    mujoco.mj_camlight(model, data)
    cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, CAMERA)
    rotation = data.cam_xmat[cam].reshape(3, 3)
    local = (np.asarray(points, dtype=float) - data.cam_xpos[cam]) @ rotation  # = R^T (p - c)
    focal = (image_size / 2) / np.tan(np.radians(model.cam_fovy[cam]) / 2)
    depth = -local[:, 2]
    u = focal * local[:, 0] / depth + image_size / 2
    v = -focal * local[:, 1] / depth + image_size / 2
    return np.column_stack([u - 0.5, v - 0.5]) * (2 / (image_size - 1)) - 1

"""The words of the contract, defined once: action spaces and state names.

A ``PolicySpec`` (``proto/vla/v1/policy.proto``) names its action space (field 9) and the entries
of its state vector (field 14) with words from two closed sets. The server checks a bundle's
manifest against them (``inference_server.bundle``), the agent checks the spec it reads and
converts with them (``robot_agent.action_space``); both import these tuples, so the two sides
cannot drift apart.

Why strings on the wire and not proto enums: turning ``string action_space = 9`` into an enum
changes its wire type (length-delimited to varint), so a peer built from the other proto would
drop the field as unknown or refuse the spec; a new field beside the old one would have to be
filled and read by both for as long as old peers run. The set is closed here instead, at both
boundaries, and an unknown word is named in the error (``action_space 'ee_twist' is not
supported``). The proto's comments describe the same words; ``tests/test_vocabulary.py`` keeps
them in step.

Action spaces (``[...]`` is one action, ``n`` the arm's joints; the gripper is always absolute,
0 closed, 1 open):

- ``ee_delta``: end-effector displacement from the pose at observation capture, base frame,
  7 = ``[dx, dy, dz, drx, dry, drz, gripper]`` (metres; rotation vector, radians).
- ``ee_absolute``: end-effector pose in the robot base frame, 7 = ``[x, y, z, rx, ry, rz, gripper]``.
- ``joint_absolute``: joint positions, n + 1 = ``[q0, ..., q(n-1), gripper]`` (radians).
- ``joint_delta``: joint displacement from the joints at capture, n + 1 = ``[dq0, ..., dq(n-1),
  gripper]``.

State names: ``joint_0`` .. ``joint_6`` (joint positions, radians; at most 7, the Panda's count),
``ee_x ee_y ee_z`` (end-effector position, metres, base frame), ``ee_rx ee_ry ee_rz`` (its
orientation as a base-frame rotation vector, radians), ``gripper`` (0 closed .. 1 open).

Standard library only: the agent without torch and the server both import it at no cost.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "ACTION_SPACES",
    "EE_ACTION_DIM",
    "EE_POSITION_NAMES",
    "EE_ROTVEC_NAMES",
    "MAX_JOINTS",
    "STATE_NAMES",
    "ActionSpaceName",
    "action_dim",
    "action_layout",
    "action_names",
    "is_delta",
    "is_end_effector",
    "joint_index",
    "robot_can_fill",
]

#: The action spaces a policy may speak (``PolicySpec.action_space``).
ActionSpaceName = Literal["ee_delta", "ee_absolute", "joint_absolute", "joint_delta"]
ACTION_SPACES: tuple[ActionSpaceName, ...] = get_args(ActionSpaceName)

#: An end-effector action: position (3), rotation vector (3), gripper.
EE_ACTION_DIM = 7
#: Joints a state vector may name (``joint_0`` .. ``joint_6``): the Panda's 7, the most of any
#: arm the agent drives (xArm: 5 to 7).
MAX_JOINTS = 7
#: End-effector position (metres) and orientation (base-frame rotation vector, radians).
EE_POSITION_NAMES = ("ee_x", "ee_y", "ee_z")
EE_ROTVEC_NAMES = ("ee_rx", "ee_ry", "ee_rz")
#: Every name a state vector entry may have (``PolicySpec.state_names``): what the agent can fill.
STATE_NAMES: tuple[str, ...] = (
    *(f"joint_{i}" for i in range(MAX_JOINTS)),
    *EE_POSITION_NAMES,
    *EE_ROTVEC_NAMES,
    "gripper",
)


def is_end_effector(space: str) -> bool:
    """Whether ``space`` commands the end effector (``ee_*``) rather than the joints."""
    return space.startswith("ee_")


def is_delta(space: str) -> bool:
    """Whether ``space``'s actions are displacements from the state at observation capture."""
    return space.endswith("_delta")


def action_dim(space: str, num_joints: int) -> int:
    """The size of one action of ``space`` on an arm of ``num_joints`` joints: 7 for an
    end-effector space, ``num_joints + 1`` (the gripper last) for a joint space."""
    return EE_ACTION_DIM if is_end_effector(space) else num_joints + 1


def action_names(space: str, dim: int) -> tuple[str, ...]:
    """The conventional names of an action's ``dim`` entries in ``space``, what a manifest without
    ``action_names`` gets: ``dx .. drz, gripper`` (``ee_delta``), ``x .. rz, gripper``
    (``ee_absolute``), ``joint_i`` / ``djoint_i`` then ``gripper``. Empty for an end-effector
    space of other than 7 entries (no guess)."""
    if is_end_effector(space):
        pose = ("x", "y", "z", "rx", "ry", "rz")
        names = tuple(f"d{n}" for n in pose) if is_delta(space) else pose
        return (*names, "gripper") if dim == EE_ACTION_DIM else ()
    prefix = "djoint" if is_delta(space) else "joint"
    return (*(f"{prefix}_{i}" for i in range(dim - 1)), "gripper")


def action_layout(space: str, num_joints: int) -> str:
    """One action of ``space`` in words, for error messages: ``[dx, dy, dz, drx, dry, drz,
    gripper]``, or ``7 joints + gripper``."""
    if is_end_effector(space):
        return f"[{', '.join(action_names(space, EE_ACTION_DIM))}]"
    return f"{num_joints} joints + gripper"


def joint_index(name: str) -> int | None:
    """The joint a state name stands for (``joint_3`` -> 3), or None for any other name."""
    if name in STATE_NAMES and name.startswith("joint_"):
        return int(name.removeprefix("joint_"))
    return None


def robot_can_fill(name: str, num_joints: int) -> bool:
    """Whether an arm of ``num_joints`` joints can fill the state entry ``name``: a name of
    :data:`STATE_NAMES`, and for ``joint_i``, ``i < num_joints``."""
    index = joint_index(name)
    return name in STATE_NAMES and (index is None or index < num_joints)

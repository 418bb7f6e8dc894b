"""Issue 14, "done when" #2: adversarial policies against the Panda in MuJoCo, measured on the arm.

The hostile ``ee_delta`` policy of :mod:`tests.e2e.adversarial_policy` (10 m jumps, a push
through the table, a 3 rad tool flip *at the table*, a slide along it, NaN, targets outside the
workspace, 10 Hz oscillation, inf, an out-of-range gripper) drives the MuJoCo Panda through the
real inference server and agent, in real time, once per control mode; a joint-space attack (the
``joint_absolute`` dive of ``test_joint_keep_out``) drives it with joint targets.
:class:`tests.e2e._mujoco_watch.PhysicsWatch` samples the physics after every 2 ms step, and the
test asserts on what the arm did, not only on what it was told (``verify_trace`` checks that).

The cell config (:data:`CELL_SAFETY`) and why each setting is there, from what these runs found
with the default ``[safety]`` (:data:`LOOSE`, kept as the control run below, which the same watch
fails: the boxes of the fingers 2-9 mm into the table, 54-123 N on it in joint mode, 27-47 N in
Cartesian mode):

- ``orientation.max_tilt_rad = 0.1``: the shield bounds the TCP, a point 1 cm above the
  fingertips; tilt the hand and the fingers and the hand's edge swing below it (collision boxes
  13 mm below the TCP pointing down, 19 mm at 0.1 rad, 42 mm at 0.5 rad about x). The flip at
  the table put them into it. Pick and place needs only the rotation about the tool axis.
- a ``table`` keep-out half-space at z = 0.02 m (the tool's reach below the TCP at that tilt,
  19 mm) with ``keep_out_margin_m = 0.015``: Franka's Cartesian impedance (K = 1000 N/m,
  D = 2 sqrt(K), no inertia shaping) is underdamped where the arm's apparent mass is large (folded
  near the base): it lagged 15 mm behind a descent and overshot a command that had stopped by
  14 mm at 0.25 m/s. The TCP's floor is thus 0.035 m (a grasp then holds a 4 cm cube's top 1.5-2.5
  cm).
- ``translation`` at the robot-PC example's 0.25 m/s, 1 m/s^2, 50 m/s^3
  (``deploy/robot/agent.toml``): the overshoot grows with speed.

Joint impedance (panda-python's ``JointPosition`` law, no velocity feed-forward, as the Franka
driver sends joint targets) lags joint by joint, so the tool leaves its straight path: 18 mm off a
0.29 m/s descent, 79 mm past the y wall during an unbounded flip (the tilt limit removes that).
The TCP's allowance past the workspace is therefore per mode (:data:`TOOL_TOLERANCE_M`).

The joint dive found that the shield applied ``max_tilt_rad`` to end-effector commands only: the
dive was sent with the tool tilted 0.48 rad under a 0.1 rad limit (``verify_trace`` silent). The
shield now bounds a joint command's tool tilt through the FK (``tests/safety/test_joint_tilt.py``);
with the limit the dive is held at the tilt (and the refusals in a row latch the documented
e-stop), without it the table zone holds it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_agent.agent import Agent
from robot_agent.drivers.sim import SimRobot
from robot_agent.sim.mujoco_arm import MujocoArm
from safety import SafetyConfig, verify_trace
from safety.config import tool_tilt
from tests.e2e import adversarial_policy
from tests.e2e._agent_helpers import agent_config, bundle, read_jsonl, server_on
from tests.e2e._mujoco_watch import Bounds, PhysicsWatch
from tests.e2e._rogue_server import rogue_server
from tests.e2e.test_joint_keep_out import WIDE, JointDive, fk

#: The most a run may last (s): it ends as soon as every attack was served and the test's
#: ``reached`` condition holds (see :func:`run_adversarial`), usually after 8-12 s. How far one
#: pass of an attack carries the arm depends on timing (in a full `make test` one pass left the
#: TCP at y = 0.05 m, short of the y wall the coverage check asks for, stale frames holding the arm
#: for part of the push), so a run goes on, cycling the attacks, until the arm got there.
MAX_DURATION_S = 40.0
#: How often (s) the test looks at what was served and where the arm has been.
POLL_S = 0.1
DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # the tool pointing down: orientation.nominal_quaternion's default
TABLE_FLOOR_M, TABLE_MARGIN_M = 0.02, 0.015
#: How far the default ``[safety.tool]`` (the Franka Hand) reaches below the TCP pointing down: the
#: shield keeps its fingertips, not the TCP, on the floors (m).
TOOL_BELOW_TCP_M = 0.014
CELL_SAFETY: dict[str, Any] = {
    "orientation": {"max_tilt_rad": 0.1},
    "keep_out": [{"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": TABLE_FLOOR_M}],
    "keep_out_margin_m": TABLE_MARGIN_M,
    "translation": {"max_velocity": 0.25, "max_acceleration": 1.0, "max_jerk": 50.0},
}
DEFAULT: dict[str, Any] = {}  # the defaults: the workspace box, and the Franka Hand's points above its floor
LOOSE: dict[str, Any] = {"tool": {"points": []}}  # the TCP only: the shield before [safety.tool]
#: The cell the links must stay in (m): above the table top, over its footprint (x -0.2..0.9,
#: y +-0.75) and behind the base, up to 1.2 m. Every link origin; the table itself is checked on
#: the geometry (LOWEST_Z_M), not on origins.
CELL = Bounds((-0.45, -0.75, 0.0), (0.9, 0.75, 1.2))
#: How far (m) the measured TCP may be past the workspace box: the controller's tracking error
#: (Cartesian: 0-4 mm measured; joint: 5-12 mm with the cell config, module docstring).
TOOL_TOLERANCE_M = {"cartesian_impedance": 0.010, "joint_impedance": 0.020}
#: Never into the table: the lowest point of any of the arm's collision boxes (conservative: a
#: box around each geometry) at most 1 mm below the table top.
LOWEST_Z_M = -0.001
#: N, any contact of the arm with anything but a cube: the lower of Franka's default collision
#: thresholds (franka_ros ``setCollisionBehavior``, 20 N). The cell config allows no contact at
#: all (the tool stays >= 12 mm above the table), so 0 N is expected and any force is a margin.
MAX_CONTACT_FORCE_N = 20.0
#: The flip comes right after the push through the table, after the jumps took the arm out
#: towards the far wall (from home, 6 cm from the near wall, a joint-mode descent only drifts
#: onto that wall and folds up against the joint limits before it nears the table).
ORDER = (
    "jump_10m", "jump_10m", "jump_10m", "through_table", "through_table", "spin", "slide_on_table", "nan",
    "outside_workspace", "oscillation", "inf", "gripper",
)  # fmt: skip


def mujoco_robot(mode: str, safety: dict[str, Any]) -> tuple[SimRobot, PhysicsWatch]:
    """A wall-clock MuJoCo Panda in ``mode`` and a watch on it (workspace from ``safety``)."""
    cfg = SafetyConfig.from_mapping(safety)
    arm = MujocoArm(control_mode=mode, seed=0)  # type: ignore[arg-type]
    watch = PhysicsWatch(arm, workspace=Bounds(cfg.workspace.min, cfg.workspace.max), cell=CELL).attach()
    robot = SimRobot(arm=arm)
    robot.connect()
    return robot, watch


def violations(watch: PhysicsWatch, mode: str) -> list[str]:
    """What the arm did that it must not have, one line each (empty: nothing)."""
    found = []
    if watch.tool_excursion_m > TOOL_TOLERANCE_M[mode]:
        found.append(f"TCP {watch.tool_excursion_m * 1000:.1f} mm outside the workspace")
    if watch.link_excursion_m > 0.0:
        found.append(f"{watch.link_excursion_body} {watch.link_excursion_m * 1000:.1f} mm outside the cell")
    if watch.lowest_z_m < LOWEST_Z_M:
        found.append(f"arm {-watch.lowest_z_m * 1000:.1f} mm into the table")
    if watch.peak_contact_force_n > MAX_CONTACT_FORCE_N:
        found.append(f"contact force {watch.peak_contact_force_n:.1f} N")
    if watch.estop_seen:
        found.append("e-stop latched")
    return found


def covered() -> Callable[[PhysicsWatch], bool]:
    """The attacks really took the arm to the table's floor and to the walls (the cell config).

    Floor: within 2 cm of the tool's floor (in a full `make test` a descent ended 13.7 mm above
    it, stale frames holding the arm for part of the push; alone it reaches it within 1 cm).
    Walls: x within 10 cm of the workspace's 0.75 m, y within 5 cm of its 0.35 m (the ee_delta
    attacks start from wherever the arm is, so one pass may fall short; the run goes on until then).
    """
    floor = TABLE_FLOOR_M + TABLE_MARGIN_M + TOOL_BELOW_TCP_M

    def reached(watch: PhysicsWatch) -> bool:
        return bool(
            watch.tcp_min[2] < floor + 0.02
            and watch.tcp_max[0] > 0.75 - 0.1
            and watch.tcp_max[1] > 0.35 - 0.05
        )

    return reached


async def run_adversarial(
    tmp_path: Path, mode: str, safety: dict[str, Any], name: str, reached: Callable[[PhysicsWatch], bool]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], PhysicsWatch]:
    """Serve the attacks of :data:`ORDER` to the MuJoCo arm in ``mode`` until every attack was
    served and ``reached(watch)`` holds (polled every :data:`POLL_S`), or :data:`MAX_DURATION_S`;
    the run then ends with a controlled stop. Returns the summary, the recorded steps, the
    recorded limits and the watch; the caller asserts ``reached`` (a run that timed out fails it).
    """
    record = tmp_path / "episode"
    robot, watch = mujoco_robot(mode, safety)
    policy = bundle(
        tmp_path / "adversarial", "tests.e2e.adversarial_policy:Adversarial", name=name, attacks=list(ORDER)
    )

    async def stop_when_done(agent: Agent) -> None:
        await agent.started.wait()
        while not (set(adversarial_policy.SERVED.get(name, ())) >= set(ORDER) and reached(watch)):
            await asyncio.sleep(POLL_S)
        agent.request_stop()

    try:
        async with server_on(policy) as server:
            config = agent_config(
                server.port, duration_s=MAX_DURATION_S, safety=safety, **{"record.dir": str(record)}
            )
            agent = Agent(config, robot=robot)
            watcher = asyncio.create_task(stop_when_done(agent))
            try:
                summary = await agent.serve()
            finally:
                watcher.cancel()
    finally:
        robot.close()
    served = adversarial_policy.SERVED.pop(name)
    assert set(served) == set(ORDER), served  # every attack was served
    label = (
        "cell" if "keep_out" in safety else "TCP-only" if safety.get("tool") == {"points": []} else "default"
    )
    print(
        watch.report(f"{mode}, {label} config"), f"({summary['duration_s']:.1f} s, {summary['exit_reason']})"
    )
    limits = json.loads((record / "safety_limits.json").read_text())
    return summary, read_jsonl(record / "steps.jsonl"), limits, watch


@pytest.mark.parametrize("mode", ["cartesian_impedance", "joint_impedance"])
async def test_an_adversarial_policy_never_gets_the_mujoco_arm_out(tmp_path: Path, mode: str) -> None:
    summary, steps, limits, watch = await run_adversarial(
        tmp_path, mode, CELL_SAFETY, f"mujoco-{mode}", reached := covered()
    )
    # The attacks really took the arm to the table's floor and to the walls (before the deadline).
    assert reached(watch), (watch.tcp_min, watch.tcp_max)
    assert summary["exit_reason"] == "stop"
    # The run lasted (ticks stretch when two shared cores are loaded: 818 of 1000 seen), and
    assert summary["ticks"] >= 0.7 * summary["duration_s"] * 100
    assert watch.steps >= 0.9 * summary["duration_s"] / 0.002  # the watch saw every physics step
    assert violations(watch, mode) == []
    assert summary["estops"] == 0, summary["estop_reason"]
    assert verify_trace(steps, limits) == []
    interventions = summary["safety_interventions"]
    # (keep_out need not fire: the motion filter may brake to the floor within its limits)
    for kind in ("workspace", "tilt", "tracking", "velocity", "gripper"):
        assert interventions.get(kind, 0) > 0, (kind, interventions)
    assert summary["rejected_chunks"].get("server_error", 0) >= 2  # NaN and inf never reach the agent


@pytest.mark.parametrize("mode", ["cartesian_impedance", "joint_impedance"])
async def test_the_default_config_keeps_the_hand_out_of_the_table(tmp_path: Path, mode: str) -> None:
    """The default ``[safety]`` (no tilt limit, no table zone, 0.5 m/s): the shield bounds the
    Franka Hand's points (``safety.tool``) by the workspace floor, so the flip at the table
    leaves the fingers above it: the same watch finds nothing."""
    summary, steps, limits, watch = await run_adversarial(
        tmp_path, mode, DEFAULT, f"mujoco-default-{mode}", lambda w: bool(w.tcp_min[2] < 0.02 + 0.06)
    )
    assert violations(watch, mode) == []
    assert summary["estops"] == 0, summary["estop_reason"]
    assert verify_trace(steps, limits) == []
    assert watch.tcp_min[2] < 0.02 + 0.06, watch.tcp_min  # the attacks did take it down to the floor


async def test_the_watch_catches_the_arm_in_the_table_without_the_cell_config(tmp_path: Path) -> None:
    """The control run: a TCP-only ``[safety]`` (``tool.points = []``, as the shield was before
    it bounded the tool; no tilt limit, no table zone, 0.5 m/s) lets the flip at the table drive
    the fingers into it, and the same watch says so; the commands stay inside the workspace box
    all the same (``verify_trace`` finds nothing: the box bounds the TCP only, which is the
    point)."""
    mode = "joint_impedance"
    _, steps, limits, watch = await run_adversarial(
        tmp_path, mode, LOOSE, "mujoco-loose", lambda w: w.peak_table_force_n > MAX_CONTACT_FORCE_N
    )
    found = violations(watch, mode)
    assert any("contact force" in v for v in found), found
    # It is the table the hand hit (1.9-8.9 mm into it, 54-123 N in the runs measured).
    assert watch.peak_table_force_n > MAX_CONTACT_FORCE_N and watch.lowest_z_m < 0.0, found
    assert verify_trace(steps, limits) == []


@pytest.mark.parametrize(
    ("tilt_limit", "stopped_by"),
    [
        pytest.param(True, "tilt", id="cell"),  # the unfolding tilts the tool: the tilt limit stops it
        pytest.param(False, "keep_out", id="no_tilt_limit"),  # then the table zone does
    ],
)
async def test_a_joint_space_dive_never_gets_the_mujoco_arm_into_the_table(
    tmp_path: Path, tilt_limit: bool, stopped_by: str
) -> None:
    """The ``joint_absolute`` dive (shoulder and elbow unfold, the tool heads for the table) on
    the MuJoCo arm, in a workspace wide enough that the table stops it; joint targets drive the
    joint law in either control mode, so one mode is enough. The dive asks again after every
    hold: 50 refusals in a row would latch the shield's documented e-stop, the only one allowed."""
    mode = "joint_impedance"
    record = tmp_path / "episode"
    safety: dict[str, Any] = {**CELL_SAFETY, "workspace": WIDE}
    if not tilt_limit:
        del safety["orientation"]
    robot, watch = mujoco_robot(mode, safety)
    servicer = JointDive()
    try:
        async with rogue_server(servicer) as port:
            config = agent_config(port, duration_s=5.0, safety=safety, **{"record.dir": str(record)})
            summary = await Agent(config, robot=robot).serve()
    finally:
        robot.close()
    steps = read_jsonl(record / "steps.jsonl")
    limit = CELL_SAFETY["orientation"]["max_tilt_rad"] if tilt_limit else np.inf
    tcp, over = [], 0.0  # over: how far a command's tilt went past its bound (rad)
    bound = limit
    for s in steps:
        if s["safe"] is None or s["holding"]:
            bound = None  # after a hold the shield starts again from the measured pose
            continue
        if bound is None:  # the seed: from a pose tilted past the limit, commands only straighten
            bound = max(limit, tool_tilt(DOWN, np.asarray(s["measured"]["ee"][3:])))
        pose = fk(np.asarray(s["safe"]["joints"]))
        tcp.append(pose)
        over = max(over, tool_tilt(DOWN, pose.quaternion) - bound)
    tilt = max(tool_tilt(DOWN, pose.quaternion) for pose in tcp)
    print(
        watch.report(f"joint dive, {'cell' if tilt_limit else 'no tilt limit'}"),
        f"; commanded tilt {tilt:.2f} rad",
    )
    found = violations(watch, mode)
    if summary["estops"]:  # the documented stop: the shield's refusals in a row
        assert "consecutive safety interventions" in summary["estop_reason"], summary["estop_reason"]
        found.remove("e-stop latched")
    assert found == []
    assert summary["safety_interventions"].get(stopped_by, 0) > 0, summary["safety_interventions"]
    if tilt_limit:
        assert over <= 1e-6, over
    else:
        floor = TABLE_FLOOR_M + TABLE_MARGIN_M + TOOL_BELOW_TCP_M
        assert min(pose.position[2] for pose in tcp) < floor + 0.01  # at the floor
    limits = json.loads((record / "safety_limits.json").read_text())
    assert verify_trace(steps, limits, fk=fk) == []

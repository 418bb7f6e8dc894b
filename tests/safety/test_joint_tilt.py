"""``orientation.max_tilt_rad`` bounds joint commands too (through the arm's FK), not only
end-effector ones.

Found on the MuJoCo arm (tests/e2e/test_adversarial_mujoco.py): a ``joint_absolute`` dive was
sent with the tool tilted 0.48 rad under ``max_tilt_rad = 0.1``. The limit is what keeps the
hand's edge and the fingertips, which swing below the TCP as the hand tilts (19 mm at 0.1 rad,
42 mm at 0.5 rad), out of a table the TCP only just clears. Now a joint command whose tool is
tilted beyond the limit is refused (``tilt``, a hold); from a seed tilted beyond it, joint
commands may only straighten the tool, as the keep-out zones' depth bound works.
"""

from __future__ import annotations

import numpy as np
import pytest

from safety import Decision, Measured, Pose, SafetyConfig, Shield, Target
from safety.config import tool_tilt
from safety.rotations import matrix_to_quat

from ._helpers import HOME_JOINTS

panda_py = pytest.importorskip("panda_py")

DT = 0.01
LIMIT = 0.1
DOWN = np.array([1.0, 0.0, 0.0, 0.0])  # the default nominal orientation: pointing down
WRIST = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # joint 6 pitches the hand


def fk(q: np.ndarray) -> Pose:
    t = np.asarray(panda_py.fk(np.asarray(q, dtype=float)), dtype=float)
    return Pose(t[:3, 3].copy(), matrix_to_quat(t[:3, :3]))


def tilt(q: np.ndarray) -> float:
    return float(tool_tilt(DOWN, fk(q).quaternion))


def run(shield: Shield, start: np.ndarray, targets: list[np.ndarray]) -> list[Decision]:
    """Joint targets through the shield; the arm reaches each command exactly."""
    measured = Measured(time_s=0.0, ee=fk(start), joints=start.copy(), gripper=1.0)
    shield.reset(measured)
    out = []
    for k, q in enumerate(targets, start=1):
        d = shield.filter(Target(time_s=k * DT, joints=q, gripper=1.0), measured, k * DT, DT)
        out.append(d)
        if d.target is not None and not d.hold:
            assert d.target.joints is not None
            measured = Measured(
                time_s=k * DT, ee=fk(d.target.joints), joints=d.target.joints.copy(), gripper=1.0
            )
    return out


def shield(max_tilt: float | None) -> Shield:
    cfg = SafetyConfig.from_mapping(
        {"orientation": {"max_tilt_rad": max_tilt}, "estop_after_interventions": 0}
    )
    return Shield(cfg, fk=fk)


def wrist_sweep(start: np.ndarray, to: float, rate: float = 0.3) -> list[np.ndarray]:
    n = int(abs(to) / (rate * DT))
    return [start + WRIST * np.sign(to) * rate * DT * k for k in range(1, n + 1)]


def sent(decisions: list[Decision]) -> list[np.ndarray]:
    return [
        d.target.joints
        for d in decisions
        if d.target is not None and not d.hold and d.target.joints is not None
    ]


def test_a_joint_command_never_tilts_the_tool_past_the_limit() -> None:
    assert tilt(HOME_JOINTS) < 1e-6
    decisions = run(shield(LIMIT), HOME_JOINTS, wrist_sweep(HOME_JOINTS, 0.5))
    tilts = [tilt(q) for q in sent(decisions)]
    assert max(tilts) <= LIMIT + 1e-9
    assert max(tilts) > LIMIT - 0.01  # it went up to the limit
    assert any("tilt" in d.fired and d.hold for d in decisions)


def test_without_a_limit_joint_commands_tilt_freely() -> None:
    decisions = run(shield(None), HOME_JOINTS, wrist_sweep(HOME_JOINTS, 0.5))
    assert max(tilt(q) for q in sent(decisions)) > 0.4
    assert not any("tilt" in d.fired for d in decisions)


def test_from_a_tilted_seed_joint_commands_only_straighten_the_tool() -> None:
    seed = HOME_JOINTS + WRIST * 0.3
    assert tilt(seed) > 0.25
    further = run(shield(LIMIT), seed, wrist_sweep(seed, 0.1))
    assert sent(further) == [] and all("tilt" in d.fired for d in further)
    back = run(shield(LIMIT), seed, wrist_sweep(seed, -0.3))
    tilts = [tilt(q) for q in sent(back)]
    assert len(tilts) == len(back)  # every straightening command allowed
    assert all(b <= a + 1e-9 for a, b in zip([tilt(seed), *tilts], tilts, strict=False))
    assert tilts[-1] < LIMIT

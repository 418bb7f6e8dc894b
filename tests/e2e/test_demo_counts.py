"""Issue 11: a normal demo run counted a ``gripper`` safety intervention on almost every tick (666
in 15 s): the demo policy's "open", interpolated, is 1.00008 at most, clamped to 1.0. Rounding
below ``safety.gripper.tolerance`` is no intervention; every intervention counted is recorded.

Then the demo policy became a pick-and-place one: it closes its gripper on the cube and opens it
over the pad, a step in the chunk, which the minimum-jerk interpolation overshot to 1.044 (a clamp
counted on each of those ticks). The gripper is now interpolated without overshoot
(``Trajectory(bounded_columns=...)``): its target never leaves [0, 1]. What remains counted on the
gripper is the shield's rate limit (``safety.gripper.max_rate_per_s``) slowing a commanded close
or open: a real modification, never a clamp into the range."""

from __future__ import annotations

import json
from pathlib import Path

from robot_agent.agent import Agent
from safety import GripperLimits
from tests.e2e._agent_helpers import agent_config, read_jsonl, server_on

DEMO = Path(__file__).resolve().parents[2] / "policies" / "demo"


async def test_the_demo_policy_steps_its_gripper_without_overshoot(tmp_path: Path) -> None:
    record = tmp_path / "run"
    async with server_on(DEMO) as server:
        config = agent_config(
            server.port,
            duration_s=6.5,  # closes on the cube at about 2 s, opens over the pad at about 5 s
            instruction="put the red cube on the pad",
            cameras={},  # the policy's own camera, created from its spec
            **{"record.dir": str(record), "robot.options.engine": "mujoco"},
        )
        summary = await Agent(config).serve()
    steps = read_jsonl(record / "steps.jsonl")
    raw = [s["raw"]["gripper"] for s in steps if s["raw"] and s["raw"]["gripper"] is not None]
    assert summary["chunks"] >= 3 and len(raw) > 200
    assert min(raw) < 0.5 < max(raw)  # the run has a step to overshoot
    assert min(raw) >= 0.0 and max(raw) <= 1.0  # and none is overshot (1.0443 before)
    sent = [s["safe"]["gripper"] for s in steps if s["safe"] and s["safe"]["gripper"] is not None]
    assert all(0.0 <= g <= 1.0 for g in sent)  # still clamped into the range
    # Every gripper intervention counted is recorded, and each is the rate limit moving the sent
    # value toward the commanded one (the previous tick's sent value is where it moves from).
    fired = [k for k, s in enumerate(steps) if "gripper" in s["fired"]]
    assert summary["safety_interventions"].get("gripper", 0) == len(fired)
    tolerance = GripperLimits().tolerance  # the test config leaves [safety] at its defaults
    for k in fired:
        before = next(s["safe"]["gripper"] for s in reversed(steps[:k]) if s["safe"])
        wanted, got = steps[k]["raw"]["gripper"], steps[k]["safe"]["gripper"]
        assert 0.0 <= wanted <= 1.0, (k, wanted)
        assert abs(wanted - got) > tolerance and min(before, wanted) <= got <= max(before, wanted), (
            k,
            before,
            got,
            wanted,
        )
    assert json.loads((record / "summary.json").read_text())["policy"]["name"] == "demo-cubes"

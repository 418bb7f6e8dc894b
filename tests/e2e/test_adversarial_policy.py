"""Issue 4, "done when" #2: a hostile policy drives the simulated arm through the real server and
agent, and nothing it sends gets past the shield.

The policy (:mod:`tests.e2e.adversarial_policy`) cycles through NaN, inf, 10 m jumps, targets
outside the workspace, a push through the table, high-frequency oscillation, a tool flip and an
out-of-range gripper, one attack per chunk. The run is recorded (``--record``) and the recording
is checked afterwards against the limits stored beside it, independently of the shield's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from robot_agent.agent import Agent
from safety import SafetyConfig, verify_trace
from tests.e2e import adversarial_policy
from tests.e2e._agent_helpers import agent_config, bundle, read_jsonl, server_on

TABLE_Z = 0.05  # a keep-out half-space: the table top, with the default workspace's floor below it
# m: how far the simulated arm's own tracking may stray past a command on a wall. The shield's
# commands are checked exactly (verify_trace); the arm follows each command joint by joint, each
# joint under its own velocity and acceleration limits, so between two commands its tip leaves the
# straight line. 0.15 mm is typical; once, in a full-suite run on a loaded 2-core machine, it went
# past 1 mm (magnitude not captured; the message below now prints it). Known sim-fidelity issue
# (joint-synchronised or Cartesian tracking would remove it), not a shield breach.
TRACKING_TOL = 0.005
SAFETY = {"keep_out": [{"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": TABLE_Z}]}


def adversarial_bundle(directory: Path, name: str) -> Path:
    return bundle(directory, "tests.e2e.adversarial_policy:Adversarial", name=name)


async def test_an_adversarial_policy_never_gets_past_the_shield(tmp_path: Path) -> None:
    record = tmp_path / "episode"
    policy = adversarial_bundle(tmp_path / "adversarial", "e2e")
    async with server_on(policy) as server:
        agent = Agent(
            agent_config(server.port, duration_s=10.0, safety=SAFETY, **{"record.dir": str(record)})
        )
        summary = await agent.serve()

    # The agent kept running for the whole 10 s, and every attack was served more than once.
    assert summary["ticks"] >= 900
    served = adversarial_policy.SERVED.pop("e2e")
    assert set(served) == set(adversarial_policy.ATTACKS) and min(served.values()) >= 2, served
    # The e-stop never latched: clamping and rate limiting are the shield's normal job and never
    # count toward it; the refusals that do count (tracking, IK, joint margin) come in short runs,
    # each ended by the next clampable target, far from 50 in a row.
    assert summary["estops"] == 0, summary["estop_reason"]
    # NaN and inf never even reach the agent: the inference server answers ERROR for a model
    # output that is not finite; the agent refuses the chunk and holds (the agent's own NaN
    # checks are covered with a rogue server in test_agent_rogue_server.py).
    assert summary["rejected_chunks"].get("server_error", 0) >= 2 * 2  # nan and inf, twice each

    # Interventions counted by kind, in the summary and in the Prometheus counter.
    interventions = summary["safety_interventions"]
    for kind in ("workspace", "keep_out", "tracking", "velocity", "acceleration", "jerk", "gripper"):
        assert interventions.get(kind, 0) > 0, (kind, interventions)
        sample = agent.metrics.registry.get_sample_value(
            "vla_agent_safety_interventions_total", {"kind": kind}
        )
        assert sample == interventions[kind]

    # After the fact, from the recording alone: no safe target ever broke a limit...
    limits = json.loads((record / "safety_limits.json").read_text())
    assert SafetyConfig.from_mapping(limits.get("config", limits)).keep_out  # the table was in force
    steps = read_jsonl(record / "steps.jsonl")
    assert verify_trace(steps, limits) == []
    executed = [s for s in steps if s["safe"] is not None]
    assert len(executed) > 300
    # ...nothing non-finite reached the arm although the policy sent NaN and inf...
    assert all(np.isfinite(s["safe"]["ee"]).all() for s in executed)
    # ...and the simulated arm itself never left the workspace nor went into the table. The
    # commands stay inside exactly (verify_trace); the arm tracks them with its own joint-space
    # controller, whose path between two commands sliding along a wall bulges out by a fraction
    # of a millimetre (0.15 mm seen): TRACKING_TOL allows that, and nothing like a breach.
    config = SafetyConfig.from_mapping(SAFETY)
    lo, hi = np.array(config.workspace.min), np.array(config.workspace.max)
    measured = np.array([s["measured"]["ee"][:3] for s in steps if s["measured"] is not None])
    excess = float(max((lo - measured).max(), (measured - hi).max(), 0.0))
    assert excess <= TRACKING_TOL, f"the arm went {excess * 1000:.2f} mm outside the workspace"
    assert measured[:, 2].min() >= TABLE_Z - TRACKING_TOL
    # The attacks did push it to the walls: the table and the side of the workspace were
    # really tested.
    # (The table through the tool: the default safety.tool keeps the Franka Hand's fingertips,
    # 14 mm below the TCP pointing down, above the table grown by the 5 mm margin.)
    assert measured[:, 2].min() < TABLE_Z + 0.005 + 0.014 + 0.01
    assert measured[:, 1].max() > hi[1] - 0.05 or measured[:, 0].max() > hi[0] - 0.05

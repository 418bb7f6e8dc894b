"""Issue 10, kind 8, end to end: no command goes into a keep-out zone, even after a hold.

The issue's example, on the sim arm through the real server and agent: an adversarial
``ee_delta`` policy slides the tool along the table plane (a keep-out half-space z >= 0.05),
then flips it 3 rad. During the flip the arm lags its commands and sags toward the table; the
shield holds (the tracking bound) and, on resume, starts again from the measured pose.

* With the default margin (``keep_out_margin_m``, 5 mm) every command keeps 5 mm above the
  table, so the sag never takes the arm into it.
* With no margin the arm does sag into the table; from that seed every command only moves up
  (its depth never grows) until it is out, and never goes back in.

The commands (the recording's ``safe`` steps) are checked at every tick, here and by
``verify_trace``, including after every hold and resume.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_agent.agent import Agent
from safety import SafetyConfig, verify_trace
from tests.e2e import adversarial_policy
from tests.e2e._agent_helpers import agent_config, bundle, read_jsonl, server_on

TABLE_Z = 0.05
TABLE = {"kind": "half_space", "name": "table", "normal": [0, 0, 1], "offset": TABLE_Z}
# The flip at the Panda's rated rotation speed (2.5 rad/s, vs the default 1): the sim arm, which
# follows each command joint by joint under its joint limits, lags the flip and sags toward the
# table by a fraction of a millimetre to a few, and the tracking bound holds it again and again.
FAST_FLIP = {"max_velocity": 2.5, "max_acceleration": 20.0, "max_jerk": 1000.0}


def slide_and_flip_bundle(directory: Path, name: str) -> Path:
    return bundle(
        directory, "tests.e2e.adversarial_policy:Adversarial", name=name, attacks=["slide_on_table", "spin"]
    )


async def run_scenario(
    tmp_path: Path, name: str, margin: float, **limits: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    record = tmp_path / "episode"
    # The TCP's own zone semantics (the tool's extent has its own tests: tests/safety/test_tool_points.py
    # and test_adversarial_mujoco.py), so the tool is the TCP alone here.
    safety = {"keep_out": [TABLE], "keep_out_margin_m": margin, "tool": {"points": []}, **limits}
    async with server_on(slide_and_flip_bundle(tmp_path / "policy", name)) as server:
        agent = Agent(agent_config(server.port, duration_s=8.0, safety=safety, **{"record.dir": str(record)}))
        summary = await agent.serve()
    served = adversarial_policy.SERVED.pop(name)
    assert served["slide_on_table"] >= 6 and served["spin"] >= 2, served  # both were served
    limits = json.loads((record / "safety_limits.json").read_text())
    assert SafetyConfig.from_mapping(limits.get("config", limits)).keep_out_margin_m == margin
    steps = read_jsonl(record / "steps.jsonl")
    # The shield's own after-the-fact check: depth never grows after a seed, 0 otherwise.
    assert verify_trace(steps, limits) == []
    assert summary["estops"] == 0, summary["estop_reason"]
    return summary, steps


def depths_after_each_seed(steps: list[dict[str, Any]], floor: float) -> list[list[float]]:
    """For each run of commands between holds: the seed's depth below ``floor``, then each
    command's (metres, 0 above it). The agent resets the shield at the measured pose when it
    leaves a hold, so the first command of a run is seeded at that step's measured pose."""
    runs: list[list[float]] = []
    fresh = True
    for s in steps:
        if s["holding"] or s["safe"] is None:
            fresh = True
            continue
        if fresh:
            runs.append([max(floor - s["measured"]["ee"][2], 0.0)])
            fresh = False
        runs[-1].append(max(floor - s["safe"]["ee"][2], 0.0))
    return runs


@pytest.mark.parametrize(
    ("margin", "rotation"),
    [
        pytest.param(0.005, {}, id="default_margin"),  # the margin absorbs the sag
        pytest.param(0.0, FAST_FLIP, id="no_margin_fast_flip"),  # the arm goes in, commands climb out
        pytest.param(0.005, FAST_FLIP, id="margin_under_the_sag"),  # too small: reported
    ],
)
async def test_commands_never_enter_the_table_even_after_a_hold(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, margin: float, rotation: dict[str, float]
) -> None:
    caplog.set_level(logging.WARNING, logger="safety.shield")
    # Whether a hold falls while a fast flip has the arm sagged below the floor depends on tick
    # timing (about 1 run in 6 here has none): such a run is checked in full below, and the
    # scenario is run again, up to 3 times, until one exercises the seed inside.
    for attempt in range(3 if rotation else 1):
        caplog.clear()
        if await _check_scenario(tmp_path / f"try{attempt}", caplog, margin, rotation):
            return
    raise AssertionError("no hold left the arm below the commands' floor (3 runs)")


async def _check_scenario(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, margin: float, rotation: dict[str, float]
) -> bool:
    """Run the scenario and check every tick; return whether a fast flip's hold seeded the
    shield below the floor and the commands climbed out (always True without a fast flip)."""
    limits = {"rotation": rotation} if rotation else {}
    summary, steps = await run_scenario(tmp_path, f"keep-out-{margin}-{bool(rotation)}", margin, **limits)
    measured_z = np.array([s["measured"]["ee"][2] for s in steps if s["measured"] is not None])
    commanded_z = np.array([s["safe"]["ee"][2] for s in steps if s["safe"] is not None])
    floor = TABLE_Z + margin  # where the commands' floor is: the table grown by the margin
    # The slide really pressed on the table, and the flip really made the shield hold.
    assert commanded_z.min() < floor + 0.001, commanded_z.min()
    assert summary["safety_interventions"].get("tracking", 0) > 0, summary["safety_interventions"]
    print(
        f"margin {margin * 1000:.1f} mm: the arm came {(floor - measured_z.min()) * 1000:.2f} mm below the floor"
    )

    runs = depths_after_each_seed(steps, floor)
    for run in runs:
        seed, commands = run[0], np.array(run[1:])
        # Never deeper than the seed, never deeper than the command before: only out...
        assert (np.diff(np.concatenate([[seed], commands])) <= 1e-12).all(), run
        # ...and once out, never back in.
        out = np.flatnonzero(commands == 0.0)
        if out.size:
            assert (commands[out[0] :] == 0.0).all(), run
    seeded_inside = [run for run in runs if run[0] > 0.0]
    # The margin's check: the arm in the table itself (a tracking error beyond the margin) is
    # reported, once an entry, naming the margin.
    reported = [r.getMessage() for r in caplog.records if "keep_out_margin_m" in r.getMessage()]
    assert bool(reported) == bool(measured_z.min() < TABLE_Z), (reported[:1], measured_z.min())
    if not rotation:
        # At the default rotation speed the margin absorbs the sag: the arm never touches.
        assert measured_z.min() >= TABLE_Z, f"the arm went {(TABLE_Z - measured_z.min()) * 1000:.2f} mm in"
        return True
    # A fast flip sags the arm below the floor; holds there seed the shield inside, and the
    # commands climb out.
    if not seeded_inside:
        return False
    assert any(run[-1] == 0.0 for run in seeded_inside)
    return True

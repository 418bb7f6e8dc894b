"""``python -m vla_demo``'s task and engine flags: shown in ``--help`` with their choices, passed to
the demo, and a combination the sim cannot run refused in one line (the demo itself not run)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from vla_demo import cli, demo


def test_demo_help_lists_tasks_engines_and_the_wrist_video() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vla_demo", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())  # argparse wraps lines
    assert "--task {pick_place,conveyor}" in out and "(default: pick_place)" in out
    assert "--engine {mujoco,kinematic}" in out and "(default: mujoco)" in out
    assert "<stem>_wrist.mp4" in out


def test_task_and_engine_reach_the_demo_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[demo.DemoConfig] = []

    def fake_run_demo(config: demo.DemoConfig, out: Any) -> Any:
        seen.append(config)
        raise KeyboardInterrupt  # stop before anything runs; main answers 130

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert cli.main(["demo", "--task", "conveyor", "--video", ""]) == 130
    assert (seen[0].task, seen[0].engine, seen[0].video) == ("conveyor", "mujoco", None)
    assert demo.sim_options(seen[0])["task"] == "conveyor"


def test_conveyor_on_the_kinematic_engine_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "run_demo", lambda config, out: pytest.fail("the demo ran"))
    assert cli.main(["demo", "--engine", "kinematic", "--task", "conveyor"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DemoConfig.task is 'conveyor'" in err[0] and "kinematic" in err[0], err

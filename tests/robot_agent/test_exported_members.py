"""The public surface is what ``__all__`` says (httpx's test_exported_members.py)."""

from __future__ import annotations

import subprocess
import sys

import robot_agent


def test_all_exports_exist_and_claim_the_package() -> None:
    for name in robot_agent.__all__:
        member = getattr(robot_agent, name)
        assert member.__module__.startswith("robot_agent."), name
    assert sorted(robot_agent.__all__) == robot_agent.__all__


def test_importing_the_agent_pulls_no_torch_and_no_robot_sdk() -> None:
    """The robot PC installs vla-deploy[agent] without torch; SDKs load only when chosen."""
    code = (
        "import sys, robot_agent, robot_agent.cli, robot_agent.drivers, robot_agent.cameras\n"
        "bad = [m for m in ('torch', 'panda_py', 'xarm', 'pyrealsense2', 'inference_server') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

"""The ``agent.toml`` example in ``robot_agent.config``'s docstring loads as it stands."""

from __future__ import annotations

import textwrap
from pathlib import Path

import robot_agent.config
from robot_agent.config import AgentConfig
from safety import SafetyConfig


def _docstring_example() -> str:
    doc = robot_agent.config.__doc__ or ""
    _, _, rest = doc.partition("Example ``agent.toml``::\n")
    return textwrap.dedent(rest)


def test_the_docstring_example_loads(tmp_path: Path) -> None:
    text = _docstring_example()
    assert "[safety.workspace]" in text  # the example is where the test looks for it
    path = tmp_path / "agent.toml"
    path.write_text(text)
    config = AgentConfig.load(path)
    assert config.server.address == "gpu-box:50051"
    assert (config.robot.kind, config.robot.ip) == ("franka", "172.16.0.2")
    assert config.control.rate_hz == 250
    safety = SafetyConfig.from_mapping(config.safety)  # every [safety] key is a real one
    assert list(safety.workspace.min) == [0.2, -0.5, 0.0]
    assert list(safety.workspace.max) == [0.7, 0.5, 0.6]
    assert safety.keep_out_margin_m == 0.005

"""The ``python -m vla_demo`` flags that fill ``DemoConfig`` and ``TrainConfig`` take the
dataclass's default and show it in ``--help``, read from the dataclass."""

from __future__ import annotations

import re

import pytest

from safety.config_loader import show_default
from vla_demo import cli
from vla_demo.demo import DemoConfig
from vla_demo.train import TrainConfig

# argparse dest -> dataclass field, per command (policy is shown relative to the checkout).
DEMO = {"episodes": "episodes", "seed": "seed", "task": "task", "engine": "engine", "video": "video",
        "inject_latency_ms": "inject_latency_ms",
        "inject_jitter_ms": "inject_jitter_ms", "blend": "blend", "server": "server_address"}  # fmt: skip
TRAIN = {"seed": "seed", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "threads": "threads",
         "max_steps": "max_steps"}  # fmt: skip


@pytest.mark.parametrize(
    ("command", "config", "flags"), [("demo", DemoConfig(), DEMO), ("train", TrainConfig(), TRAIN)]
)
def test_flags_default_to_the_dataclass_and_show_it(
    command: str, config: object, flags: dict[str, str]
) -> None:
    _, commands = cli._build()
    actions = {a.dest: a for a in commands[command]._actions}
    for dest, field in flags.items():
        expected = getattr(config, field)
        assert actions[dest].default == expected, dest
        match = re.search(r"\(default: ([^,)]*)", str(actions[dest].help))
        assert match and match.group(1) == show_default(expected), (dest, actions[dest].help)

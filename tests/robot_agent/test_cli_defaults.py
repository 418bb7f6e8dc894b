"""Every flag that sets a config key shows that key's dataclass default in ``--help``: the help
reads it from ``AgentConfig``, so the two cannot disagree."""

from __future__ import annotations

import argparse
import re

import pytest

from robot_agent import cli
from robot_agent.config import AgentConfig
from safety.config_loader import default_of, show_default

PARSERS = [cli.build_parser, cli.build_eval_parser, cli.build_check_parser]
# Flags that set no config key: what to run, how to log, the eval's own counts.
NOT_CONFIG = {
    "help", "config", "log_level", "debug", "token", "run_dir", "episodes", "seed", "episode_timeout",
    "json", "min_success", "task",
}  # fmt: skip


def _shown(action: argparse.Action) -> str:
    assert action.help is not None, action.dest
    match = re.search(r"\(default: ([^,)]*)", action.help)
    assert match, (action.dest, action.help)
    return match.group(1)


@pytest.mark.parametrize("build", PARSERS)
def test_every_flag_shows_its_dataclass_default(build) -> None:  # type: ignore[no-untyped-def]
    checked = 0
    for action in build()._actions:
        if action.dest in NOT_CONFIG or action.nargs == 0:  # a switch (--no-metrics) shows on/off
            continue
        assert action.dest in cli.FLAG_KEYS, f"--{action.dest}: which config key does it set?"
        assert _shown(action) == show_default(default_of(AgentConfig, cli.FLAG_KEYS[action.dest])), (
            action.dest
        )
        checked += 1
    assert checked >= 9  # check: connection flags only


def test_every_flag_key_is_a_config_key_and_a_flag() -> None:
    flags = {a.dest for build in PARSERS for a in build()._actions}
    for dest, key in cli.FLAG_KEYS.items():
        default_of(AgentConfig, key)  # KeyError for a key the config does not have
        assert dest in flags, dest


def test_a_default_changed_in_the_dataclass_shows_in_help(monkeypatch: pytest.MonkeyPatch) -> None:
    """The help is computed from the dataclass, not written beside it."""
    monkeypatch.setitem(cli.FLAG_KEYS, "rate", "control.max_consecutive_faults")  # default 5
    rate = next(a for a in cli.build_parser()._actions if a.dest == "rate")
    assert _shown(rate) == "5"

"""Every ``inference-server`` flag that sets a ``ServerConfig`` field shows that field's dataclass
default in ``--help``: the help reads it from the dataclass, so the two cannot disagree."""

from __future__ import annotations

import dataclasses
import re

from inference_server import cli
from inference_server.config import ServerConfig
from safety.config_loader import default_of, show_default

FIELDS = {f.name for f in dataclasses.fields(ServerConfig)}


def test_every_config_flag_shows_its_dataclass_default() -> None:
    checked = set()
    for action in cli.serve_parser()._actions:
        if action.dest not in FIELDS or action.dest == "policy":  # required: no default
            continue
        assert action.help is not None, action.dest
        match = re.search(r"\(default: ([^,)]*)", action.help)
        assert match, (action.dest, action.help)
        assert match.group(1) == show_default(default_of(ServerConfig, action.dest)), action.dest
        checked.add(action.dest)
    # every field but the policy has a flag (tls and limits included)
    assert checked == FIELDS - {"policy"}


def test_defaults_are_shown_as_the_config_takes_them() -> None:
    helps = {a.dest: a.help for a in cli.serve_parser()._actions}
    assert "(default: 0)" in str(helps["max_queue_delay_ms"])  # 0.0 shown as 0, as the agent shows floats
    assert "(default: on)" in str(helps["reflection"])
    assert "(default: none, the manifest's)" in str(helps["device"])

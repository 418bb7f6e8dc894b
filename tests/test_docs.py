"""The design document is in the repository and names what the code has."""

from __future__ import annotations

import re
from pathlib import Path

from robot_agent.reasons import HOLD_REASONS, PLAN_KEEPING_REASONS

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"


def test_the_readme_points_at_the_design_document_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/design.md" in readme
    assert "../shared" not in readme  # a clone has no such folder


def test_every_path_the_design_document_names_exists() -> None:
    text = DESIGN.read_text()
    paths = set(re.findall(r"`((?:[\w.]+/)+[\w.]*)`", text))  # `safety/shield.py`, `trajectory/`
    assert "safety/shield.py" in paths  # the pattern finds what it should
    missing = [
        p
        for p in sorted(paths)
        if not any((ROOT / base / p).exists() for base in ("", "robot_agent", "inference_server"))
    ]
    assert missing == []


def test_the_design_document_lists_every_hold_reason() -> None:
    text = DESIGN.read_text()
    assert [r for r in HOLD_REASONS if f"`{r}`" not in text] == []
    assert [r for r in PLAN_KEEPING_REASONS if f"`{r}`" not in text] == []
    assert "SAFETY_RULE_KINDS" in text

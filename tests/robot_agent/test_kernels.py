"""``python -m robot_agent.kernels`` (``make kernels``) builds what loads every kernel of a tick."""

from __future__ import annotations

import importlib.util

import pytest

from robot_agent import kernels


def test_it_compiles_and_says_how_long(capsys: pytest.CaptureFixture[str]) -> None:
    assert kernels.main() == 0
    out = capsys.readouterr().out
    if importlib.util.find_spec("numba") is not None:
        assert "Kernels ready in" in out
    else:
        assert "nothing to compile" in out


def test_the_zone_config_is_one_the_shield_takes() -> None:
    """The warm-up's keep-out zones are a valid ``[safety]``: a typo there would fail every install."""
    from safety import SafetyConfig

    config = SafetyConfig.from_mapping(kernels._ZONES)
    assert [z.kind for z in config.keep_out] == ["box", "sphere", "half_space"]

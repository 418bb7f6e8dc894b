"""``bench/control_loop.py``'s flags: the defaults --help states, and values the run cannot use
refused in one line before any server, hog or tick starts (they were tracebacks: 0 Hz and 0 s
divided by zero, NaN seconds failed in int(), a missing --json folder failed after the run)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.utils import bench_script


@pytest.fixture(scope="module")
def control_loop() -> Iterator[ModuleType]:
    with bench_script("control_loop") as module:
        yield module


def test_help_states_the_defaults_the_run_uses(
    control_loop: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        control_loop.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "while camera images stream to an inference server at 30 fps" in text  # the whole sentence
    for default in ("control rates, Hz, a cell each (default: 100 250 500)", "per cell (default: 10)",
                    "(default: 0 2)", "(default: all three)", "request every (default: 33.3)",
                    "answer after (default: 5)", "(default: kinematic)", "(default: wall)"):  # fmt: skip
        assert default in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tick-only", "--rates", "0"], "--rates: 0; each must be a finite rate > 0 Hz"),
        (["--rates", "100", "nan"], "--rates: 100 nan; each must be a finite rate > 0 Hz"),
        (["--tick-only", "--seconds", "0"], "--seconds: 0; must be finite and > 0"),
        (["--seconds", "nan"], "--seconds: nan; must be finite and > 0"),
        (["--hogs", "-1"], "--hogs: -1; each must be 0..64"),
        (["--hogs", "0", "100000"], "--hogs: 0 100000; each must be 0..64"),
        (["--tick-only", "--replan-ms", "0"], "--replan-ms: 0; must be finite and > 0"),
        (["--tick-only", "--rtt-ms", "-1"], "--rtt-ms: -1; must be finite and >= 0"),
        (["--switch-interval-ms", "0"], "--switch-interval-ms: 0; must be finite and > 0"),
        (["--tick-only", "--json", "/no/such/folder/x.json"], "--json: no folder /no/such/folder"),
        (["--tick-only", "--profile", "/no/such/folder/p.prof"], "--profile: no folder /no/such/folder"),
    ],
)
def test_bad_flags_are_refused_in_one_line_before_anything_runs(
    control_loop: ModuleType, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        control_loop.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err

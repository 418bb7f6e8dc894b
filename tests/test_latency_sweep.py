"""``bench/latency_sweep.py`` without serving anything: its settings, time bound, table, JSON rows,
flags and plot on made-up results (matplotlib's Agg backend; the PNG is read back)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from robot_agent.evaluation import EpisodeOutcome, EvalResults
from tests.utils import bench_script


@pytest.fixture(scope="module")
def sweep() -> Iterator[ModuleType]:
    with bench_script("latency_sweep") as module:
        yield module


def _episode(
    i: int, *, success: bool, t: float = 8.0, holds: int = 0, misses: int = 0, reason: str = ""
) -> EpisodeOutcome:
    return EpisodeOutcome(
        episode=i, seed=i, instruction="put the red cube on the pad", target="red",
        status="success" if success else "failure",
        reason=reason or ("the red cube is on the pad" if success else "timeout after 25 s"),
        reached="red" if success else None, time_to_success_s=t if success else None,
        holds={"waiting_for_server": 1, "deadline_miss": holds}, deadline_misses=misses,
        roundtrip_p50_s=0.1, safety_interventions=0,
    )  # fmt: skip


def _results(outcomes: list[EpisodeOutcome], latency: float = 0.0, blend: str = "crossfade") -> EvalResults:
    return EvalResults(tuple(outcomes), latency, 0.0, blend, "minimum_jerk")


def _fake_rows(sweep: ModuleType) -> list[dict[str, object]]:
    rows = []
    for s in sweep.sweep_settings(
        ["pick_place", "conveyor"], [0.0, 100.0, 200.0, 400.0], ["replace", "ensemble"]
    ):
        k = max(0, 5 - int(s.latency_ms // 100) - (s.task == "conveyor"))
        outcomes = [_episode(i, success=i < k, t=6.0 + i) for i in range(5)]
        rows.append(sweep.row(s, _results(outcomes, s.latency_ms, s.blend), 60.0))
    return rows


def test_settings_cover_every_combination_in_table_order(sweep: ModuleType) -> None:
    settings = sweep.sweep_settings(
        ["pick_place", "conveyor"], [0.0, 400.0], ["replace", "crossfade", "ensemble"]
    )
    assert len(settings) == 12 and len(set(settings)) == 12
    assert [s.task for s in settings[:6]] == ["pick_place"] * 6
    assert [(s.latency_ms, s.blend) for s in settings[:3]] == [
        (0.0, "replace"),
        (0.0, "crossfade"),
        (0.0, "ensemble"),
    ]


def test_the_time_bound_is_every_episode_to_its_limit(sweep: ModuleType) -> None:
    settings = sweep.sweep_settings(["pick_place", "conveyor"], [0.0, 100.0], ["crossfade"])
    limit = sweep.time_limit_s("pick_place")
    assert limit == 25.0 and sweep.time_limit_s("conveyor") == 25.0
    expected = 4 * (sweep.SETTING_OVERHEAD_S + 3 * (limit + sweep.EPISODE_OVERHEAD_S))
    assert sweep.wall_time_bound_s(settings, 3) == pytest.approx(expected)
    assert sweep.format_duration(95) == "1 min 35 s"
    assert sweep.format_duration(4000) == "1 h 06 min"
    assert sweep.format_duration(12.4) == "12 s"


def test_row_counts_successes_holds_misses_and_failure_kinds(sweep: ModuleType) -> None:
    outcomes = [
        _episode(0, success=True, t=7.0, holds=1),
        _episode(1, success=True, t=9.0, misses=2),
        _episode(2, success=True, t=20.0),
        _episode(3, success=False, reason="moved the green cube 4 cm"),
        _episode(4, success=False),
    ]
    r = sweep.row(sweep.Setting("conveyor", 200.0, "ensemble"), _results(outcomes, 200.0, "ensemble"), 93.27)
    assert (r["task"], r["latency_ms"], r["blend"]) == ("conveyor", 200.0, "ensemble")
    assert (r["episodes"], r["successes"], r["success_rate"]) == (5, 3, 0.6)
    assert r["time_to_success_median_s"] == 9.0
    assert r["holds"] == 1  # the first wait for the server is not a hold
    assert r["deadline_misses"] == 2
    assert r["failures"] == {"moved another cube": 1, "timeout": 1}
    assert r["seeds"] == [0, 1, 2, 3, 4] and r["wall_s"] == 93.3
    json.dumps(r)  # JSON as it is


def test_markdown_table_has_a_line_per_setting(sweep: ModuleType) -> None:
    rows = _fake_rows(sweep)
    lines = sweep.markdown(rows).strip().splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].startswith(
        "| task | added latency | blend | success | time to success (median) | holds |"
    )
    assert lines[2] == "| pick_place | 0 ms | replace | 5/5 (100%) | 8.00 s | 0 | 0 |"
    assert "| conveyor | 400 ms | ensemble | 0/5 (0%) | - | 0 | 0 |" in lines


@given(n=st.integers(1, 500), data=st.data())
def test_wilson_interval_holds_the_rate_inside_0_1(sweep: ModuleType, n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    lo, hi = sweep.wilson_interval(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0
    assert hi - lo <= 2 * 1.96 * math.sqrt(0.25 / n) + 1e-12  # never wider than the worst case at p = 1/2


def test_wilson_interval_known_values(sweep: ModuleType) -> None:
    # 8 of 10: 0.490 .. 0.943 (Wilson score interval, z = 1.96)
    lo, hi = sweep.wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.49, 0.943)
    assert sweep.wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = sweep.wilson_interval(30, 30)
    assert hi == 1.0 and 0.88 < lo < 0.89
    for k, n in [(0, 5), (3, 7), (5, 5)]:
        lo, hi = sweep.wilson_interval(k, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0 and not math.isnan(lo + hi)


def test_plot_writes_one_panel_per_task(sweep: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "out" / "latency_sweep.png"
    sweep.plot(_fake_rows(sweep), path)
    image = cv2.imread(str(path))
    assert image is not None
    h, w = image.shape[:2]
    assert (w, h) == (1040, 400)  # two panels of 5.2 x 4.0 in at 100 dpi
    assert float(np.std(image)) > 10  # lines and text, not a blank canvas
    one = tmp_path / "one.png"
    sweep.plot([r for r in _fake_rows(sweep) if r["task"] == "conveyor"], one)
    assert cv2.imread(str(one)).shape[1] == 520  # one task, one panel


def test_json_document_is_written_atomically_with_the_options(sweep: ModuleType, tmp_path: Path) -> None:
    args = sweep.build_parser().parse_args(["--tasks", "conveyor", "--episodes", "2"])
    rows = _fake_rows(sweep)[:2]
    path = tmp_path / "sub" / "latency_sweep.json"
    sweep.write_json(path, sweep.payload(rows, args, complete=False))
    doc = json.loads(path.read_text())
    assert doc["rows"] == rows and doc["complete"] is False
    assert (doc["tasks"], doc["episodes"], doc["latencies_ms"]) == (
        ["conveyor"],
        2,
        [0.0, 100.0, 200.0, 400.0],
    )
    assert "environment" in doc
    assert [p.name for p in path.parent.iterdir()] == ["latency_sweep.json"]  # no temporary left


def test_progress_line_names_the_setting_and_the_time_left(sweep: ModuleType) -> None:
    s = sweep.Setting("pick_place", 100.0, "ensemble")
    r = _fake_rows(sweep)[2]
    line = sweep.progress_line(3, 24, s, r, 700.0)
    assert line.startswith("[3/24] pick_place  100 ms  ensemble")
    assert "success 4/5" in line and "about 11 min 40 s left" in line
    assert "left" not in sweep.progress_line(24, 24, s, r, 0.0)


def test_help_shows_the_defaults_in_use(sweep: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    parser = sweep.build_parser()
    defaults = parser.parse_args([])
    assert defaults.tasks == ["pick_place", "conveyor"]
    assert defaults.blends == ["replace", "crossfade", "ensemble"]
    assert defaults.latencies_ms == [0.0, 100.0, 200.0, 400.0]
    assert defaults.episodes == sweep.DEFAULT_EPISODES
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: pick_place,conveyor)" in out and "(default: replace,crossfade,ensemble)" in out
    assert "(default: 0,100,200,400)" in out and f"(default: {sweep.DEFAULT_EPISODES})" in out
    bound = sweep.format_duration(sweep.wall_time_bound_s(sweep.sweep_settings(defaults.tasks, defaults.latencies_ms,
                                                                               defaults.blends), defaults.episodes))  # fmt: skip
    assert f"at most {bound}" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--blends", "replace,average"],
            "argument --blends: 'average' is not one of replace, crossfade, ensemble",
        ),
        (["--tasks", "stack"], "argument --tasks: 'stack' is not one of pick_place, conveyor"),
        (["--latencies-ms", "0,fast"], "argument --latencies-ms: 'fast' is not a latency in ms"),
        (["--latencies-ms", "0,-5"], "argument --latencies-ms: '-5': expected milliseconds >= 0"),
        (["--latencies-ms", "0,nan"], "argument --latencies-ms: 'nan': expected milliseconds >= 0"),
        (["--latencies-ms", "100,100"], "names a latency in ms twice"),
        (["--episodes", "0"], "argument --episodes: 0, expected an integer >= 1"),
        (["--seed", "-1"], "argument --seed: -1, expected an integer >= 0"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(
    sweep: ModuleType, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        sweep.build_parser().parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err

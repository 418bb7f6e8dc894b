"""``bench/batching.py`` without serving anything: its settings, time estimate, per-cell row, ratios,
verdict, table and flags on made-up session results."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.utils import bench_script


@pytest.fixture(scope="module")
def batching() -> Iterator[ModuleType]:
    with bench_script("batching") as module:
        yield module


def _session(rtt_ms: list[float], batch: list[int], *, cpu_s: float = 0.5, errors: int = 0) -> dict[str, Any]:
    n = len(rtt_ms)
    return {"rtt_ms": rtt_ms, "queue_ms": [0.5] * n, "inference_ms": [2.0] * n, "batch": batch,
            "cpu_s": cpu_s, "errors": errors, "first_error": "LATE timeout" if errors else ""}  # fmt: skip


def _row(
    batching: ModuleType, max_batch: int, delay: float, sessions: int, rtt: float, answers: int
) -> dict[str, Any]:
    """A cell of ``sessions`` sessions, each ``answers`` round trips of ``rtt`` ms (p99 = rtt), in 10 s."""
    setting = batching.Setting(max_batch, delay)
    per = [_session([rtt] * answers, [min(max_batch, sessions)] * answers) for _ in range(sessions)]
    return batching.cell_row(setting, per, window_s=10.0, server_cpu_s=5.0, machine_busy_s=18.0, load_avg=2.5)


def test_settings_run_max_batch_one_once_at_delay_zero(batching: ModuleType) -> None:
    Setting = batching.Setting
    assert batching.server_settings([1, 8], [0.0, 2.0]) == [Setting(1, 0.0), Setting(8, 0.0), Setting(8, 2.0)]
    assert batching.server_settings([1], [2.0]) == [Setting(1, 0.0)]


def test_time_estimate_counts_windows_and_overheads(batching: ModuleType) -> None:
    settings = batching.server_settings([1, 8], [0.0, 2.0])
    expected = batching.MODEL_CURVE_S + 3 * (batching.SERVER_START_S + 4 * (8.0 + batching.CELL_OVERHEAD_S))
    assert batching.time_estimate_s(settings, [1, 2, 4, 8], 8.0) == pytest.approx(expected)


def test_cell_row_pools_sessions_names_the_worst_and_counts_batches_per_call(batching: ModuleType) -> None:
    fast = _session([1.0] * 100, [4] * 100, cpu_s=1.0)
    slow = _session([2.0] * 98 + [50.0, 50.0], [1] * 100, cpu_s=0.5)
    row = batching.cell_row(
        batching.Setting(8, 2.0),
        [fast, slow],
        window_s=4.0,
        server_cpu_s=3.0,
        machine_busy_s=8.0,
        load_avg=1.5,
    )
    assert row["answers"] == 200 and row["throughput_hz"] == pytest.approx(50.0)
    assert row["round_trip_ms"]["p50"] == pytest.approx(1.5)  # between the two sessions' halves
    assert row["worst_session"]["index"] == 1 and row["worst_session"]["p99"] == pytest.approx(50.0)
    # 100 answers in calls of 4 (25 calls) and 100 in calls of 1 (100 calls): 200 / 125 per call.
    assert row["batch_per_call"] == pytest.approx(1.6)
    assert row["batch_per_request"] == pytest.approx(2.5)
    assert (row["client_cores"], row["server_cores"], row["machine_cores"]) == pytest.approx(
        (0.375, 0.75, 2.0)
    )


def test_cell_row_refuses_answers_that_are_not_ok(batching: ModuleType) -> None:
    with pytest.raises(RuntimeError, match="session 1: 3 answers not OK: LATE timeout"):
        batching.cell_row(
            batching.Setting(8, 0.0), [_session([1.0], [1]), _session([1.0], [1], errors=3)],
            window_s=1.0, server_cpu_s=0.0, machine_busy_s=0.0, load_avg=0.0,
        )  # fmt: skip


def test_ratios_and_verdicts_against_the_targets(batching: ModuleType) -> None:
    rows = [
        _row(batching, 1, 0.0, 1, 4.0, 1000),  # one session, p99 4 ms
        _row(batching, 1, 0.0, 8, 20.0, 100),  # 80 answers/s at 8 sessions
        _row(batching, 8, 0.0, 8, 7.0, 250),  # 200 answers/s (2.5x), p99 7 ms (1.75x): met
        _row(batching, 8, 2.0, 8, 9.0, 300),  # 240 answers/s (3x), p99 9 ms (2.25x): missed
        _row(batching, 8, 2.0, 1, 1.0, 10),  # not at 8 sessions: no ratio
    ]
    out = batching.ratios(rows)
    assert [(r["delay_ms"], r["met"]) for r in out] == [(0.0, True), (2.0, False)]
    assert out[0]["throughput_ratio"] == pytest.approx(2.5) and out[0]["p99_ratio"] == pytest.approx(1.75)
    assert out[1]["throughput_ratio"] == pytest.approx(3.0) and out[1]["p99_ratio"] == pytest.approx(2.25)
    assert batching.verdict(out[0]).endswith("MET")
    assert "throughput 3.00x max_batch 1" in batching.verdict(out[1])
    assert "p99 2.25x one session's" in batching.verdict(out[1]) and batching.verdict(out[1]).endswith(
        "MISSED"
    )


def test_no_ratio_without_both_baselines(batching: ModuleType) -> None:
    batched = _row(batching, 8, 0.0, 8, 7.0, 250)
    assert batching.ratios([]) == []
    assert batching.ratios([batched, _row(batching, 1, 0.0, 8, 20.0, 100)]) == []  # no single session
    assert batching.ratios([batched, _row(batching, 1, 0.0, 1, 4.0, 100)]) == []  # no 8 at max_batch 1
    report = batching.report({"rows": [batched], "ratios": []})
    assert report.splitlines()[-1].startswith("no verdict")


@given(throughput=st.floats(0.1, 10.0), p99=st.floats(0.1, 10.0))
def test_met_exactly_when_both_targets_are(batching: ModuleType, throughput: float, p99: float) -> None:
    rows = [
        _row(batching, 1, 0.0, 1, 10.0, 100),
        _row(batching, 1, 0.0, 8, 10.0, 100),
        {**_row(batching, 8, 0.0, 8, 10.0, 100), "throughput_hz": 80.0 * throughput},
    ]
    rows[2]["round_trip_ms"] = {**rows[2]["round_trip_ms"], "p99": 10.0 * p99}
    (r,) = batching.ratios(rows)
    assert r["met"] == (r["throughput_ratio"] >= 2.0 and r["p99_ratio"] < 2.0)
    assert r["throughput_ratio"] == pytest.approx(throughput) and r["p99_ratio"] == pytest.approx(p99)


def test_table_has_a_line_per_row_with_its_figures(batching: ModuleType) -> None:
    rows = [_row(batching, 1, 0.0, 1, 4.0, 1000), _row(batching, 8, 2.0, 8, 7.0, 250)]
    lines = batching.table(rows).splitlines()
    assert lines[0] == batching.TABLE_HEADER and len(lines) == 3
    assert lines[2].split()[:5] == ["8", "2", "8", "200.0", "7.00"]
    assert "[2/12] max_batch 8, delay 2 ms, 8 sessions: 200.0 answers/s" in batching.progress_line(
        2, 12, rows[1], 90
    )


def test_help_shows_the_defaults_and_bad_flags_are_refused(
    batching: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    text = batching.build_parser().format_help()
    assert "(default: 8.0)" in text and "(default: [1, 2, 4, 8])" in text and "(default: torch)" in text
    with pytest.raises(SystemExit):
        batching.main(["--sessions", "0"])
    assert "--sessions and --max-batch >= 1" in capsys.readouterr().err


def test_the_model_alone_is_timed_at_powers_of_two_up_to_the_largest_max_batch(batching: ModuleType) -> None:
    assert batching.curve_sizes([1, 8]) == [1, 2, 4, 8]
    assert batching.curve_sizes([1, 6]) == [1, 2, 4, 6]
    assert batching.curve_sizes([1]) == [1]


def test_the_ceiling_is_the_batch_over_its_cost_in_calls_of_one(batching: ModuleType) -> None:
    curve = {
        1: {"p50": 2.0, "min": 1.0},
        2: {"p50": 3.0, "min": 2.0},
        4: {"p50": 5.0, "min": 3.0},
        8: {"p50": 10.0, "min": 4.0},
    }
    ceiling = batching.model_ceiling(curve)
    assert ceiling[1] == {"cost_over_batch_1": 1.0, "throughput_gain": 1.0}
    assert ceiling[8]["cost_over_batch_1"] == pytest.approx(5.0)
    assert ceiling[8]["throughput_gain"] == pytest.approx(1.6)  # 8 answers in the time of 5
    assert ceiling[2]["throughput_gain"] == pytest.approx(4 / 3)
    assert batching.model_ceiling(curve, "min")[8]["throughput_gain"] == pytest.approx(2.0)
    line = batching.ceiling_line(curve, 1)
    assert "(1 CPU thread)" in line and "8: 10.00/4.00" in line
    assert "batch 8 costs 5.00x (min 4.00x) batch 1" in line and "at most 1.60x (min 2.00x)" in line
    report = batching.report(
        {"rows": [], "ratios": [], "model_alone_ms": curve, "model_threads": {"server": 2}}
    )
    assert report.splitlines()[-1].startswith("model alone (2 CPU threads)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seconds", "nan"], "--seconds must be finite and > 0"),  # was ValueError after timing the model
        (["--seconds", "inf"], "--seconds must be finite and > 0"),  # was a run without end
        (["--delays-ms", "nan"], "--delays-ms finite and >= 0"),
        (["--sessions", "1", "65"], "--sessions: at most 64"),  # was 100000 processes spawned at once
        (["--cpu-threads", "100000"], "--cpu-threads must be 0.."),  # was a hang creating the threads
        (["--json", "/no/such/folder/out.json"], "--json: no folder /no/such/folder"),  # was after the run
    ],
)
def test_bad_flags_are_refused_in_one_line_before_anything_runs(
    batching: ModuleType, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        batching.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err

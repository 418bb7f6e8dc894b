"""Issue 11: eval counts mean what they say. Holds and deadline misses per episode and in total,
the chunks the arm could use, and ``--min-success`` with exit 1 below it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from robot_agent import cli
from robot_agent.evaluation import EpisodeOutcome, EvalResults, format_results


def outcome(i: int, status: str, holds: dict[str, int], misses: int, chunks: int) -> EpisodeOutcome:
    return EpisodeOutcome(
        episode=i, seed=10 + i, instruction="touch the red cube", target="red", status=status,
        reason="reached the red cube" if status == "success" else "no result after 15 s",
        reached="red" if status == "success" else None, time_to_success_s=4.0 if status == "success" else None,
        holds=holds, deadline_misses=misses, roundtrip_p50_s=2.0, safety_interventions=0,
        steps=1500, chunks=chunks,
    )  # fmt: skip


LATE = outcome(0, "timeout", {"waiting_for_server": 1, "late": 1}, 7, 0)  # every chunk too late
GOOD = outcome(1, "success", {"waiting_for_server": 1}, 0, 40)


def results(*episodes: EpisodeOutcome) -> EvalResults:
    return EvalResults(tuple(episodes), 2000.0, 0.0, "crossfade", "minimum_jerk")


def test_the_table_shows_holds_misses_and_chunks_per_episode_and_in_total() -> None:
    table = format_results(results(LATE, GOOD))
    lines = table.splitlines()
    assert lines[1].split() == ["ep", "seed", "instruction", "result", "time", "holds", "misses", "chunks",
                                "rtt", "p50", "reason"]  # fmt: skip
    row = lines[2].split()
    assert row[:2] == ["0", "10"] and row[6:12] == ["timeout", "-", "1", "7", "0", "2000ms"], lines[2]
    assert lines[3].split()[6:12] == ["success", "4.00s", "0", "0", "40", "2000ms"], lines[3]
    assert "holds             1 (late 1)" in table
    assert "deadline misses   7" in table
    d = results(LATE, GOOD).to_dict()
    assert d["deadline_misses"] == 7 and d["holds"] == {"late": 1}
    assert [e["success"] for e in d["episodes"]] == [False, True]
    assert [(e["seed"], e["steps"], e["chunks"]) for e in d["episodes"]] == [(10, 1500, 0), (11, 1500, 40)]


@pytest.mark.parametrize(
    ("flags", "code"), [([], 0), (["--min-success", "0.5"], 0), (["--min-success", "0.6"], 1)]
)
def test_min_success(monkeypatch: pytest.MonkeyPatch, capsys: Any, flags: list[str], code: int) -> None:
    monkeypatch.setattr(cli, "run_eval", lambda config, episodes, seed, timeout: results(LATE, GOOD))
    assert cli.main(["eval", "--episodes", "2", *flags]) == code
    captured = capsys.readouterr()
    assert "success rate      1/2 (50%)" in captured.out
    if code:
        assert captured.err == "eval: success rate 50% is below --min-success 0.6\n"
    else:
        assert captured.err == ""


def test_eval_refuses_a_record_folder_that_is_not_empty(tmp_path: Path, capsys: Any) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "eval.json").write_text("{}")
    assert cli.main(["eval", "--record", str(tmp_path / "runs")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"ConfigError: record.dir {str(tmp_path / 'runs')!r} is not empty (eval.json): a recording is "
        "never overwritten; record into a new folder\n"
    )
    assert json.loads((tmp_path / "runs" / "eval.json").read_text()) == {}

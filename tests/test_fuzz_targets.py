"""The fuzz targets of ``fuzz/`` (issue 15): their oracles on the seed corpus, that the oracles
flag a crash, and a short atheris run of each (the long one is ``make fuzz``)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fuzz import fuzz_request, fuzz_response
from inference_server.validation import Observation

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
REQUEST_SEEDS = sorted((CORPUS / "request").iterdir())
RESPONSE_SEEDS = sorted((CORPUS / "response").iterdir())
#: What each seed is, by its name's prefix (fuzz/make_corpus.py; crash-* are fuzzer finds).
REQUEST_OUTCOME = {"ok": "valid", "invalid": "invalid", "crash": "invalid"}
RESPONSE_OUTCOME = {"ok": "accepted", "invalid": "not_ok"}
SHORT_RUNS = 1000


def test_the_corpus_has_seeds_of_each_kind() -> None:
    assert {p.name.partition("-")[0] for p in REQUEST_SEEDS} == set(REQUEST_OUTCOME)
    assert {p.name.partition("-")[0] for p in RESPONSE_SEEDS} == set(RESPONSE_OUTCOME)
    assert all(p.stat().st_size < 2048 for p in REQUEST_SEEDS + RESPONSE_SEEDS)


@pytest.mark.parametrize("seed", REQUEST_SEEDS, ids=lambda p: p.name)
def test_request_seed_has_its_outcome(seed: Path) -> None:
    assert fuzz_request.check(seed.read_bytes()) == REQUEST_OUTCOME[seed.name.partition("-")[0]]


@pytest.mark.parametrize("seed", RESPONSE_SEEDS, ids=lambda p: p.name)
def test_response_seed_has_its_outcome(seed: Path) -> None:
    assert fuzz_response.check(seed.read_bytes()) == RESPONSE_OUTCOME[seed.name.partition("-")[0]]


def test_request_oracle_flags_an_exception_that_is_not_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    def decode_request(*args: object) -> None:
        raise IndexError("a decoder bug")

    monkeypatch.setattr(fuzz_request, "decode_request", decode_request)
    with pytest.raises(IndexError, match="a decoder bug"):
        fuzz_request.check((CORPUS / "request" / "ok-raw").read_bytes())


def test_request_oracle_flags_an_observation_that_does_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    real = fuzz_request.decode_request

    def decode_request(*args: object) -> Observation:
        obs = real(*args)  # type: ignore[arg-type]
        state = obs.state.copy()
        state[0] = np.nan
        return Observation(obs.images, state, obs.instruction, obs.prev_actions, obs.inference_delay_steps)

    monkeypatch.setattr(fuzz_request, "decode_request", decode_request)
    with pytest.raises(AssertionError):
        fuzz_request.check((CORPUS / "request" / "ok-raw").read_bytes())


def test_response_oracle_flags_a_check_that_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PolicyClient`` turns an exception in its checks into a chunk; the oracle calls it a crash."""

    def check_actions(*args: object) -> None:
        raise IndexError("a checker bug")

    monkeypatch.setattr(fuzz_response._CLIENT, "_check_actions", check_actions)
    with pytest.raises(AssertionError, match="response could not be checked: IndexError"):
        fuzz_response.check((CORPUS / "response" / "ok-raw").read_bytes())


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed (pip install atheris; Linux x86_64 wheels only)",
)
@pytest.mark.parametrize("target", ["request", "response"])
def test_short_atheris_run_finds_no_crash(target: str, tmp_path: Path) -> None:
    work, artifacts = tmp_path / "work", tmp_path / "artifacts"
    work.mkdir()
    artifacts.mkdir()
    command = [
        sys.executable, "-m", f"fuzz.fuzz_{target}", str(work), str(CORPUS / target),
        f"-runs={SHORT_RUNS}", "-max_len=4096", "-rss_limit_mb=1024", "-timeout=10",
        f"-artifact_prefix={artifacts}/",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(artifacts.iterdir()) == []
    match = re.search(r"Done (\d+) runs", done.stderr)
    assert match and int(match.group(1)) >= SHORT_RUNS, done.stderr[-3000:]
    assert re.search(r"cov: \d+", done.stderr), done.stderr[-3000:]

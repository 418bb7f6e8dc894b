"""One traceback per distinct server error, then a rate-limited count (issue 10, kind 4)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from inference_server import ServerConfig
from inference_server.error_log import ErrorLog
from tests.utils import PredictStream, connect, make_request, run_server, write_python_bundle
from vla.v1 import policy_pb2 as pb

LOGGER = "tests.error_log"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fail(message: str) -> RuntimeError:
    """A RuntimeError raised (and caught) always at the same line, like a plugin's bug."""
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


def fail_elsewhere(message: str) -> RuntimeError:
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        return exc


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, bool]]:
    """(message, has a traceback) of each record of the test logger."""
    return [(r.getMessage(), r.exc_info is not None) for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> tuple[ErrorLog, FakeClock]:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FakeClock()
    return ErrorLog(logging.getLogger(LOGGER), window_s=10.0, clock=clock), clock


def test_the_first_error_has_its_traceback_and_repeats_are_counted_once_per_window(
    log: tuple[ErrorLog, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    errors, clock = log
    for i in range(300):  # 30 s at 10 per second, each with its own message text
        clock.now = 100.0 + i / 10
        errors.exception(fail(f"boom {i}"), "The model failed on a batch of %d", 1)
    got = records(caplog)
    assert got[0] == ("The model failed on a batch of 1", True)
    assert got[1:] == [
        (
            "The model failed on a batch of 1: RuntimeError: boom 100 (repeated 100 times in the last 10 s)",
            False,
        ),
        (
            "The model failed on a batch of 1: RuntimeError: boom 200 (repeated 100 times in the last 10 s)",
            False,
        ),
    ]
    errors.flush()  # at shutdown: the 99 repeats since the last line
    assert records(caplog)[-1] == (
        "The model failed on a batch of 1: RuntimeError: boom 299 (repeated 99 times in the last 10 s)",
        False,
    )
    errors.flush()  # nothing new: nothing written
    assert len(records(caplog)) == 4


def test_distinct_errors_each_get_a_traceback(
    log: tuple[ErrorLog, FakeClock], caplog: pytest.LogCaptureFixture
) -> None:
    errors, _ = log
    errors.exception(fail("a"), "The model failed")
    errors.exception(fail_elsewhere("a"), "The model failed")  # another line raised it
    errors.exception(ValueError("a"), "The model failed")  # another type
    errors.exception(fail("a"), "Decoding a request failed")  # another place logged it
    errors.exception(fail("b"), "The model failed")  # a repeat of the first: counted, not logged
    assert [tb for _, tb in records(caplog)] == [True, True, True, True]


def test_at_most_max_errors_are_remembered(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    errors = ErrorLog(logging.getLogger(LOGGER), max_errors=2, clock=FakeClock())
    for template in ("a %d", "b %d", "c %d", "a %d"):  # "a" was forgotten when "c" came
        errors.exception(fail("x"), template, 1)
    assert [m for m, tb in records(caplog) if tb] == ["a 1", "b 1", "c 1", "a 1"]


async def test_a_plugin_that_always_raises_logs_one_traceback_then_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10's example: a raising plugin hit by an agent in a loop used to log a traceback per
    request (3,175 lines in 3 s)."""
    caplog.set_level(logging.INFO)
    bundle = write_python_bundle(tmp_path / "b", "tests.inference_server.policies:RoguePolicy")
    config = ServerConfig(policy=bundle, metrics_port=None, warmup_iters=0)
    async with run_server(config) as server, connect(server) as stub:
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        answers = []
        for i in range(1, 41):
            stream.send(make_request(spec, i, instruction="raise"))
            answers.append(await stream.recv())
        await stream.close()
    assert {a.status for a in answers} == {pb.PredictResponse.ERROR}
    assert all("rogue policy failed on purpose" in a.message for a in answers)
    worker = [r for r in caplog.records if r.name == "inference_server.worker" and r.levelno >= logging.ERROR]
    assert [r.exc_info is not None for r in worker] == [
        True,
        False,
    ]  # one traceback, then the count at shutdown
    assert worker[0].getMessage() == "The model failed on a batch of 1"
    assert re.fullmatch(
        r"The model failed on a batch of 1: RuntimeError: rogue policy failed on purpose "
        r"\(repeated 39 times in the last \d+ s\)",
        worker[1].getMessage(),
    ), worker[1].getMessage()

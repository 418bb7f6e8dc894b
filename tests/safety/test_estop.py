"""The latch: first reason wins, only reset clears it, safe to trigger from another thread."""

from __future__ import annotations

import threading

from safety import EStop


def test_latch_keeps_the_first_reason_until_reset() -> None:
    e = EStop()
    assert not e.active and e.reason is None
    assert e.trigger("driver fault")
    assert not e.trigger("operator")
    assert e.active and e.reason == "driver fault"
    assert e.reset()
    assert not e.active and e.reason is None
    assert not e.reset()


def test_trigger_from_many_threads_latches_once() -> None:
    e = EStop()
    start = threading.Barrier(8)
    wins: list[bool] = []

    def hit(i: int) -> None:
        start.wait()
        wins.append(e.trigger(f"thread {i}"))

    threads = [threading.Thread(target=hit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert wins.count(True) == 1 and e.active

"""The request queue's rules, pure: latest wins per session, deadlines, fair turns across sessions.

Hypothesis drives random programs of puts, takes, removals and clock steps against the queue and
checks after every step what the module docstring promises.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference_server.request_queue import RequestQueue

_ids = itertools.count()


@dataclass(eq=False)
class Req:
    session: str
    deadline: float | None = None
    enqueued: float = 0.0
    id: int = field(default_factory=lambda: next(_ids))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


SESSIONS = [f"s{i}" for i in range(6)]

put = st.tuples(st.just("put"), st.sampled_from(SESSIONS), st.one_of(st.none(), st.floats(0.0, 3.0)))
take = st.tuples(st.just("take"), st.integers(1, 4))
step = st.tuples(st.just("step"), st.floats(0.0, 1.0))
remove = st.tuples(st.just("remove"), st.integers(0, 50))
program = st.lists(st.one_of(put, put, take, take, step, remove), max_size=80)


@settings(max_examples=300, deadline=None)
@given(program)
def test_every_request_leaves_exactly_once_latest_wins_and_turns_are_fair(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    clock = Clock()
    queue: RequestQueue[Req] = RequestQueue(clock=clock)
    put_in: list[Req] = []
    left: list[Req] = []  # every way out, in order: replaced, late, computed, removed, cleared
    waiting: dict[str, Req] = {}  # the model: the latest request of each session not yet out
    # While a session waits: how many turns each other session got (fairness).
    turns_while_waiting: dict[str, dict[str, int]] = {}
    for op in ops:
        if op[0] == "put":
            _, session, budget = op
            req = Req(session, None if budget is None else clock.now + budget, clock.now)
            put_in.append(req)
            replaced = queue.put(req)
            assert replaced is waiting.get(session)  # latest wins: the older one comes back
            if replaced is not None:
                left.append(replaced)
            waiting[session] = req
            turns_while_waiting.setdefault(session, {})
        elif op[0] == "take":
            taken = queue.take(op[1])
            assert len(taken.batch) <= op[1]
            for req in taken.late:
                assert req.deadline is not None and clock.now >= req.deadline
            for req in taken.batch:
                assert req.deadline is None or clock.now < req.deadline
            for req in [*taken.late, *taken.batch]:
                assert waiting.pop(req.session) is req  # only the latest of a session ever leaves
                turns_while_waiting.pop(req.session)
                left.append(req)
            for req in taken.batch:
                for session, turns in turns_while_waiting.items():
                    turns[req.session] = turns.get(req.session, 0) + 1
                    assert turns[req.session] <= 1, f"{req.session} served twice while {session} waited"
            if not taken.batch:
                assert not waiting  # nothing computable left behind: all were late or none waited
        elif op[0] == "step":
            clock.now += op[1]
        else:
            if put_in:
                req = put_in[op[1] % len(put_in)]
                removed = queue.remove(req)
                assert removed == (waiting.get(req.session) is req)
                if removed:
                    del waiting[req.session]
                    turns_while_waiting.pop(req.session)
                    left.append(req)
        assert len(queue) == len(waiting)
    assert queue.oldest_enqueued() == min((r.enqueued for r in waiting.values()), default=None)
    left.extend(queue.clear())
    assert len(queue) == 0
    # Nothing lost, nothing twice: every request put in came out exactly once.
    assert sorted(r.id for r in left) == sorted(r.id for r in put_in)


def test_a_session_sending_100_times_more_gets_no_more_turns() -> None:
    queue: RequestQueue[Req] = RequestQueue(clock=Clock())
    served: list[str] = []
    for _ in range(20):
        for _ in range(100):
            queue.put(Req("flood"))
        queue.put(Req("robot"))
        served += [r.session for r in queue.take(1).batch]
        served += [r.session for r in queue.take(1).batch]
    assert served.count("robot") == served.count("flood") == 20


def test_a_session_below_its_fair_share_is_served_in_the_next_batch() -> None:
    """Issue 15's case: 50 streams flooding, one robot at its own pace. In arrival order the robot's
    request waited behind every flooding session's (up to 7 batches of 8); now it goes in the next."""
    queue: RequestQueue[Req] = RequestQueue(clock=Clock())
    for round_ in range(100):
        for i in range(50):
            queue.put(Req(f"abuser-{i}"))
        # Once every abuser has had a turn: one robot request every 10 batches, under its fair
        # share (8 turns a batch over 51 sessions: one every 6.4 batches).
        robot = round_ >= 7 and round_ % 10 == 7
        if robot:
            queue.put(Req("robot"))
        batch = [r.session for r in queue.take(8).batch]
        assert ("robot" in batch) == robot


def test_a_superseded_request_keeps_its_sessions_place() -> None:
    queue: RequestQueue[Req] = RequestQueue(clock=Clock())
    first = Req("a")
    queue.put(first)
    queue.put(Req("b"))
    newer = Req("a")
    assert queue.put(newer) is first
    assert queue.take(1).batch == [newer]  # "a" was first in line and stays first


def test_late_requests_are_handed_back_and_never_computed() -> None:
    clock = Clock()
    queue: RequestQueue[Req] = RequestQueue(clock=clock)
    late, on_time, no_limit = Req("a", deadline=0.5), Req("b", deadline=2.0), Req("c")
    for r in (late, on_time, no_limit):
        queue.put(r)
    clock.now = 0.5  # the deadline itself counts as passed
    taken = queue.take(8)
    assert taken.late == [late]
    assert taken.batch == [on_time, no_limit]


def test_memory_of_past_turns_is_bounded() -> None:
    queue: RequestQueue[Req] = RequestQueue(clock=Clock(), remember=10)
    for i in range(100):
        queue.put(Req(f"made-up-{i}"))
        queue.take(1)
    assert queue.remembered == 10
    with pytest.raises(ValueError, match="remember is 0, expected >= 1"):
        RequestQueue(remember=0)

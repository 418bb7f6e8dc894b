"""Where a control tick's delay comes from, for ``bench/control_loop.py``: per-tick timestamps,
per-thread CPU and run-queue wait, an event-loop lag probe, CPU hogs, and a prototype of control
in a dedicated thread to measure against the agent's event-loop control in the same run.

Per tick (seconds, ``time.monotonic()``), for tick k due at ``deadline = t0 + k * period``:

- ``behind``: how late the wait for the deadline began (the previous tick, or the event loop
  handing it over, ran into this one), ``max(0, entered - deadline)``;
- ``wake``: how late the waiting thread woke after its deadline: the OS scheduler (CPU taken by
  other processes) and the GIL, ``woke - max(deadline, entered)``;
- ``handoff``: from that wake-up to the tick starting on the thread that runs it (event-loop
  control: the event loop was busy with the stream, the scheduler, encoding's GIL share, gRPC;
  dedicated thread: zero, the tick runs on the thread that woke);
- ``command``: from the deadline to the driver command of the tick leaving for the arm (ticks
  that hold send none) -- the delay the arm sees.

Per thread (``/proc/self/task/TID/schedstat``: CPU time, time runnable but waiting for a CPU):
the event loop (``MainThread``), the driver thread, the dedicated control thread, the
``asyncio.to_thread`` workers (request encoding), the camera capture threads, and the rest
(gRPC's C threads, the lag probe). Run
queue wait is CPU taken by other threads and processes; a tick late with little run-queue wait
on its thread was waiting for the event loop or the GIL.

The dedicated-thread control (:class:`DedicatedControlLoop`) is a prototype for measurement, not
the agent: the tick (the agent's own ``ControlLoop.tick``, unchanged) runs in a thread of its own
at absolute deadlines with the driver called directly there; the plan stays the agent's ``Plan``
(event-loop only by design), shared through :class:`LockedPlan`, one lock per plan call (never
across a tick; the time the control thread waited on it is reported); the event bus is called
from the control thread (the metrics are thread-safe, the run statistics are touched by the
control thread's ``Tick`` events and the event loop's chunk events on separate fields). A real
implementation hands the trajectory over by reference swap instead (see the bench's docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from _children import die_with_parent

from robot_agent.agent import Agent
from robot_agent.config import AgentConfig
from robot_agent.control import ControlLoop
from robot_agent.drivers.base import RobotState
from safety.types import Target

__all__ = [
    "BenchAgent",
    "DedicatedControlLoop",
    "LagProbe",
    "LockedPlan",
    "Sentinel",
    "TickTimes",
    "TimedControlLoop",
    "cpu_hogs",
    "thread_times",
]

#: The control modes the bench compares: the agent's own, and the dedicated-thread prototype
#: (``-rt``: SCHED_FIFO for the control thread, or nice -10 where FIFO is not permitted).
MODES = ("event_loop", "dedicated", "dedicated-rt")
FIFO_PRIORITY = 80  # libfranka's examples run their control thread at SCHED_FIFO 80


@dataclass
class TickTimes:
    """Per-tick timestamps (see the module docstring), appended by whichever thread runs the tick."""

    deadline: list[float] = field(default_factory=list)
    entered: list[float] = field(default_factory=list)
    woke: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    command: list[tuple[float, float]] = field(default_factory=list)  # (deadline, to the command sent)
    lock_wait: list[tuple[float, float]] = field(
        default_factory=list
    )  # (when, control thread waiting on the plan's lock)
    pending: tuple[float, float, float] | None = None  # this tick's (deadline, entered, woke)
    sched: str = ""  # what the control thread's scheduling was set to (dedicated-rt)


class TimedControlLoop(ControlLoop):
    """The agent's ``ControlLoop`` (event-loop control, unchanged) with its ticks timed into
    ``times``."""

    def __init__(self, *, times: TickTimes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.times = times

    def _read_at(self, deadline: float) -> tuple[float, RobotState | BaseException]:
        entered = time.monotonic()
        now, state = super()._read_at(deadline)
        self.times.pending = (deadline, entered, now)
        return now, state

    async def tick(
        self,
        now: float,
        dt: float,
        state: RobotState | BaseException | None = None,
        *,
        deadline: float | None = None,
    ) -> None:
        pending, self.times.pending = self.times.pending, None
        if pending is not None:
            times = self.times
            times.deadline.append(pending[0])
            times.entered.append(pending[1])
            times.woke.append(pending[2])
            times.started.append(time.monotonic())
        await super().tick(now, dt, state, deadline=deadline)

    def _send(self, target: Target) -> None:
        if self.times.deadline:
            deadline = self.times.deadline[-1]
            self.times.command.append((deadline, time.monotonic() - deadline))
        super()._send(target)


class _LoopEvent:
    """An ``asyncio.Event`` the control thread may set (handed over with ``call_soon_threadsafe``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
        self._loop = loop
        self._event = event

    def set(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> bool:
        return await self._event.wait()


async def _inline(fn: Callable[..., Any], *args: Any) -> Any:
    """The driver called on the thread that runs the tick (the control thread)."""
    return fn(*args)


def _run_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (the tick with the driver inline) to its end."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("the tick awaited something other than the inline driver")


class DedicatedControlLoop(TimedControlLoop):
    """Prototype: the tick in a thread of its own (see the module docstring). ``realtime``: ask
    for SCHED_FIFO (:data:`FIFO_PRIORITY`) for that thread, else nice -10, else nothing (what
    applied is in ``times.sched``)."""

    def __init__(self, *, realtime: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._call = _inline
        self._realtime = realtime

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self.estop_latched = _LoopEvent(loop, self.estop_latched)  # type: ignore[assignment]
        ticks = self.tick_event
        stop = threading.Event()
        done: asyncio.Future[None] = loop.create_future()

        def main() -> None:
            try:
                self._thread_main(loop, ticks, stop)
            except BaseException as exc:  # handed to the event loop, raised there
                loop.call_soon_threadsafe(done.set_exception, exc)
            else:
                loop.call_soon_threadsafe(done.set_result, None)

        thread = threading.Thread(target=main, name="control", daemon=True)
        thread.start()
        waiter: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait([waiter, done], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stop.set()
            await done

    def _thread_main(
        self, loop: asyncio.AbstractEventLoop, ticks: asyncio.Event, stop: threading.Event
    ) -> None:
        if isinstance(self._plan, LockedPlan):
            self._plan.control_thread = threading.get_ident()
        if self._realtime:
            self.times.sched = _raise_priority()
        period, times = self.period, self.times
        t0 = time.monotonic()
        k = 0
        while not stop.is_set():
            deadline = t0 + k * period
            entered = time.monotonic()
            if deadline > entered:
                time.sleep(deadline - entered)
            now = time.monotonic()
            state: RobotState | BaseException
            try:
                state = self._robot.read_state()
            except Exception as exc:
                state = exc
            times.pending = (deadline, entered, now)
            dt = period if self._last_now is None else now - self._last_now
            _run_sync(self.tick(now, dt, state, deadline=t0 + (k + 1) * period))
            loop.call_soon_threadsafe(ticks.set)
            k += 1
            after = time.monotonic()
            overran = after > t0 + k * period
            if overran:
                k = int((after - t0) / period) + 1
            if not self.rate_warned:
                self._check_pace(after, overran)
        if not self._latched:
            _run_sync(self._command_hold("stopping", time.monotonic()))


def _raise_priority() -> str:
    """SCHED_FIFO for the calling thread, else nice -10; what applied, in words."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(FIFO_PRIORITY))
        return f"SCHED_FIFO {FIFO_PRIORITY}"
    except (PermissionError, OSError) as fifo:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
            return f"nice -10 (SCHED_FIFO refused: {fifo})"
        except OSError as nice:
            return f"none (SCHED_FIFO refused: {fifo}; nice refused: {nice})"


class LockedPlan:
    """The agent's ``Plan`` with each method call under one lock (the prototype's hand-over):
    attributes and properties are read unlocked; the control thread's waits go to ``times``."""

    def __init__(self, plan: Any, times: TickTimes) -> None:
        self._plan = plan
        self._lock = threading.Lock()
        self._times = times
        self.control_thread: int | None = None

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._plan, name)
        if not callable(value):
            return value
        lock, times = self._lock, self._times

        def locked(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self.control_thread:
                a = time.monotonic()
                with lock:
                    times.lock_wait.append((a, time.monotonic() - a))
                    return value(*args, **kwargs)
            with lock:
                return value(*args, **kwargs)

        return locked


class BenchAgent(Agent):
    """The agent with its control loop timed: ``mode`` one of :data:`MODES`."""

    def __init__(self, config: AgentConfig, mode: str) -> None:
        super().__init__(config)
        self.mode = mode
        self.times = TickTimes()
        if mode != "event_loop":
            self._plan = LockedPlan(self._plan, self.times)  # type: ignore[assignment]

    def _wire(self) -> None:
        super()._wire()
        old = self._control
        assert old is not None and self.robot is not None and self._shield is not None
        control = self.config.control
        kwargs: dict[str, Any] = {
            "times": self.times, "robot": self.robot, "call_driver": self._call_driver,
            "shield": self._shield, "plan": self._plan, "events": self._events, "estop": self._estop,
            "rate_hz": control.rate_hz, "max_state_age_s": control.max_state_age_s,
            "max_consecutive_faults": control.max_consecutive_faults,
        }  # fmt: skip
        new: TimedControlLoop
        if self.mode == "event_loop":
            new = TimedControlLoop(**kwargs)
        else:
            new = DedicatedControlLoop(realtime=self.mode == "dedicated-rt", **kwargs)
        new.tick_event = old.tick_event  # the scheduler task waits on this one
        self._control = new


class LagProbe:
    """The event loop's lag: every ``interval_s`` a thread posts a callback to the loop
    (``call_soon_threadsafe``) and the callback records how long it waited (seconds)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float = 0.01) -> None:
        self.lags: list[tuple[float, float]] = []  # (posted, lag)
        self._loop = loop
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-probe", daemon=True)

    def _record(self, posted: float) -> None:
        self.lags.append((posted, time.monotonic() - posted))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._loop.call_soon_threadsafe(self._record, time.monotonic())
            except RuntimeError:  # the loop closed
                return

    def __enter__(self) -> LagProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def thread_times() -> dict[int, tuple[str, int, int]]:
    """Native thread id -> (kind, CPU ns, run-queue wait ns) for this process's threads, from
    ``/proc/self/task/TID/schedstat`` (Linux; {} elsewhere). Kinds: ``loop`` (the main thread),
    ``driver``, ``control``, ``encode`` (``asyncio.to_thread`` workers), ``camera`` (capture
    threads), ``other`` (gRPC's C threads, the lag probe)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[int, tuple[str, int, int]] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid_text in tids:
        tid = int(tid_text)
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                cpu, wait, _ = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            continue
        name = names.get(tid, "")
        if name == "MainThread":
            kind = "loop"
        elif name.startswith("driver"):
            kind = "driver"
        elif name == "control":
            kind = "control"
        elif name.startswith(("asyncio", "uvloop")):
            kind = "encode"
        elif name.startswith("camera"):
            kind = "camera"
        else:
            kind = "other"
        out[tid] = (kind, cpu, wait)
    return out


def thread_usage(
    before: dict[int, tuple[str, int, int]], after: dict[int, tuple[str, int, int]], seconds: float
) -> dict[str, dict[str, float]]:
    """Per kind: CPU and run-queue wait in ms per second of wall time between two
    :func:`thread_times` snapshots (threads present in ``after``; new ones count from zero)."""
    usage: dict[str, dict[str, float]] = {}
    for tid, (kind, cpu, wait) in after.items():
        _, cpu0, wait0 = before.get(tid, (kind, 0, 0))
        entry = usage.setdefault(kind, {"cpu_ms_per_s": 0.0, "runq_ms_per_s": 0.0})
        entry["cpu_ms_per_s"] += (cpu - cpu0) / 1e6 / seconds
        entry["runq_ms_per_s"] += (wait - wait0) / 1e6 / seconds
    return usage


SENTINEL = """
import json, os, signal, sys, threading, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the bench's to handle: it ends this process
rate, realtime = float(sys.argv[1]), sys.argv[2] == "1"
if realtime:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(sys.argv[3])))
    except OSError:
        pass
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
period, late = 1.0 / rate, []
t0 = time.monotonic()
k = 0
print("ready", flush=True)
while not done.is_set():
    k += 1
    deadline = t0 + k * period
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    now = time.monotonic()
    late.append((deadline - t0, now - deadline))
    if now > deadline + period:
        k = int((now - t0) / period)
late = sorted(x for t, x in late if t > 1.0) or [0.0]
pick = lambda q: 1e3 * late[min(len(late) - 1, int(q * len(late)))]
print(json.dumps({"count": len(late), "p50": pick(0.5), "p99": pick(0.99), "max": 1e3 * late[-1]}))
"""


class Sentinel:
    """A separate process (its own interpreter, so its own GIL) that sleeps to absolute deadlines at
    ``rate_hz`` beside the agent and times how late it wakes: what a control process would see from
    the OS alone. ``realtime``: at SCHED_FIFO :data:`FIFO_PRIORITY` (as the dedicated-rt thread).
    ``result`` (ms: count, p50, p99, max; ticks after its first second) once the block ends."""

    def __init__(self, rate_hz: float, realtime: bool) -> None:
        self._args = [
            sys.executable,
            "-c",
            SENTINEL,
            f"{rate_hz:g}",
            "1" if realtime else "0",
            str(FIFO_PRIORITY),
        ]
        self.result: dict[str, float] = {}

    def __enter__(self) -> Sentinel:
        self._proc = subprocess.Popen(
            self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=die_with_parent()
        )
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != b"ready":
            raise SystemExit("the sentinel process did not start")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Its figures when the block ended normally; when it raised (Ctrl-C reached the sentinel
        too), the process is ended and the block's exception goes on, not one about its output."""
        import json

        if exc_type is not None:
            self._proc.kill()
            self._proc.communicate(timeout=10)
            return
        out, _ = self._proc.communicate(b"", timeout=10)
        self.result = json.loads(out.decode().strip().splitlines()[-1])


HOG = "import sys\nprint('ready', flush=True)\nwhile True:\n    sum(range(1000))\n"


@contextlib.contextmanager
def cpu_hogs(n: int) -> Iterator[list[int]]:
    """``n`` processes spinning pure Python (nice 0), running when the block starts (each said
    so), killed when it ends; yields their pids."""
    preexec = die_with_parent()  # a bench killed outright leaves no hog spinning
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOG], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=preexec
        )
        for _ in range(n)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise SystemExit(f"CPU hog {proc.pid} did not start")
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()

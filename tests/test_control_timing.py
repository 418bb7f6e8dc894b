"""``bench/_control_timing.py``: the dedicated-thread control prototype the control-loop bench
measures against the agent's event-loop control (its ticks on its own thread, the e-stop handed
back to the event loop), the plan's lock, and the per-thread CPU arithmetic."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from robot_agent import startup
from robot_agent.config import AgentConfig
from robot_agent.drivers import create_robot
from robot_agent.events import EventBus
from robot_agent.metrics import AgentMetrics
from robot_agent.plan import Plan
from robot_agent.policy_client import Backoff
from robot_agent.scheduler import Scheduler
from robot_agent.summary import RunStats
from safety import EStop

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def timing() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        import _control_timing

        yield _control_timing
    finally:
        sys.modules.pop("_control_timing", None)
        sys.path.remove(str(BENCH))


class _ThreadRecordingRobot:
    """The kinematic sim arm, noting which thread each driver call came from."""

    def __init__(self, sim: Any) -> None:
        self._sim = sim
        self.home_joints = sim.home_joints
        self.inverse_kinematics = sim.inverse_kinematics
        self.forward_kinematics = sim.forward_kinematics
        self.calls: list[tuple[str, int]] = []

    def read_state(self) -> Any:
        self.calls.append(("read_state", threading.get_ident()))
        return self._sim.read_state()

    def hold(self) -> None:
        self.calls.append(("hold", threading.get_ident()))

    def emergency_stop(self) -> None:
        self.calls.append(("emergency_stop", threading.get_ident()))

    def command_ee(self, pose: Any) -> None:
        self.calls.append(("command_ee", threading.get_ident()))

    def command_joints(self, joints: Any) -> None:
        self.calls.append(("command_joints", threading.get_ident()))

    def command_gripper(self, opening: float) -> None:
        self.calls.append(("command_gripper", threading.get_ident()))


def _dedicated(
    timing: ModuleType, rate_hz: float = 200.0
) -> tuple[Any, _ThreadRecordingRobot, EStop, RunStats]:
    config = AgentConfig.load(None, {"control.rate_hz": rate_hz, "metrics_port": None})
    robot = _ThreadRecordingRobot(create_robot(config.robot))
    state = robot._sim.read_state()
    estop = EStop()
    shield = startup.build_shield(startup.load_safety(config.safety), robot, state, kind="sim", estop=estop)  # type: ignore[arg-type]
    stats = RunStats(rate_hz=rate_hz, instruction="", server_address="test")
    events = EventBus([AgentMetrics(CollectorRegistry()), stats])
    times = timing.TickTimes()
    plan = timing.LockedPlan(
        Plan(events=events, scheduler=Scheduler(config.scheduler, request_timeout_s=1.0), backoff=Backoff(0.1, 2.0, 1.0, 0.0)),
        times,
    )  # fmt: skip

    async def driver_thread_only(fn: Any, *args: Any) -> Any:  # must never be used by the prototype
        raise AssertionError("the dedicated thread calls the driver itself")

    loop = timing.DedicatedControlLoop(
        times=times, robot=robot, call_driver=driver_thread_only, shield=shield, plan=plan, events=events,
        estop=estop, rate_hz=rate_hz,
    )  # fmt: skip
    return loop, robot, estop, stats


async def _ticks(loop: Any, n: int) -> None:
    for _ in range(n):
        await asyncio.wait_for(loop.tick_event.wait(), 5.0)
        loop.tick_event.clear()


def test_dedicated_thread_ticks_off_the_event_loop_and_holds_when_stopped(timing: ModuleType) -> None:
    loop, robot, estop, stats = _dedicated(timing)

    async def main() -> int:
        stopping = asyncio.Event()
        task = asyncio.create_task(loop.run(stopping))
        await _ticks(loop, 20)  # the tick event reaches the event loop (the scheduler task waits on it)
        stopping.set()
        await asyncio.wait_for(task, 5.0)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    threads = {ident for _, ident in robot.calls}
    assert len(threads) == 1 and loop_thread not in threads  # every driver call on the control thread
    assert [name for name, _ in robot.calls].count("read_state") >= 20
    assert robot.calls[-1][0] == "hold"  # the last hold on the way out
    assert loop.holding and loop.hold_reason == "waiting_for_server"  # no plan configured: the watchdog holds
    assert stats.ticks >= 20 and not estop.active
    times = loop.times
    assert len(times.deadline) == len(times.started) >= 20
    assert all(s >= d for d, s in zip(times.deadline, times.started, strict=True))


def test_dedicated_thread_latches_the_estop_and_tells_the_event_loop(timing: ModuleType) -> None:
    loop, robot, estop, _ = _dedicated(timing)

    async def main() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(loop.run(stopping))
        await _ticks(loop, 3)
        estop.trigger("operator")
        await asyncio.wait_for(loop.estop_latched.wait(), 5.0)  # set from the control thread
        stopping.set()
        await asyncio.wait_for(task, 5.0)

    asyncio.run(main())
    names = [name for name, _ in robot.calls]
    assert names.count("emergency_stop") == 1 and names[-1] != "hold"  # latched: no hold after the stop
    assert loop.estopped and loop.hold_reason == "estop"


def test_locked_plan_serialises_calls_and_times_the_control_threads_wait(timing: ModuleType) -> None:
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def accept(self) -> str:  # the event loop inside a plan call
            entered.set()
            release.wait(5.0)
            return "accepted"

        def target_for(self) -> str:
            return "target"

    times = timing.TickTimes()
    plan = timing.LockedPlan(Slow(), times)
    got: list[str] = []
    holder = threading.Thread(target=lambda: got.append(plan.accept()))
    holder.start()
    assert entered.wait(5.0)

    def control() -> None:
        plan.control_thread = threading.get_ident()
        got.append(plan.target_for())

    controller = threading.Thread(target=control)
    held_from = time.monotonic()
    controller.start()
    controller.join(0.05)
    assert controller.is_alive() and got == []  # waiting on the lock the other call holds
    release.set()
    controller.join(5.0)
    holder.join(5.0)
    assert got == ["accepted", "target"]
    ((when, wait),) = times.lock_wait
    assert when >= held_from and wait >= 0.04  # the control thread's wait is recorded, no other call's


def test_run_sync_runs_a_tick_that_never_suspends_and_refuses_one_that_does(timing: ModuleType) -> None:
    async def inline() -> int:
        return await timing._inline(lambda x: x + 1, 41)

    assert timing._run_sync(inline()) == 42

    async def suspends() -> None:
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited something other than the inline driver"):
        timing._run_sync(suspends())


def test_thread_usage_is_per_kind_per_second_and_new_threads_count_from_zero(timing: ModuleType) -> None:
    before = {1: ("loop", 1_000_000, 0), 2: ("driver", 0, 500_000)}
    after = {
        1: ("loop", 201_000_000, 10_000_000),
        2: ("driver", 50_000_000, 2_500_000),
        3: ("encode", 30_000_000, 4_000_000),  # started between the snapshots
        4: ("encode", 10_000_000, 0),
    }
    usage = timing.thread_usage(before, after, 2.0)
    assert usage["loop"] == {"cpu_ms_per_s": 100.0, "runq_ms_per_s": 5.0}
    assert usage["driver"] == {"cpu_ms_per_s": 25.0, "runq_ms_per_s": 1.0}
    assert usage["encode"] == {"cpu_ms_per_s": 20.0, "runq_ms_per_s": 2.0}


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux /proc")
def test_thread_times_names_this_thread_the_loop(timing: ModuleType) -> None:
    snapshot = timing.thread_times()
    kind, cpu, _ = snapshot[threading.main_thread().native_id]  # type: ignore[index]
    assert kind == "loop" and cpu > 0


def test_cpu_hogs_run_during_the_block_and_are_gone_after(timing: ModuleType) -> None:
    with timing.cpu_hogs(2) as pids:
        assert len(pids) == 2
        for pid in pids:
            os.kill(pid, 0)  # alive (raises if not)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_sentinel_block_ended_by_ctrl_c_raises_that_not_its_empty_output(timing: ModuleType) -> None:
    # Ctrl-C reached the sentinel's process too: it died printing nothing, and __exit__ parsing its
    # output raised IndexError over the KeyboardInterrupt. It now ignores SIGINT; the bench ends it.
    sentinel = timing.Sentinel(100, realtime=False)
    with pytest.raises(KeyboardInterrupt), sentinel:
        os.kill(sentinel._proc.pid, signal.SIGINT)
        raise KeyboardInterrupt
    assert sentinel._proc.returncode == -signal.SIGKILL and sentinel.result == {}
    sentinel = timing.Sentinel(100, realtime=False)
    with pytest.raises(KeyboardInterrupt), sentinel:
        os.kill(sentinel._proc.pid, signal.SIGKILL)  # or it died some other way
        sentinel._proc.wait(10)
        raise KeyboardInterrupt
    assert sentinel._proc.returncode is not None and sentinel.result == {}

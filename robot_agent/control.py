"""The fixed-rate control loop, its watchdog and its fault boundary.

Tick k starts at ``t0 + k * period`` on ``time.monotonic()`` (never ``sleep(period)``, which
drifts by the work done each tick); a tick whose work runs past the next deadline is an overrun:
counted, and the missed ticks are skipped rather than run back to back; a loop that overruns on
more than a quarter of its ticks cannot keep its rate, and warns once with the rate it achieved
(:data:`RATE_OVERRUN_SHARE`). Each tick reads the robot
state, takes the trajectory's target for now, passes it through the safety shield and sends what
comes out to the driver. Driver calls run in the one driver thread, never on the event loop.

Watchdog: no valid target for now means hold (the measured pose, zero velocity), labelled with its
own cause (:data:`HOLD_REASONS`); a new cause while holding relabels the hold and is counted; only
transitions are logged. Whether the plan survives a hold depends on the cause: a hold caused by
the tick itself (a stall, a transient refusal by the shield, a stale robot state, a failing
recorder or metric) keeps the plan, and the next normal tick resumes on it (the shield restarts
its rate limits from the measured state); a cause that invalidates the plan (stream down, a bad
chunk, a fault in the trajectory, the action-space conversion or the shield, a refusal by the
shield on two ticks in a row, the e-stop) drops it, and the next chunk is anchored at the held
pose.

Fault boundary: an exception from any stage of a tick (trajectory, action-space conversion,
shield, recorder, metrics) becomes a hold named after the stage (``trajectory_error``, ...),
never an unhandled exception; ``control.max_consecutive_faults`` faulty ticks in a row latch the
e-stop, as does any driver exception (read, command, hold) or a robot fault.

Stale robot state: a state whose ``time_s`` is older than ``control.max_state_age_s`` (default
three control periods), or that has not advanced for that long, holds with
``stale_observation``; the first fresh state resumes on the plan.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_agent.action_space import ActionSpace, measured_from_state
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.metrics import AgentMetrics
from robot_agent.reasons import BAD_PLAN_REASONS, FAULT_REASONS, PLAN_KEEPING_REASONS
from robot_agent.recorder import NullRecorder
from robot_agent.summary import RunStats
from robot_agent.trajectory import Trajectory
from safety.types import Measured, Target

__all__ = ["ControlLoop", "LinkState"]

logger = logging.getLogger(__name__)

# The pace check: a loop that overran on more than a quarter of the ticks of a window (at least
# 2 s and 50 ticks) cannot keep its rate, and says so once. A busy moment costs a few percent:
# bench/control_loop.py measured 6 % of ticks overrunning at 250 Hz on a shared 2-core VM.
RATE_WINDOW_S = 2.0
RATE_WINDOW_MIN_TICKS = 50
RATE_OVERRUN_SHARE = 0.25


@dataclass
class LinkState:
    """What the stream task tells the control loop (event-loop only)."""

    up: bool = False
    ever_up: bool = False
    in_flight_since: float | None = None
    problem: str | None = None  # why the last chunk was refused, until a good one arrives
    chunks: int = 0  # good chunks received
    plan_faults: int = 0  # plans dropped because sampling or converting them raised (the agent backs off)


def _checked(measured: Measured) -> Measured:
    """``measured``, or ValueError when its arrays have the wrong shapes (a driver bug). Values
    are the shield's business: a non-finite state latches the e-stop there."""
    if (
        np.shape(measured.ee.position) != (3,)
        or np.shape(measured.ee.quaternion) != (4,)
        or np.ndim(measured.joints) != 1
    ):
        raise ValueError(
            f"robot state has ee position shape {np.shape(measured.ee.position)}, quaternion shape "
            f"{np.shape(measured.ee.quaternion)}, joints shape {np.shape(measured.joints)}"
        )
    return measured


class ControlLoop:
    """Runs the ticks; ``configure`` gives it the action space and trajectory once a spec is known.

    ``max_state_age_s``: a robot state older than this (or not advancing for this long) holds
    with ``stale_observation``; None: three control periods. ``max_consecutive_faults``: this many
    ticks in a row that raised inside the fault boundary latch the e-stop (>= 1).
    ``rate_window_s``: the window of the pace check (warn once when over a quarter of its ticks overran).
    """

    def __init__(
        self,
        *,
        robot: Robot,
        call_driver: Callable[..., Awaitable[Any]],
        shield: Any,
        link: LinkState,
        metrics: AgentMetrics,
        stats: RunStats,
        recorder: NullRecorder,
        rate_hz: float,
        max_state_age_s: float | None = None,
        max_consecutive_faults: int = 5,
        rate_window_s: float = RATE_WINDOW_S,
    ) -> None:
        self._robot = robot
        self._call = call_driver
        self._shield = shield
        self._link = link
        self._metrics = metrics
        self._stats = stats
        self._recorder = recorder
        self.period = 1.0 / rate_hz
        self.action_space: ActionSpace | None = None
        self.trajectory: Trajectory | None = None
        self.latest_state: RobotState | None = None
        self.holding = False
        self.hold_reason: str | None = None
        self.estopped = False
        self.tick_event = asyncio.Event()
        self.estop_latched = asyncio.Event()  # set once the e-stop latched and the arm was told to stop
        self._last_gripper: float | None = None
        self._max_state_age = max_state_age_s if max_state_age_s is not None else 3.0 * self.period
        self._max_faults = max(1, max_consecutive_faults)
        self._faults = 0  # consecutive faulty ticks
        self._fault_stage = ""  # the stage of the last one
        self._stage = ""  # the stage of the tick running now, named in a fault
        self._last_now: float | None = None  # the previous tick's time, for the period
        self._state_time: float | None = None  # newest robot state time seen
        self._state_advanced_at = 0.0  # when (tick time) the robot state last advanced
        self._quiet_failures: set[str] = set()  # bookkeeping already reported as failing
        self._dropped_for: tuple[str, int] | None = None  # why a bad plan was dropped, at which chunk
        self._rate_window = (rate_window_s, 0.0, 0, 0)  # (length s, start, ticks, overruns): the pace check
        self.rate_warned = False  # the loop was found unable to keep rate_hz (warned once)
        self._tick_measured: Measured | None = None  # this tick's reading, for the record of a fault

    def configure(self, action_space: ActionSpace, trajectory: Trajectory) -> None:
        self.action_space = action_space
        self.trajectory = trajectory

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick until ``stopping`` is set, then command a last hold (unless e-stopped)."""
        period = self.period
        t0 = time.monotonic()
        k = 0
        last: float | None = None
        while not stopping.is_set():
            deadline = t0 + k * period
            # The driver thread waits for the deadline (time.sleep is precise to tens of
            # microseconds; the event loop's timers only to a millisecond) and reads the state
            # right then; the event loop stays free meanwhile.
            try:
                now, state = await self._call(self._read_at, deadline)
            except Exception as exc:  # the driver thread itself is gone: a read failure
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))  # keep the pace
                now, state = time.monotonic(), exc
            dt = period if last is None else now - last
            last = now
            await self.tick(now, dt, state)
            self._stats.ticks += 1
            self.tick_event.set()
            k += 1
            after = time.monotonic()
            self._stats.tick_work.append(after - now)
            overran = after > t0 + k * period
            if overran:
                # The work ran into the next tick: count it, and skip what was missed.
                self._stats.overruns += 1
                self._quietly("metrics", self._metrics.control_overrun.inc)
                k = int((after - t0) / period) + 1
            if not self.rate_warned:
                self._check_pace(after, overran)
        if not self.estopped:
            await self._command_hold("stopping")

    def _check_pace(self, now: float, overran: bool) -> None:
        """Warn once when more than :data:`RATE_OVERRUN_SHARE` of the ticks of a window (at least
        ``rate_window_s`` and :data:`RATE_WINDOW_MIN_TICKS` ticks) overran: the loop cannot keep
        its rate, and says the rate it achieved."""
        length, start, ticks, overruns = self._rate_window
        if ticks == 0:
            start = now
        ticks, overruns = ticks + 1, overruns + overran
        elapsed = now - start
        if elapsed < length or ticks < RATE_WINDOW_MIN_TICKS:
            self._rate_window = (length, start, ticks, overruns)
            return
        self._rate_window = (length, 0.0, 0, 0)
        if overruns > RATE_OVERRUN_SHARE * ticks:
            self.rate_warned = True
            logger.warning(
                "The control loop cannot keep %g Hz: %d of %d ticks in %.1f s overran; it ran at %.0f Hz. "
                "Lower control.rate_hz (--rate) or give the agent a quieter CPU",
                1.0 / self.period,
                overruns,
                ticks,
                elapsed,
                (ticks - 1) / elapsed,
            )

    def _read_at(self, deadline: float) -> tuple[float, RobotState | BaseException]:
        """In the driver thread: sleep until ``deadline``, then read the state (or the error)."""
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = time.monotonic()
        try:
            return now, self._robot.read_state()
        except Exception as exc:
            return now, exc

    async def tick(self, now: float, dt: float, state: RobotState | BaseException | None = None) -> None:
        """One control step on ``state`` at ``now`` (seconds, ``time.monotonic()``), ``dt`` after the
        previous one (read here when not given; public so tests can drive it).

        Never raises (cancellation aside): this is the tick's fault boundary. A driver error
        latches the e-stop; an exception from any other stage becomes a hold named after the
        stage (:data:`FAULT_REASONS`), and ``max_consecutive_faults`` of them in a row the e-stop.
        """
        if state is None:
            try:
                state = await self._call(self._robot.read_state)
            except Exception as exc:
                state = exc
        self._stage = "state"
        self._tick_measured = None
        try:
            await self._step(now, dt, state)
        except Exception as exc:
            stage = self._stage
            try:
                await self._on_fault(now, exc)
            except Exception as inner:  # handling the fault failed too: stop the arm
                await self._estop(f"control tick fault handling failed: {inner!r} (after {exc!r})")
            if stage != "recorder":  # the faulty tick is recorded too: a recording keeps every tick
                try:
                    self._record(now, self._tick_measured, None, None, ())
                except Exception as record_exc:
                    self._drop_recorder(record_exc)
        else:
            self._faults = 0
        if self._link.chunks > 0:
            self._stats.ticks_after_first_chunk += 1
            if self.holding:
                self._stats.hold_ticks_after_first_chunk[self.hold_reason or "estop"] += 1

    async def _step(self, now: float, dt: float, state: RobotState | BaseException) -> None:
        """The tick's stages; ``self._stage`` names the one running, for :meth:`_on_fault`."""
        if isinstance(state, BaseException):
            await self._estop(f"driver read_state failed: {state!r}")
            self._record(now, None, None, None, ())
            return
        measured = _checked(measured_from_state(state))  # stage "state": unusable = driver failure
        self._tick_measured = measured
        self.latest_state = state
        if state.fault and not self.estopped:
            self._shield.estop.trigger(f"robot fault: {state.fault}")
        self._stage = "metrics"
        last, self._last_now = self._last_now, now
        if last is not None:
            self._stats.periods.append(now - last)
            self._metrics.control_period_seconds.observe(now - last)
        stale = self._stale_state(now, state)
        if stale is not None and not self._shield.estop.active:
            await self._enter_hold("stale_observation", stale)
            self._record(now, measured, None, None, ())
            return
        raw: Target | None = None
        plan_end = None
        if self.trajectory is not None and self.action_space is not None and not self._shield.estop.active:
            self._stage = "trajectory"
            value = self.trajectory.sample(now)
            plan_end = self.trajectory.end_time
            if value is not None:
                self._stage = "action_space"
                raw = self.action_space.target_of(value, now)
        self._stage = "shield"
        if raw is not None and self.holding:
            # Leaving hold: the shield's rate limits start again from where the arm is.
            self._shield.reset(measured)
        decision = self._shield.filter(raw, measured, now, dt)
        self._stage = "metrics"
        for kind in decision.fired:
            if kind == "no_target":  # the watchdog's own hold, counted as a hold, not a safety rule
                continue
            if self.estopped:  # the latched e-stop's held ticks: one event, counted when it latched
                break
            self._stats.safety_interventions[kind] += 1
            self._metrics.safety_interventions.labels(kind).inc()
        if decision.estop or self._shield.estop.active:
            await self._estop(getattr(self._shield.estop, "reason", None) or "shield e-stop")
            self._record(now, measured, raw, None, decision.fired)
            return
        if raw is None or decision.hold or decision.target is None:
            if raw is None:
                reason = self._watchdog_reason()
                dropped = self._dropped_for
                if reason in ("chunk_exhausted", "late") and dropped and dropped[1] == self._link.chunks:
                    # The plan was dropped as bad and no chunk came since: the cause is still that.
                    reason = dropped[0]
            elif "stall" in decision.fired:
                reason = "stall"  # the tick came late; the plan is still good
            elif "non_finite" in decision.fired:
                reason = "non_finite"
            elif "invalid" in decision.fired:
                reason = "invalid_chunk"  # a malformed target can only come from a malformed chunk
            else:
                reason = "safety"
                if self.holding and self.hold_reason == "safety":
                    # Refused twice in a row: not transient. Drop the plan; the next chunk starts
                    # from the held pose (and the shield's count of refusals goes on to the e-stop).
                    await self._enter_hold(reason, drop_plan=True)
                    self._record(now, measured, raw, None, decision.fired)
                    return
            await self._enter_hold(reason)
            self._record(now, measured, raw, None, decision.fired)
            return
        if self.holding:
            self._leave_hold(now)
        try:
            await self._call(self._send, decision.target)
        except Exception as exc:
            await self._estop(f"driver command failed: {exc!r}")
        self._record(now, measured, raw, decision.target, decision.fired, plan_end=plan_end, holding=False)

    def _record(
        self,
        now: float,
        measured: Measured | None,
        raw: Target | None,
        safe: Target | None,
        fired: Sequence[str],
        *,
        plan_end: float | None = None,
        holding: bool | None = None,
    ) -> None:
        self._stage = "recorder"
        held = self.holding if holding is None else holding
        self._recorder.step(
            time_s=now,
            measured=measured,
            raw=raw,
            safe=safe,
            fired=fired,
            holding=held,
            reason=self.hold_reason if held else None,
            plan_end=plan_end,
        )

    def _stale_state(self, now: float, state: RobotState) -> str | None:
        """Why ``state`` is too old to act on (older than the bound, or not advancing), or None."""
        t = state.time_s
        if not math.isfinite(t):
            return f"robot state time is {t!r}"
        if self._state_time is None or t > self._state_time:
            self._state_time = t
            self._state_advanced_at = now
        bound = self._max_state_age
        if now - t > bound:
            return f"robot state is {1000 * (now - t):.0f} ms old (bound {1000 * bound:.0f} ms)"
        if now - self._state_advanced_at > bound:
            return (
                f"robot state has not advanced for {1000 * (now - self._state_advanced_at):.0f} ms "
                f"(bound {1000 * bound:.0f} ms)"
            )
        return None

    async def _on_fault(self, now: float, exc: Exception) -> None:
        """An exception escaped stage ``self._stage`` of this tick: hold (or e-stop), never raise."""
        stage = self._stage
        self._faults += 1
        self._stats.tick_faults[stage] += 1
        if stage == "state":
            await self._estop(f"driver returned an unusable robot state: {exc!r}")
            return
        if stage == "recorder":
            self._drop_recorder(exc)
        if stage in ("trajectory", "action_space"):
            # The plan itself is bad (a chunk Ruckig cannot follow): asking again at once would
            # fetch its twin every tick and the streak would latch the e-stop; the agent backs off.
            self._link.plan_faults += 1
        if self._faults == 1 or stage != self._fault_stage:
            # The traceback once per streak: this is a bug (or a rogue input) worth a report.
            logger.error("Control tick failed in the %s: %r", stage, exc, exc_info=exc)
        self._fault_stage = stage
        if self.estopped:
            return
        if self._faults >= self._max_faults:
            await self._estop(
                f"{self._faults} consecutive faulty control ticks (last in the {stage}: {_short(repr(exc))})"
            )
            return
        await self._enter_hold(FAULT_REASONS[stage], _short(repr(exc)))

    def _drop_recorder(self, exc: Exception) -> None:
        """The recorder raised: stop recording (one warning naming the files), carry on."""
        recorder, self._recorder = self._recorder, NullRecorder()
        self._quietly("recorder", recorder.stop, f"it raised {exc!r}")

    def _quietly(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Bookkeeping (metrics, recorder) on the way to a hold or an e-stop: if it fails, report
        it once and carry on, so that it never keeps the arm from stopping."""
        try:
            fn(*args)
        except Exception as exc:
            if what not in self._quiet_failures:
                self._quiet_failures.add(what)
                logger.error("Control loop: updating the %s failed (%r); carrying on", what, exc)

    def _send(self, target: Target) -> None:
        """In the driver thread: the arm target, then the gripper when it changed."""
        if target.ee is not None:
            self._robot.command_ee(target.ee)
        elif target.joints is not None:
            self._robot.command_joints(target.joints)
        if target.gripper is not None and (
            self._last_gripper is None or abs(target.gripper - self._last_gripper) > 1e-3
        ):
            self._robot.command_gripper(target.gripper)
            self._last_gripper = target.gripper

    def _watchdog_reason(self) -> str:
        link = self._link
        if not link.up:
            return "stream_down" if link.ever_up else "waiting_for_server"
        if link.problem is not None:
            return link.problem
        if link.chunks == 0:
            return "waiting_for_server"
        if link.in_flight_since is not None:
            return "late"
        return "chunk_exhausted"

    async def _enter_hold(
        self, reason: str, detail: str | None = None, *, drop_plan: bool | None = None
    ) -> None:
        """Hold for ``reason`` (one of :data:`HOLD_REASONS`): command the hold first, then count.
        Already holding for another cause: relabel (counted, logged, the hold not re-commanded).
        The plan is dropped when ``drop_plan``, by default unless ``reason`` is one of
        :data:`PLAN_KEEPING_REASONS`."""
        if drop_plan is None:
            drop_plan = reason not in PLAN_KEEPING_REASONS
        if drop_plan and self.trajectory is not None:
            self.trajectory.clear()
            if reason in BAD_PLAN_REASONS:
                self._dropped_for = (reason, self._link.chunks)
        if self.estopped or (self.holding and reason == self.hold_reason):
            return
        previous = self.hold_reason if self.holding else None
        if previous is None:
            await self._command_hold(reason)  # before any bookkeeping, which must not delay it
            if self.estopped:  # the hold itself failed
                return
        self.holding = True
        self.hold_reason = reason
        stats = self._stats
        stats.holds[reason] += 1
        if previous is not None:
            stats.hold_relabels += 1
        elif self._link.chunks > 0:
            stats.holds_after_first_chunk += 1
        if reason == "late":
            stats.deadline_misses += 1
            self._quietly("metrics", self._metrics.deadline_miss.inc)
        self._quietly("metrics", self._metrics.hold.labels(reason).inc)
        self._quietly("metrics", self._metrics.holding.set, 1)
        extra = {"previous": previous} if previous is not None else {}
        self._quietly("recorder", lambda: self._recorder.event("hold", reason, **extra))
        level = logging.INFO if reason == "waiting_for_server" else logging.WARNING
        because = f" ({detail})" if detail else ""
        if previous is None:
            logger.log(level, "Holding position: %s%s", reason, because)
        else:
            logger.log(level, "Still holding, now for %s%s (was %s)", reason, because, previous)

    def _leave_hold(self, now: float) -> None:
        logger.info("Resuming after hold (%s)", self.hold_reason)
        self._dropped_for = None
        self._quietly("recorder", self._recorder.event, "resume", self.hold_reason or "")
        self.holding = False
        self.hold_reason = None
        self._quietly("metrics", self._metrics.holding.set, 0)

    async def _command_hold(self, reason: str) -> None:
        try:
            await self._call(self._robot.hold)
        except Exception as exc:
            await self._estop(f"driver hold failed ({reason}): {exc!r}")

    async def _estop(self, reason: str) -> None:
        """Latch the e-stop and stop the arm, once."""
        self._quietly("shield", self._shield.estop.trigger, reason)
        if self.estopped:
            return
        self.estopped = True
        self.holding = True
        self.hold_reason = "estop"
        self._stats.estops += 1
        self._stats.estop_reason = reason
        self._quietly("metrics", self._metrics.estop.inc)
        self._quietly("metrics", self._metrics.holding.set, 1)
        self._quietly("recorder", self._recorder.event, "estop", reason)
        logger.error("E-stop latched: %s. The arm stays stopped until an explicit reset.", reason)
        try:
            await self._call(self._robot.emergency_stop)
        except Exception:
            logger.exception("emergency_stop itself failed")
        self.estop_latched.set()  # the agent ends the run on it


def _short(text: str, limit: int = 240) -> str:
    """``text`` on one line, cut to ``limit`` characters (Ruckig's errors dump its whole input)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."

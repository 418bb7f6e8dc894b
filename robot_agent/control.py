"""The fixed-rate control loop, its watchdog and its fault boundary.

Tick k starts at ``t0 + k * period`` on ``time.monotonic()`` (never ``sleep(period)``, which
drifts by the work done each tick); a tick whose work runs past the next deadline is an overrun:
counted, and the missed ticks are skipped rather than run back to back; a loop that overruns on
more than a quarter of its ticks cannot keep its rate, and warns once with the rate it achieved
(:data:`RATE_OVERRUN_SHARE`). Each tick reads the robot
state, takes the plan's target for now (``plan.py``), passes it through the safety shield and
sends what comes out to the driver. Driver calls run in the one driver thread, never on the event
loop. What happens is published on the event bus handed in (``events.py``): a :class:`Tick` with
its step record each tick, :class:`Hold`, :class:`Resume`, :class:`EStopLatched`,
:class:`TickFault` and :class:`Interventions`; metrics, run statistics and the recorder subscribe.

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
shield, or a subscriber: the recorder, the metrics or the run statistics, which count as
``metrics``) becomes a hold named after the stage (``trajectory_error``, ...), never an unhandled
exception; a recorder that raised is taken off the bus (recording stops, the run goes on);
bookkeeping on the way to a hold or an e-stop is published quietly (it never keeps the arm from
stopping); ``control.max_consecutive_faults`` faulty ticks in a row latch the
e-stop, as does any driver exception (read, command, hold) or a robot fault. The e-stop is the
one :class:`safety.EStop` the agent owns and hands to the shield and to this loop.

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
from typing import Any

import numpy as np

from robot_agent.action_space import measured_from_state
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.events import (
    DeadlineMiss,
    EStopLatched,
    EventBus,
    Hold,
    Interventions,
    Resume,
    SubscriberError,
    Tick,
    TickFault,
)
from robot_agent.plan import Plan, PlanFault
from robot_agent.reasons import FAULT_REASONS, PLAN_KEEPING_REASONS
from safety import EStop, Shield
from safety.record import StepRecord
from safety.types import Measured, Target

__all__ = ["ControlLoop"]

logger = logging.getLogger(__name__)

# The pace check: a loop that overran on more than a quarter of the ticks of a window (at least
# 2 s and 50 ticks) cannot keep its rate, and says so once. A busy moment costs a few percent:
# bench/control_loop.py measured 6 % of ticks overrunning at 250 Hz on a shared 2-core VM.
RATE_WINDOW_S = 2.0
RATE_WINDOW_MIN_TICKS = 50
RATE_OVERRUN_SHARE = 0.25

#: The tick stage a failing subscriber is charged to (its ``name``); the run statistics are
#: bookkeeping like the metrics.
SUBSCRIBER_STAGES: dict[str, str] = {"recorder": "recorder", "metrics": "metrics", "stats": "metrics"}


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
    """Runs the ticks on ``plan``: each tick's target comes from :meth:`Plan.target_for`.

    ``shield`` filters every target and shares ``estop`` (the agent's one e-stop) with this loop;
    ``events`` gets every tick, hold, resume, e-stop and fault. ``max_state_age_s``: a robot state
    older than this (or not advancing for this long) holds with ``stale_observation``; None:
    three control periods. ``max_consecutive_faults``: this many ticks in a row that raised
    inside the fault boundary latch the e-stop (>= 1). ``rate_window_s``: the window of the pace
    check (warn once when over a quarter of its ticks overran).
    """

    def __init__(
        self,
        *,
        robot: Robot,
        call_driver: Callable[..., Awaitable[Any]],
        shield: Shield,
        plan: Plan,
        events: EventBus,
        estop: EStop,
        rate_hz: float,
        max_state_age_s: float | None = None,
        max_consecutive_faults: int = 5,
        rate_window_s: float = RATE_WINDOW_S,
    ) -> None:
        self._robot = robot
        self._call = call_driver
        self._shield = shield
        self._plan = plan
        self._events = events
        self._estop_latch = estop
        self.period = 1.0 / rate_hz
        self.holding = False
        self.hold_reason: str | None = None
        self.tick_event = asyncio.Event()  # set after every tick (the scheduler task wakes on it)
        self.estop_latched = asyncio.Event()  # set once the e-stop latched and the arm was told to stop
        self._latched = False  # this loop has handled the latched e-stop (counted, arm stopped)
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
        self._rate_window = (rate_window_s, 0.0, 0, 0)  # (length s, start, ticks, overruns): the pace check
        self.rate_warned = False  # the loop was found unable to keep rate_hz (warned once)
        self._tick_measured: Measured | None = None  # this tick's reading, for the record of a fault

    @property
    def estopped(self) -> bool:
        """The e-stop is latched (the one :class:`safety.EStop`, whoever triggered it)."""
        return self._estop_latch.active

    async def run(self, stopping: asyncio.Event) -> None:
        """Tick until ``stopping`` is set, then command a last hold (unless e-stopped)."""
        period = self.period
        t0 = time.monotonic()
        k = 0
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
            dt = period if self._last_now is None else now - self._last_now
            await self.tick(now, dt, state, deadline=t0 + (k + 1) * period)
            self.tick_event.set()
            k += 1
            after = time.monotonic()
            overran = after > t0 + k * period
            if overran:
                # The work ran into the next tick (counted in the Tick event): skip what was missed.
                k = int((after - t0) / period) + 1
            if not self.rate_warned:
                self._check_pace(after, overran)
        if not self._latched:
            await self._command_hold("stopping", time.monotonic())

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

    async def tick(
        self,
        now: float,
        dt: float,
        state: RobotState | BaseException | None = None,
        *,
        deadline: float | None = None,
    ) -> None:
        """One control step on ``state`` at ``now`` (seconds, ``time.monotonic()``), ``dt`` after the
        previous one (read here when not given; public so tests can drive it); ``deadline``: when
        the next tick is due (a tick still working then overran).

        Never raises (cancellation aside): this is the tick's fault boundary. A driver error
        latches the e-stop; an exception from any other stage, the subscribers of the tick's
        :class:`Tick` event included, becomes a hold named after the stage
        (:data:`FAULT_REASONS`), and ``max_consecutive_faults`` of them in a row the e-stop.
        """
        if state is None:
            try:
                state = await self._call(self._robot.read_state)
            except Exception as exc:
                state = exc
        self._stage = "state"
        self._tick_measured = None
        faulted = False
        try:
            record = await self._step(now, dt, state)
        except Exception as exc:
            faulted = True
            await self._handle_fault(now, exc)
            # The faulty tick is recorded too: a recording keeps every tick.
            record = self._record(now, self._tick_measured, None, None, ())
        last, self._last_now = self._last_now, now
        after = time.monotonic()
        event = Tick(
            step=record,
            period_s=None if last is None else now - last,
            work_s=after - now,
            overran=deadline is not None and after > deadline,
            after_first_chunk=self._plan.status.chunks > 0,
        )
        try:
            self._events.publish(event)
        except SubscriberError as exc:
            stage = SUBSCRIBER_STAGES.get(exc.subscriber, "metrics")
            if not faulted:
                faulted = True
                self._stage = stage
                await self._handle_fault(now, exc)
            elif stage == "recorder":  # the tick is already a fault: only stop recording
                self._drop_recorder(exc.__cause__ or exc)
        if not faulted:
            self._faults = 0

    async def _handle_fault(self, now: float, exc: Exception) -> None:
        """Turn an exception of this tick into a hold (or the e-stop); never raises."""
        try:
            await self._on_fault(now, exc)
        except Exception as inner:  # handling the fault failed too: stop the arm
            await self._estop(f"control tick fault handling failed: {inner!r} (after {exc!r})", now)

    async def _step(self, now: float, dt: float, state: RobotState | BaseException) -> StepRecord:
        """The tick's stages; ``self._stage`` names the one running, for :meth:`_on_fault`."""
        if isinstance(state, BaseException):
            await self._estop(f"driver read_state failed: {state!r}", now)
            return self._record(now, None, None, None, ())
        measured = _checked(measured_from_state(state))  # stage "state": unusable = driver failure
        self._tick_measured = measured
        self._plan.observe(state)
        estop = self._estop_latch
        if state.fault and not estop.active:
            estop.trigger(f"robot fault: {state.fault}")
        stale = self._stale_state(now, state)
        if stale is not None and not estop.active:
            await self._enter_hold(now, "stale_observation", stale)
            return self._record(now, measured, None, None, ())
        raw: Target | None = None
        plan_end = None
        if not estop.active:
            self._stage = "plan"
            raw, plan_end = self._plan.target_for(now)
        self._stage = "shield"
        if raw is not None and self.holding:
            # Leaving hold: the shield's rate limits start again from where the arm is.
            self._shield.reset(measured)
        decision = self._shield.filter(raw, measured, now, dt)
        self._stage = "metrics"
        # The latched e-stop's held ticks are one event, counted when it latched; no_target is
        # the watchdog's own hold, counted as a hold, not a safety rule.
        fired = () if self._latched else tuple(k for k in decision.fired if k != "no_target")
        if fired:
            self._events.publish(Interventions(now, fired))
        if decision.estop or estop.active:
            await self._estop(estop.reason or "shield e-stop", now)
            return self._record(now, measured, raw, None, decision.fired)
        if raw is None or decision.hold or decision.target is None:
            if raw is None:
                reason = self._plan.why_holding()
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
                    await self._enter_hold(now, reason, drop_plan=True)
                    return self._record(now, measured, raw, None, decision.fired)
            await self._enter_hold(now, reason)
            return self._record(now, measured, raw, None, decision.fired)
        if self.holding:
            self._leave_hold(now)
        try:
            await self._call(self._send, decision.target)
        except Exception as exc:
            await self._estop(f"driver command failed: {exc!r}", now)
        return self._record(
            now, measured, raw, decision.target, decision.fired, plan_end=plan_end, holding=False
        )

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
    ) -> StepRecord:
        """This tick's step record, as the :class:`Tick` event carries it."""
        held = self.holding if holding is None else holding
        return StepRecord(
            time_s=now,
            measured=measured,
            raw=raw,
            safe=safe,
            fired=tuple(fired),
            holding=held,
            hold_reason=self.hold_reason if held else None,
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
        if isinstance(exc, PlanFault):
            stage, error = exc.stage, exc.error
        elif isinstance(exc, SubscriberError):
            stage, error = SUBSCRIBER_STAGES.get(exc.subscriber, "metrics"), exc.__cause__ or exc
        else:
            error = exc
        self._faults += 1
        self._events.publish_quietly(TickFault(now, stage, _short(repr(error))))
        if stage == "state":
            await self._estop(f"driver returned an unusable robot state: {error!r}", now)
            return
        if stage == "recorder":
            self._drop_recorder(error)
        if stage in ("trajectory", "action_space"):
            # The plan itself is bad (a chunk Ruckig cannot follow): asking again at once would
            # fetch its twin every tick and the streak would latch the e-stop; the plan backs off.
            self._plan.faulted(now)
        if self._faults == 1 or stage != self._fault_stage:
            # The traceback once per streak: this is a bug (or a rogue input) worth a report.
            logger.error("Control tick failed in the %s: %r", stage, error, exc_info=error)
        self._fault_stage = stage
        if self._latched:
            return
        if self._faults >= self._max_faults:
            await self._estop(
                f"{self._faults} consecutive faulty control ticks (last in the {stage}: {_short(repr(error))})",
                now,
            )
            return
        await self._enter_hold(now, FAULT_REASONS[stage], _short(repr(error)))

    def _drop_recorder(self, exc: BaseException) -> None:
        """The recorder raised: take it off the bus and stop it (one warning naming the files),
        carry on."""
        for subscriber in self._events.subscribers:
            if subscriber.name == "recorder":
                self._events.remove(subscriber)
                stop = getattr(subscriber, "stop", None)
                if stop is not None:
                    self._quietly("recorder", stop, f"it raised {exc!r}")

    def _quietly(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """A call on the way to a hold or an e-stop: if it fails, report it once and carry on, so
        that it never keeps the arm from stopping."""
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

    async def _enter_hold(
        self, now: float, reason: str, detail: str | None = None, *, drop_plan: bool | None = None
    ) -> None:
        """Hold for ``reason`` (one of :data:`HOLD_REASONS`): command the hold first, then publish.
        Already holding for another cause: relabel (published, logged, the hold not re-commanded).
        The plan is dropped when ``drop_plan``, by default unless ``reason`` is one of
        :data:`PLAN_KEEPING_REASONS`."""
        if drop_plan is None:
            drop_plan = reason not in PLAN_KEEPING_REASONS
        if drop_plan:
            self._plan.clear(reason)
        if self._latched or (self.holding and reason == self.hold_reason):
            return
        previous = self.hold_reason if self.holding else None
        if previous is None:
            await self._command_hold(reason, now)  # before any bookkeeping, which must not delay it
            if self._latched:  # the hold itself failed
                return
        self.holding = True
        self.hold_reason = reason
        self._plan.note_holding(True)
        self._events.publish_quietly(
            Hold(now, reason, previous, detail, after_first_chunk=self._plan.status.chunks > 0)
        )
        if reason == "late":  # the plan ran out with a request outstanding: a deadline miss
            self._events.publish_quietly(DeadlineMiss(now))
        level = logging.INFO if reason == "waiting_for_server" else logging.WARNING
        because = f" ({detail})" if detail else ""
        if previous is None:
            logger.log(level, "Holding position: %s%s", reason, because)
        else:
            logger.log(level, "Still holding, now for %s%s (was %s)", reason, because, previous)

    def _leave_hold(self, now: float) -> None:
        reason = self.hold_reason or ""
        logger.info("Resuming after hold (%s)", reason)
        self.holding = False
        self.hold_reason = None
        self._plan.note_holding(False)
        self._events.publish_quietly(Resume(now, reason))

    async def _command_hold(self, reason: str, now: float) -> None:
        try:
            await self._call(self._robot.hold)
        except Exception as exc:
            await self._estop(f"driver hold failed ({reason}): {exc!r}", now)

    async def _estop(self, reason: str, now: float) -> None:
        """Latch the e-stop and stop the arm, once."""
        self._quietly("shield", self._estop_latch.trigger, reason)
        if self._latched:
            return
        self._latched = True
        self.holding = True
        self.hold_reason = "estop"
        self._plan.note_holding(True)
        self._events.publish_quietly(EStopLatched(now, reason))
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

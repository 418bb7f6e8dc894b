"""The fixed-rate control loop and its watchdog.

Tick k starts at ``t0 + k * period`` on ``time.monotonic()`` (never ``sleep(period)``, which
drifts by the work done each tick); a tick whose work runs past the next deadline is an overrun:
counted, and the missed ticks are skipped rather than run back to back. Each tick reads the robot
state, takes the trajectory's target for now, passes it through the safety shield and sends what
comes out to the driver. Driver calls run in the one driver thread, never on the event loop.

Watchdog: no valid target for now means hold (the measured pose, zero velocity), counted by
reason; only transitions are logged. Leaving hold restarts the trajectory from the held pose: the
plan is cleared on entering hold and the next chunk is anchored at the arm's pose. A driver
exception or a robot fault latches the e-stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from robot_agent.action_space import ActionSpace, measured_from_state
from robot_agent.metrics import AgentMetrics
from robot_agent.recorder import NullRecorder
from robot_agent.robot import Robot, RobotState
from robot_agent.summary import RunStats
from robot_agent.trajectory import Trajectory
from safety.types import Target

__all__ = ["HOLD_REASONS", "ControlLoop", "LinkState"]

logger = logging.getLogger(__name__)

#: Why the arm holds (the ``reason`` label of ``vla_agent_hold_total``), plus any safety rule kind.
HOLD_REASONS = (
    "waiting_for_server",  # no spec or no chunk yet
    "chunk_exhausted",  # the plan ran out and nothing was asked for in time
    "late",  # the plan ran out while a request was outstanding: a deadline miss
    "stream_down",  # the stream broke; reconnecting
    "invalid_chunk",  # the last chunk had the wrong shape or could not be decoded
    "non_finite",  # the last chunk had NaN or inf
    "server_error",  # the server answered INVALID or ERROR
    "safety",  # the shield refused the target
    "estop",
)


@dataclass
class LinkState:
    """What the stream task tells the control loop (event-loop only)."""

    up: bool = False
    ever_up: bool = False
    in_flight_since: float | None = None
    problem: str | None = None  # why the last chunk was refused, until a good one arrives
    chunks: int = 0  # good chunks received


class ControlLoop:
    """Runs the ticks; ``configure`` gives it the action space and trajectory once a spec is known."""

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
            now, state = await self._call(self._read_at, deadline)
            if last is not None:
                self._stats.periods.append(now - last)
                self._metrics.control_period_seconds.observe(now - last)
            dt = period if last is None else now - last
            last = now
            await self.tick(now, dt, state)
            self._stats.ticks += 1
            self.tick_event.set()
            k += 1
            after = time.monotonic()
            self._stats.tick_work.append(after - now)
            if after > t0 + k * period:
                # The work ran into the next tick: count it, and skip what was missed.
                self._stats.overruns += 1
                self._metrics.control_overrun.inc()
                k = int((after - t0) / period) + 1
        if not self.estopped:
            await self._command_hold("stopping")

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
        """One control step on ``state`` (read here when not given; public so tests can drive it)."""
        if state is None:
            try:
                state = await self._call(self._robot.read_state)
            except Exception as exc:
                state = exc
        if isinstance(state, BaseException):
            await self._estop(f"driver read_state failed: {state!r}")
            self._recorder.step(
                time_s=now, measured=None, raw=None, safe=None, fired=(), holding=True, reason="estop"
            )
            return
        self.latest_state = state
        measured = measured_from_state(state)
        if state.fault and not self.estopped:
            self._shield.estop.trigger(f"robot fault: {state.fault}")
        raw: Target | None = None
        plan_end = None
        if self.trajectory is not None and self.action_space is not None and not self._shield.estop.active:
            value = self.trajectory.sample(now)
            plan_end = self.trajectory.end_time
            if value is not None:
                raw = self.action_space.target_of(value, now)
                if self.holding:
                    # Leaving hold: the shield's rate limits start again from where the arm is.
                    self._shield.reset(measured)
        decision = self._shield.filter(raw, measured, now, dt)
        for kind in decision.fired:
            if kind == "no_target":  # the watchdog's own hold, counted as a hold, not a safety rule
                continue
            self._stats.safety_interventions[kind] += 1
            self._metrics.safety_interventions.labels(kind).inc()
        if decision.estop or self._shield.estop.active:
            await self._estop(getattr(self._shield.estop, "reason", None) or "shield e-stop")
            self._recorder.step(
                time_s=now,
                measured=measured,
                raw=raw,
                safe=None,
                fired=decision.fired,
                holding=True,
                reason="estop",
            )
            return
        if raw is None or decision.hold or decision.target is None:
            if raw is None:
                reason = self._watchdog_reason()
            else:
                reason = "non_finite" if "non_finite" in decision.fired else "safety"
            await self._enter_hold(reason, state)
            self._recorder.step(
                time_s=now,
                measured=measured,
                raw=raw,
                safe=None,
                fired=decision.fired,
                holding=True,
                reason=self.hold_reason,
            )
            return
        if self.holding:
            self._leave_hold(now)
        try:
            await self._call(self._send, decision.target)
        except Exception as exc:
            await self._estop(f"driver command failed: {exc!r}")
        self._recorder.step(
            time_s=now,
            measured=measured,
            raw=raw,
            safe=decision.target,
            fired=decision.fired,
            holding=False,
            reason=None,
            plan_end=plan_end,
        )

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

    async def _enter_hold(self, reason: str, state: RobotState) -> None:
        if self.holding:
            return
        self.holding = True
        self.hold_reason = reason
        if self.trajectory is not None:
            self.trajectory.clear()
        self._stats.holds[reason] += 1
        if self._link.chunks > 0:
            self._stats.holds_after_first_chunk += 1
        if reason == "late":
            self._stats.deadline_misses += 1
            self._metrics.deadline_miss.inc()
        self._metrics.hold.labels(reason).inc()
        self._metrics.holding.set(1)
        self._recorder.event("hold", reason)
        level = logging.INFO if reason == "waiting_for_server" else logging.WARNING
        logger.log(level, "Holding position: %s", reason)
        await self._command_hold(reason)

    def _leave_hold(self, now: float) -> None:
        logger.info("Resuming after hold (%s)", self.hold_reason)
        self._recorder.event("resume", self.hold_reason or "")
        self.holding = False
        self.hold_reason = None
        self._metrics.holding.set(0)

    async def _command_hold(self, reason: str) -> None:
        try:
            await self._call(self._robot.hold)
        except Exception as exc:
            await self._estop(f"driver hold failed ({reason}): {exc!r}")

    async def _estop(self, reason: str) -> None:
        """Latch the e-stop and stop the arm, once."""
        self._shield.estop.trigger(reason)
        if self.estopped:
            return
        self.estopped = True
        self.holding = True
        self.hold_reason = "estop"
        self._stats.estops += 1
        self._stats.estop_reason = reason
        self._metrics.estop.inc()
        self._metrics.holding.set(1)
        self._recorder.event("estop", reason)
        logger.error("E-stop latched: %s. The arm stays stopped until an explicit reset.", reason)
        try:
            await self._call(self._robot.emergency_stop)
        except Exception:
            logger.exception("emergency_stop itself failed")
        self.estop_latched.set()  # the agent ends the run on it

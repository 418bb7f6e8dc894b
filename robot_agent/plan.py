"""The plan: the one owner of what the arm is to do next.

Three tasks share it, each through a few methods: the stream task hands it every answer
(:meth:`Plan.accept`), the scheduler task asks it whether and what to send
(:meth:`Plan.wants_observation`, :meth:`Plan.request_inputs`, :meth:`Plan.sent`), and the
control loop asks it for the target of each tick (:meth:`Plan.target_for`), why there is none
(:meth:`Plan.why_holding`), and drops it when it cannot be trusted (:meth:`Plan.clear`). Nothing
else touches the trajectory, the captures in flight or the stream status.

What it holds: the policy's action space and the trajectory built from its chunks; the robot
state of every capture in flight (request id -> state), so a chunk's timing is this agent's own
record and never the server's echo; the :class:`StreamStatus`; the answer backoff (after an
INVALID or ERROR answer, a refused chunk or a plan the control loop dropped as faulty, the next
request waits, exponentially, reset once the arm has moved on a chunk); and whether the last
observation was too old to send. Event-loop only, no locking. Events go to the bus handed in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from robot_agent import action_space
from robot_agent.action_space import ActionSpace, StateVectorBuilder
from robot_agent.config import ControlConfig
from robot_agent.drivers.base import RobotState
from robot_agent.events import (
    Answer,
    ChunkAccepted,
    ChunkRejected,
    DeadlineMiss,
    EventBus,
    ObservationFresh,
    ObservationStale,
    RequestFailed,
)
from robot_agent.policy_client import Backoff, Chunk, ChunkProblem
from robot_agent.reasons import BAD_PLAN_REASONS
from robot_agent.scheduler import Scheduler
from robot_agent.trajectory import Trajectory, load_compiled
from safety.types import Target

__all__ = ["Outcome", "Plan", "PlanFault", "StreamStatus", "trajectory_for"]

logger = logging.getLogger(__name__)

#: What :meth:`Plan.accept` did with an answer.
Outcome = Literal["accepted", "deadline_miss", "late", "rejected", "unknown"]

#: How many request ids back a capture is kept for (older ones can no longer be answered usefully).
PENDING_WINDOW = 16


@dataclass
class StreamStatus:
    """The state of the Predict stream as the plan sees it (event-loop only)."""

    up: bool = False  # the stream is open now
    ever_up: bool = False  # it was open once (a later loss is stream_down, not waiting_for_server)
    in_flight_since: float | None = None  # when the request in flight was sent (monotonic s)
    problem: str | None = None  # a hold reason: why the last answer was refused, until a good one
    chunks: int = 0  # good chunks received


class PlanFault(Exception):
    """Sampling the plan (``stage`` ``trajectory``) or converting its waypoint into a robot target
    (``stage`` ``action_space``) raised; ``__cause__`` is the original exception. Raised by
    :meth:`Plan.target_for`, so the control loop can name the stage in its hold."""

    def __init__(self, stage: Literal["trajectory", "action_space"], error: BaseException) -> None:
        super().__init__(f"{stage}: {error!r}")
        self.stage = stage
        self.error = error


class Plan:
    """The plan's one owner (see the module docstring).

    ``scheduler``: the request policy, whose round-trip estimate each accepted chunk feeds;
    ``backoff``: the answer backoff; ``events``: where accepted and refused chunks, deadline
    misses, failed requests and stale observations are published.

    Example::

        plan = Plan(events=EventBus([...]), scheduler=Scheduler(config.scheduler, request_timeout_s=0.5),
                    backoff=Backoff(0.1, 2.0, 5.0, 0.1))
        plan.configure(space, trajectory)
        plan.stream_up()
        outcome = plan.accept(chunk, time.monotonic())
        target, plan_end = plan.target_for(time.monotonic())
    """

    def __init__(self, *, events: EventBus, scheduler: Scheduler, backoff: Backoff) -> None:
        self.status = StreamStatus()
        self._events = events
        self._scheduler = scheduler
        self._backoff = backoff
        self._space: ActionSpace | None = None
        self._trajectory: Trajectory | None = None
        self._state_builder = StateVectorBuilder(())  # replaced by the spec's names at connect
        self._latest_state: RobotState | None = None
        self._pending: dict[int, RobotState] = {}  # request id -> the state captured with it
        self._next_request_s = 0.0  # no request before this (the answer backoff)
        self._resets_on_motion = False  # a usable chunk resets the backoff once the arm moves on it
        self._holding = False  # as the control loop last said
        self._dropped_for: tuple[str, int] | None = None  # why a bad plan was dropped, at which chunk
        self._stale: str | None = None  # what made the last observation unusable, until one is fresh
        # The compiled code of the trajectory and the action space (about 0.2 s from numba's
        # cache, seconds to compile on a machine's first run) now, not inside the event loop when
        # the first policy connects.
        load_compiled()
        action_space.load_compiled()

    # --- configuration -------------------------------------------------------------------------
    def configure(self, space: ActionSpace, trajectory: Trajectory) -> None:
        """Plan in ``space`` on ``trajectory`` (at connect, and when the policy's action space
        changes after a reconnect: the old plan is gone with the old trajectory)."""
        self._space = space
        self._trajectory = trajectory

    def use_state_names(self, names: tuple[str, ...] | list[str]) -> None:
        """The state vector the policy reads, by name (``PolicySpec.state_names``)."""
        self._state_builder = StateVectorBuilder(names)

    @property
    def configured(self) -> bool:
        return self._space is not None and self._trajectory is not None

    @property
    def end_time(self) -> float | None:
        """When the plan in hand runs out (monotonic s), None without one."""
        return self._trajectory.end_time if self._trajectory is not None else None

    # --- the robot state (written by the control loop) ------------------------------------------
    def observe(self, state: RobotState) -> None:
        """The newest usable robot state (each control tick): the anchor of the next chunk and
        the state of the next observation."""
        self._latest_state = state

    @property
    def latest_state(self) -> RobotState | None:
        return self._latest_state

    def note_holding(self, holding: bool) -> None:
        """The control loop holds (True) or moves again (False); a resume forgets why a bad plan
        was dropped."""
        self._holding = holding
        if not holding:
            self._dropped_for = None

    # --- the stream side ------------------------------------------------------------------------
    def stream_up(self) -> None:
        """The stream is open (again): answers to requests of an earlier stream are ignored."""
        self.status.up = self.status.ever_up = True
        self.status.in_flight_since = None
        self._pending.clear()

    def stream_down(self) -> None:
        self.status.up = False
        self.status.in_flight_since = None

    def accept(self, chunk: Chunk, now: float) -> Outcome:
        """Take one answer into the plan, at ``now`` (monotonic s).

        Returns ``unknown`` (an answer to a request of an earlier stream, ignored), ``late`` (the
        server answered LATE), ``rejected`` (INVALID, ERROR, or a chunk this agent refuses: the
        next request backs off, the hold says why), ``deadline_miss`` (every action already
        past) or ``accepted``. Publishes :class:`Answer`, :class:`ChunkRejected`,
        :class:`DeadlineMiss` and :class:`ChunkAccepted`.
        """
        status = self.status
        capture_state = self._pending.pop(chunk.request_id, None)
        if capture_state is None:
            logger.debug("Response to request %d of an earlier stream ignored", chunk.request_id)
            return "unknown"
        if not self._pending:
            status.in_flight_since = None
        self._events.publish_quietly(Answer(now, chunk.request_id, chunk.status))
        if chunk.status != "OK":
            if chunk.status == "LATE":
                logger.debug("Request %d answered LATE: %s", chunk.request_id, chunk.message)
                return "late"
            # INVALID: this agent's request was refused; ERROR (or a status this agent does not
            # know): the server failed. Either way asking again at once would only repeat it.
            kind = "invalid_request" if chunk.status == "INVALID" else "server_error"
            delay = self._back_off(now)
            self._reject(chunk, now, kind, f"{chunk.status}: {chunk.message} (next request in {delay:.2f} s)")
            return "rejected"
        if chunk.problem is not None or chunk.actions is None:
            # An answer this agent refuses (NaN, wrong shape, unparseable) is an error too: a
            # server sending one on every request got ~96 requests/s, as ERROR used to.
            problem = chunk.problem or ChunkProblem("invalid_chunk", "no actions")
            delay = self._back_off(now)
            self._reject(chunk, now, problem.kind, f"{problem.detail} (next request in {delay:.2f} s)")
            return "rejected"
        assert self._space is not None and self._trajectory is not None
        # Our own record of the capture time, not the server's echo: the server is never trusted
        # with the timing of what the arm does.
        capture_time = capture_state.time_s
        rtt = chunk.received_s - capture_time
        self._scheduler.rtt.add(rtt)
        held = self._latest_state or capture_state
        try:
            # Finite and of the right shape, yet it may still not be plannable (a 1e300 m step
            # overflows the conversion): the chunk is refused, the stream and the arm carry on.
            waypoints = self._space.to_waypoints(chunk.actions, capture_state)
            result = self._trajectory.add_chunk(
                waypoints, capture_time, chunk.dt_s, now, start=self._space.waypoint_of(held)
            )
        except Exception as exc:
            logger.debug("Chunk %d could not be planned", chunk.request_id, exc_info=True)
            delay = self._back_off(now)
            self._reject(
                chunk, now, "invalid_chunk", f"could not be planned: {exc!r} (next request in {delay:.2f} s)"
            )
            return "rejected"
        # A usable chunk: the backoff starts afresh once the arm has moved on it (a chunk that
        # passes intake can still fault when the control loop samples it, e.g. under Ruckig).
        self._resets_on_motion = True
        self._next_request_s = 0.0
        first = status.chunks == 0 and result.kept > 0
        self._events.publish_quietly(
            ChunkAccepted(now, chunk.request_id, rtt, result.kept, result.dropped, first)
        )
        if result.kept == 0:
            # A deadline miss. Holding, the hold is relabelled 'late' (counted as it is); a miss
            # while the old plan still runs, or after the hold says 'late', is counted here.
            if status.problem == "late" or not self._holding:
                self._events.publish_quietly(DeadlineMiss(now, chunk.request_id))
            if self._holding:
                status.problem = "late"
            logger.warning(
                "Chunk %d arrived after all its actions were due (%.0f ms round trip)",
                chunk.request_id,
                rtt * 1000,
            )
            return "deadline_miss"
        if status.problem is not None:
            logger.info("Good chunk again after %s", status.problem)
        status.problem = None
        status.chunks += 1
        if first:
            logger.info("First chunk received (%.0f ms round trip)", rtt * 1000)
        return "accepted"

    def _reject(self, chunk: Chunk, now: float, kind: str, detail: str) -> None:
        self._events.publish_quietly(ChunkRejected(now, chunk.request_id, kind, detail))
        if self.status.problem != kind:
            logger.warning("Chunk %d rejected (%s): %s", chunk.request_id, kind, detail)
        self.status.problem = kind

    # --- the scheduler side ---------------------------------------------------------------------
    def wants_observation(self, now: float) -> bool:
        """Whether an observation should go out at ``now``: the stream is up, the plan
        configured, no backoff running, and the scheduler's policy says so (see
        :meth:`Scheduler.should_send`). Resets the answer backoff once the arm moves on a chunk."""
        if not self.status.up or not self.configured or self._latest_state is None:
            return False
        if self._resets_on_motion and not self._holding:
            self._resets_on_motion = False
            self._backoff.reset()
        if now < self._next_request_s:  # backing off after a refused answer or a faulty plan
            return False
        return self._scheduler.should_send(now, self.end_time, self.status.in_flight_since)

    def request_inputs(self, now: float, state: RobotState) -> tuple[np.ndarray, np.ndarray | None]:
        """The state vector of ``state`` (``PolicySpec.state_names``) and the plan's actions not
        yet executed at ``now`` in the policy's action space (``[n, action_dim]``, None without
        any), ``ee_r*`` continuous with the previous observation's (issue 10, kind 5: a tool
        pointing down sits on the rotation's pi wrap). Raises what the conversion raises."""
        assert self._space is not None and self._trajectory is not None
        vector = self._state_builder.build(state)
        prev_actions = None
        _, rest = self._trajectory.remaining(now)
        if len(rest):
            prev_actions = self._space.to_actions(rest, state, near_rotvec=self._state_builder.rotvec)
        return vector, prev_actions

    def sending(self, now: float) -> None:
        """An observation is about to be built and sent at ``now``: it is in flight."""
        self.status.in_flight_since = now
        self._scheduler.sent(now)

    def sent(self, request_id: int, state: RobotState) -> None:
        """Request ``request_id`` carries ``state``: remembered before the write, as the answer
        may beat it back; captures more than :data:`PENDING_WINDOW` requests old are forgotten."""
        self._pending[request_id] = state
        for old in [rid for rid in self._pending if rid < request_id - PENDING_WINDOW]:
            del self._pending[old]

    def send_failed(self) -> None:
        """The write failed (the stream is going down): nothing is in flight."""
        self.status.in_flight_since = None

    def request_failed(self, now: float, error: BaseException) -> None:
        """Building the request failed on this agent's own data (a state or frame the codec
        refuses, a plan that cannot be expressed as prev_actions): hold, back off, go on."""
        self.status.in_flight_since = None
        delay = self._back_off(now)
        if self.status.problem != "invalid_request":
            logger.error(
                "Building the request failed (next try in %.2f s): %r",
                delay,
                error,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            self._events.publish_quietly(RequestFailed(now, repr(error)))
        self.status.problem = "invalid_request"

    def observation_stale(self, now: float, detail: str) -> None:
        """Part of the observation is too old to act on: nothing is sent, so the plan in hand
        runs out and the arm holds with ``stale_observation``. Published once per episode."""
        if self._stale is None:
            logger.warning("Not sending observations: %s", detail)
            self._events.publish_quietly(ObservationStale(now, detail))
        self._stale = detail
        self.status.problem = "stale_observation"  # the hold's label once the plan in hand runs out

    def observation_fresh(self, now: float) -> None:
        """Every part of the observation is young enough again."""
        if self._stale is None:
            return
        logger.info("Observation fresh again after: %s", self._stale)
        self._events.publish_quietly(ObservationFresh(now, self._stale))
        self._stale = None
        if self.status.problem == "stale_observation":
            self.status.problem = None

    # --- the control side -----------------------------------------------------------------------
    def target_for(self, now: float) -> tuple[Target | None, float | None]:
        """The robot target of the plan at ``now`` (None: nothing valid for now) and when the
        plan runs out (None: no plan). Raises :class:`PlanFault` naming the stage that raised."""
        if self._trajectory is None or self._space is None:
            return None, None
        try:
            value = self._trajectory.sample(now)
        except Exception as exc:
            raise PlanFault("trajectory", exc) from exc
        plan_end = self._trajectory.end_time
        if value is None:
            return None, plan_end
        try:
            return self._space.target_of(value, now), plan_end
        except Exception as exc:
            raise PlanFault("action_space", exc) from exc

    def why_holding(self) -> str:
        """Why there is no target for now (a hold reason of :data:`robot_agent.reasons.HOLD_REASONS`):
        the stream's state, the last refused answer, a request late, or the plan run out; a plan
        dropped as bad keeps its label until the next chunk."""
        status = self.status
        if not status.up:
            reason = "stream_down" if status.ever_up else "waiting_for_server"
        elif status.problem is not None:
            reason = status.problem
        elif status.chunks == 0:
            reason = "waiting_for_server"
        elif status.in_flight_since is not None:
            reason = "late"
        else:
            reason = "chunk_exhausted"
        dropped = self._dropped_for
        if reason in ("chunk_exhausted", "late") and dropped and dropped[1] == status.chunks:
            # The plan was dropped as bad and no chunk came since: the cause is still that.
            reason = dropped[0]
        return reason

    def clear(self, reason: str) -> None:
        """Drop the plan because of hold reason ``reason``; the next chunk is anchored at the held
        pose. A reason of :data:`BAD_PLAN_REASONS` labels the hold until the next chunk."""
        if self._trajectory is None:
            return
        self._trajectory.clear()
        if reason in BAD_PLAN_REASONS:
            self._dropped_for = (reason, self.status.chunks)

    def faulted(self, now: float) -> None:
        """The control loop dropped a plan that raised (a chunk Ruckig cannot follow): asking
        again at once would fetch its twin every tick, so the next request backs off."""
        self._resets_on_motion = False
        delay = self._back_off(now)
        logger.debug("Plan dropped by the control loop; next request in %.2f s", delay)

    def _back_off(self, now: float) -> float:
        """Hold the next request back by the answer backoff's next delay (seconds, returned)."""
        delay = self._backoff.next()
        self._next_request_s = now + delay
        return delay


def trajectory_for(space: ActionSpace, control: ControlConfig) -> Trajectory:
    """An empty trajectory for plans in ``space``, blended and interpolated as ``control`` says;
    under Ruckig, limited per axis by ``control.ruckig_*`` (translation m, rotation rad, joints
    rad, gripper: velocity, acceleration, jerk)."""
    if space.is_ee:
        groups = [control.ruckig_translation] * 3 + [control.ruckig_rotation] * 3 + [control.ruckig_gripper]
    else:
        groups = [control.ruckig_joint] * space.num_joints + [control.ruckig_gripper]
    velocity, acceleration, jerk = (np.array([g[i] for g in groups]) for i in range(3))
    return Trajectory(
        blend_mode=control.blend,
        crossfade_steps=control.crossfade_steps,
        ensemble_decay=control.ensemble_decay,
        interpolation=control.interpolation,
        control_dt=1.0 / control.rate_hz,
        ruckig_limits=(velocity, acceleration, jerk),
        unwrap=space.unwrap_waypoints,
        bounded_columns=space.bounded_columns,
    )

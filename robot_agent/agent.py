"""The agent's lifecycle: startup, the long-lived tasks, and a shutdown that always stops the arm.

``Agent(config).run()`` wraps ``serve()``:

1. startup: build and connect the robot and the configured cameras *before* contacting the server,
   so a missing arm or camera is reported even when no server runs;
2. one ``asyncio.TaskGroup`` for control (``control.py``), stream (``stream.py``), scheduler
   (``sender.py``), sensors and metrics, so one failure cancels the rest; the first three share
   the plan (``plan.py``, its one owner) and publish to one event bus (``events.py``) whose
   subscribers are the metrics, the run statistics and the recorder; the arm holds until the
   first chunk arrives, and whenever the server is gone;
3. shutdown in a fixed order: stop sending, come to hold, stop and close the driver (in
   ``finally``, never skipped), close cameras, write the summary.

Signals only record and flag (uvicorn's ``handle_exit``, installed as ``vla.signals`` says):
SIGINT / SIGTERM set the stop event, a second SIGINT skips the graceful waits (never the driver
stop), SIGUSR1 latches the e-stop. The agent owns the one e-stop latch (``safety.EStop``) and
hands it to the shield and the control loop; a latched e-stop ends the run. With a ``run_file``
(``runfile.py``) the agent says it runs, and when it latched, so ``robot-agent estop`` signals
only a live agent and can confirm the latch. ``status()`` is a read-only snapshot of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry

from robot_agent import startup
from robot_agent.cameras.capture import Sensors
from robot_agent.config import AgentConfig
from robot_agent.control import ControlLoop
from robot_agent.drivers import create_robot
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import (
    AgentError,
    RunFileError,
    SpecMismatch,
)
from robot_agent.events import EventBus, PolicyChanged, Subscriber
from robot_agent.metrics import AgentMetrics
from robot_agent.metrics_server import serve_metrics
from robot_agent.plan import Plan, trajectory_for
from robot_agent.policy_client import Backoff, DelayedClient, PolicyClient
from robot_agent.recorder import NullRecorder, Recorder
from robot_agent.runfile import RunFile, RunState
from robot_agent.scheduler import Scheduler
from robot_agent.security import ChannelSecurity
from robot_agent.sender import ObservationSender, RequestShape
from robot_agent.status import AgentStatus, counts
from robot_agent.stream import StreamTask
from robot_agent.summary import RunStats, describe_policy, policy_identity
from safety import EStop, Shield
from vla import eventloop
from vla.signals import capture_signals
from vla.v1 import policy_pb2 as pb

__all__ = ["Agent", "AgentStatus"]

logger = logging.getLogger(__name__)

#: SIGINT / SIGTERM stop the run (a second SIGINT skips the graceful waits); SIGUSR1 latches the e-stop.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class Agent:
    """One robot session. ``robot`` may be handed in (the caller then owns it: ``eval`` reuses one
    simulated arm across episodes); otherwise it is built from ``config.robot`` and closed here.
    ``subscribers`` get every event of the run (:mod:`robot_agent.events`) after the metrics and
    the run statistics, as openpi's ``Runtime(subscribers=...)``; one that raises in a tick holds
    the arm as a failing metric does (``metrics_error``).

    Example::

        agent = Agent(AgentConfig.load("agent.toml"))
        summary = agent.run()
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        robot: Robot | None = None,
        metrics: AgentMetrics | None = None,
        run_file: RunFile | None = None,
        subscribers: Sequence[Subscriber] = (),
    ) -> None:
        self.config = config
        self.robot = robot
        self._owns_robot = robot is None
        self._robot_connected = robot is not None  # a robot handed in is connected by its owner
        self.metrics = metrics if metrics is not None else AgentMetrics(CollectorRegistry())
        self.stats = RunStats(
            rate_hz=config.control.rate_hz,
            instruction=config.instruction,
            server_address=config.server.address,
        )
        self.spec: pb.PolicySpec | None = None
        self.summary: dict[str, Any] | None = None
        self.metrics_port: int | None = None
        self._control: ControlLoop | None = None
        # Created here, awaited in serve(): asyncio primitives bind to a loop only when used.
        self.started = asyncio.Event()  # robot and cameras ready, control running
        self.connected = asyncio.Event()  # spec read and stream open at least once
        self._stop = asyncio.Event()
        self._force = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shield: Shield | None = None
        self._recorder: NullRecorder = NullRecorder()
        self._sensors = Sensors()
        self._driver: ThreadPoolExecutor | None = None
        self._client: PolicyClient | DelayedClient | None = None
        self._run_file = run_file  # how `robot-agent estop` finds this run and sees the latch
        # The one e-stop latch: the shield, the control loop and the operator share it.
        self._estop = EStop()
        # Every event of the run reaches the metrics, the run statistics, the caller's own
        # subscribers and (once recording starts) the recorder, in this order.
        self._events = EventBus([self.metrics, self.stats, *subscribers])
        server = config.server
        self._scheduler = Scheduler(config.scheduler, request_timeout_s=server.request_timeout_ms / 1000)
        # After a refused answer the next request waits (exponential, capped, reset on motion).
        answer_backoff = Backoff(
            server.backoff_initial_s, server.backoff_factor, server.backoff_max_s, server.backoff_jitter
        )
        self._plan = Plan(events=self._events, scheduler=self._scheduler, backoff=answer_backoff)
        self._sender: ObservationSender | None = None
        self._stream_task: StreamTask | None = None

    # --- control from outside ------------------------------------------------------------------
    def request_stop(self, *, force: bool = False) -> None:
        """Ask for a controlled stop (thread-safe). ``force`` skips graceful waits, not the driver stop."""
        if self._loop is None:  # not serving yet: serve() will find the event set and stop at once
            self._set_stop(force)
            return
        self._loop.call_soon_threadsafe(self._set_stop, force)

    def _set_stop(self, force: bool) -> None:
        self._force = self._force or force
        self._stop.set()

    def trigger_estop(self, reason: str) -> None:
        """Latch the e-stop (thread-safe); the next control tick stops the arm and the run ends.
        Asked for during startup, the arm never moves: the latch is the one the shield gets."""
        self._estop.trigger(reason)

    def status(self) -> AgentStatus:
        """A read-only snapshot of the run now (see :class:`AgentStatus`); event-loop only."""
        control, plan, stats = self._control, self._plan, self.stats
        state = plan.latest_state
        return AgentStatus(
            started=self.started.is_set(),
            connected=self.connected.is_set(),
            stream_up=plan.status.up,
            holding=control.holding if control is not None else False,
            hold_reason=control.hold_reason if control is not None else None,
            estopped=self._estop.active,
            estop_reason=self._estop.reason,
            chunks=plan.status.chunks,
            plan_end=plan.end_time,
            state_time_s=state.time_s if state is not None else None,
            ticks=stats.ticks,
            holds=counts(stats.holds),
            rejected_chunks=counts(stats.rejected_chunks),
            safety_interventions=counts(stats.safety_interventions),
            tick_faults=counts(stats.tick_faults),
            reconnects=stats.reconnects,
            frame_age_bounds=dict(self._sender.shape.frame_age_bounds)
            if self._sender is not None and self._sender.shape is not None
            else {},
        )

    # --- lifecycle ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run until SIGINT / SIGTERM or the configured duration; return the summary."""
        return eventloop.run(self.serve(install_signal_handlers=True))

    async def serve(self, *, install_signal_handlers: bool = False) -> dict[str, Any]:
        """Start up, run the tasks, shut down; return the summary (also in ``self.summary``)."""
        self._loop = asyncio.get_running_loop()
        with self._capture_signals(install_signal_handlers):
            self._driver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driver")
            try:
                if self._run_file is not None:  # after the SIGUSR1 handler: the file says it is there
                    await asyncio.to_thread(self._run_file.write, "running")
                await self._startup()
                self._wire()
                await self._main()
            except BaseExceptionGroup as group:
                error = _unwrap(group)
                self.stats.end("error", f"{type(error).__name__}: {error}")
                raise error from None
            except BaseException as exc:  # a startup failure; cancelled from outside: a stop
                self.stats.end(
                    "error" if isinstance(exc, Exception) else "stop", f"{type(exc).__name__}: {exc}"
                )
                raise
            finally:
                await self._shutdown()
        assert self.summary is not None
        return self.summary

    async def _call_driver(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking driver call in the one driver thread."""
        assert self._loop is not None and self._driver is not None
        return await self._loop.run_in_executor(self._driver, fn, *args)

    async def _startup(self) -> None:
        config = self.config
        if config.record.dir:
            self._recorder = Recorder(config.record.dir, video=config.record.video)
            self._sensors = Sensors(on_frame=self._recorder.frame)
        # The steps robot-agent check runs too (startup.py), so the two cannot disagree.
        if self.robot is None:
            self.robot = create_robot(config.robot)
            await startup.connect_robot(self.robot, config.robot, self._call_driver)
            self._robot_connected = True
        state = await startup.read_first_state(self.robot, config.robot.kind, self._call_driver)
        startup.refuse_fault(state, config.robot.kind)
        self._shield = self._build_shield(state)
        self._plan.observe(state)
        for name, cam_config in config.cameras.items():
            await startup.open_camera(name, cam_config, self.robot, self._sensors)
        if not config.cameras:
            await self._probe_default_camera()

    def _wire(self) -> None:
        """The long-lived tasks over the plan, on one event bus (constructor injection)."""
        config = self.config
        assert self.robot is not None and self._shield is not None
        self._events.add(self._recorder)  # recording (or not) is known once started up
        self._control = ControlLoop(
            robot=self.robot,
            call_driver=self._call_driver,
            shield=self._shield,
            plan=self._plan,
            events=self._events,
            estop=self._estop,
            rate_hz=config.control.rate_hz,
            max_state_age_s=config.control.max_state_age_s,
            max_consecutive_faults=config.control.max_consecutive_faults,
        )
        client = PolicyClient(
            config.server.address,
            session_id=config.server.session_id,
            request_timeout_ms=config.server.request_timeout_ms,
            connect_timeout_s=config.server.connect_timeout_s,
            jpeg_quality=config.server.jpeg_quality,
            security=ChannelSecurity.from_config(config.server),
        )
        if config.server.inject_latency_ms > 0 or config.server.inject_jitter_ms > 0:
            logger.info(
                "Injecting %g +- %g ms of latency on the agent's side of the stream",
                config.server.inject_latency_ms,
                config.server.inject_jitter_ms,
            )
            self._client = DelayedClient(
                client, config.server.inject_latency_ms, config.server.inject_jitter_ms
            )
        else:
            self._client = client
        server = config.server
        self._stream_task = StreamTask(
            client=self._client,
            plan=self._plan,
            events=self._events,
            address=server.address,
            backoff=Backoff(
                server.backoff_initial_s, server.backoff_factor, server.backoff_max_s, server.backoff_jitter
            ),
            accept_spec=self._accept_spec,
            identify=policy_identity,
            connected=self.connected,
        )
        self._sender = ObservationSender(
            plan=self._plan,
            scheduler=self._scheduler,
            client=self._client,
            sensors=self._sensors,
            ticks=self._control.tick_event,
            estop=self._estop,
            events=self._events,
            instruction=config.instruction,
            state_bound_s=server.request_timeout_ms / 1000,
        )

    async def _probe_default_camera(self) -> None:
        """With no camera configured: the ``default_camera`` kind has a device (startup.py)."""
        await startup.probe_default_camera(self.config.default_camera)

    def _build_shield(self, state: RobotState) -> Shield:
        """The shield from ``[safety]``, checked against this robot where it stands and where it
        starts from (startup.py); a config that does not fit is ConfigError."""
        assert self.robot is not None
        safety_config = startup.load_safety(self.config.safety)
        startup.validate_safety(safety_config, self.robot, state)
        shield = startup.build_shield(
            safety_config, self.robot, state, kind=self.config.robot.kind, estop=self._estop
        )
        self._recorder.safety_limits(safety_config.to_dict())
        return shield

    async def _main(self) -> None:
        assert self._control is not None and self._stream_task is not None and self._sender is not None
        stopping = asyncio.Event()  # control, sensors and metrics end on it
        self.stats.started_s = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            control = tg.create_task(self._control.run(stopping), name="control")
            senders = [
                tg.create_task(self._stream_task.run(), name="stream"),
                tg.create_task(self._sender.run(), name="scheduler"),
            ]
            others = [
                tg.create_task(self._sensors.watch(stopping), name="sensors"),
                tg.create_task(
                    serve_metrics(
                        self.metrics.registry,
                        self.config.metrics_host,
                        self.config.metrics_port,
                        stopping,
                        on_bound=self._metrics_bound,
                    ),
                    name="metrics",
                ),
            ]
            self.started.set()
            logger.info(
                "Agent started: control at %g Hz; waiting for the policy", self.config.control.rate_hz
            )
            await self._wait_for_stop(control)
            logger.info("Shutting down")
            for task in senders:  # stop sending first
                task.cancel(msg="agent stopping")
            stopping.set()  # then control comes to hold and ends
            if self._force:
                for task in (control, *others):
                    task.cancel(msg="forced exit: graceful shutdown skipped")

    def _metrics_bound(self, port: int) -> None:
        self.metrics_port = port  # port 0 in the config: the one bound

    async def _wait_for_stop(self, control: asyncio.Task[None]) -> None:
        """Until a stop is asked for, the duration is up, control ends, or the e-stop latched: a
        latched run ends (controlled stop, summary) rather than holding until ``duration_s``."""
        assert self._control is not None
        stop = asyncio.create_task(self._stop.wait())
        latched = asyncio.create_task(self._control.estop_latched.wait())
        try:
            await asyncio.wait(
                {stop, control, latched}, timeout=self.config.duration_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
            latched.cancel()
        if self._estop.active:
            reason = self.stats.estop_reason or self._estop.reason
            self.stats.end("estop", reason)
            logger.warning("Ending the run on the e-stop (%s)", reason)
            await self._write_run_file("estopped", reason)
        elif self._stop.is_set():
            self.stats.end("stop")  # a signal said so first (see _handle_signal)
        elif not control.done():
            self.stats.end("duration", f"{self.config.duration_s:g} s")

    async def _write_run_file(self, state: RunState, estop_reason: str | None = None) -> None:
        """Tell ``robot-agent estop`` what this run does; a failed write is logged (SIGUSR1 still works)."""
        if self._run_file is None:
            return
        try:
            await asyncio.to_thread(self._run_file.write, state, estop_reason)
        except RunFileError as exc:
            logger.warning("%s", exc)

    async def _shutdown(self) -> None:
        if not self._estop.active:
            await self._write_run_file("stopped")
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.close()
        if self.robot is not None and self._owns_robot:
            # Never skipped, not even on a forced exit (stop only makes sense once connected).
            steps = (self.robot.stop, self.robot.close) if self._robot_connected else (self.robot.close,)
            for step in steps:
                try:
                    await self._call_driver(step)
                except Exception as exc:
                    logger.error(
                        "robot %s failed: %s", step.__name__, exc, exc_info=logger.isEnabledFor(logging.DEBUG)
                    )
        await asyncio.to_thread(self._sensors.close)
        if self._driver is not None:
            self._driver.shutdown(wait=True)
        self.stats.ended_s = time.monotonic()
        if self.stats.started_s is None:
            self.stats.started_s = self.stats.ended_s
        self.summary = self.stats.to_dict()
        self._recorder.close(self.summary)
        if self._run_file is not None:  # kept after an e-stop, so `robot-agent estop` can confirm it
            if self._estop.active:
                await self._write_run_file("estopped", self.stats.estop_reason or self._estop.reason)
            else:
                await asyncio.to_thread(self._run_file.remove)

    # --- the spec, at each (re)connect --------------------------------------------------------
    async def _accept_spec(self, spec: pb.PolicySpec) -> None:
        """Check that ``spec`` fits the robot and cameras; raise :class:`SpecMismatch` if not."""
        assert self.robot is not None and self._sender is not None and self._shield is not None
        previous = self.spec
        state = self._plan.latest_state
        assert state is not None
        # The fit robot-agent check runs too (startup.py).
        space = startup.fit_policy(
            spec,
            previous=previous,
            robot=self.robot,
            robot_kind=self.config.robot.kind,
            safety=self._shield.config,
            reference=state.ee.quaternion,
            address=self.config.server.address,
        )
        if previous is not None:
            self._check_policy_change(previous, spec)
        cameras = startup.reconcile_cameras(
            spec, previous=previous, config=self.config, opened=self._sensors.names
        )
        for name, cam_config in cameras.to_open.items():
            await startup.open_camera(name, cam_config, self.robot, self._sensors)
        self._sender.shape = RequestShape(dt_s=spec.dt_s, frame_age_bounds=dict(cameras.frame_age_bounds))
        if previous is None or (previous.action_space, previous.action_dim) != (
            spec.action_space,
            spec.action_dim,
        ):
            if previous is not None:
                logger.warning(
                    "The policy's action space changed to %s; restarting the trajectory", spec.action_space
                )
            self._plan.configure(space, trajectory_for(space, self.config.control))
        if previous is None or tuple(previous.state_names) != tuple(spec.state_names):
            self._plan.use_state_names(tuple(spec.state_names))
        self.spec = spec

    def _check_policy_change(self, previous: pb.PolicySpec, spec: pb.PolicySpec) -> None:
        """After a reconnect: another name, version or action space is another policy. It is an
        event in the recording either way; unless ``server.allow_policy_change``, the run stops
        with :class:`SpecMismatch` naming both."""
        old, new = policy_identity(previous), policy_identity(spec)
        keys = ("name", "version", "action_space", "action_dim")
        if all(old[k] == new[k] for k in keys):
            return
        allowed = self.config.server.allow_policy_change
        self._events.publish_quietly(PolicyChanged(time.monotonic(), allowed, old, new))
        text = (
            f"policy at {self.config.server.address} changed on reconnect: "
            f"was {describe_policy(old)}, now {describe_policy(new)}"
        )
        if not allowed:
            raise SpecMismatch(
                f"{text}; the run stops (set [server] allow_policy_change = true to accept it)"
            )
        logger.warning("%s; accepted (server.allow_policy_change)", text)

    # --- signals --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _capture_signals(self, install: bool) -> Iterator[None]:
        # vla.signals: signal.signal, so the previous handlers come back; the handler runs on the loop.
        with capture_signals(self._handle_signal, HANDLED_SIGNALS, install=install):
            yield

    def _handle_signal(self, sig: int) -> None:
        if sig == signal.SIGUSR1:
            logger.warning("SIGUSR1: operator e-stop")
            self.trigger_estop("operator signal SIGUSR1")
            return
        self.stats.end("signal", signal.Signals(sig).name)
        force = sig == signal.SIGINT and self._stop.is_set()
        if force:
            logger.warning("Second SIGINT: skipping graceful shutdown (the arm is still stopped)")
        self._set_stop(force)  # on the loop already (vla.signals hands the signal over)


def _unwrap(group: BaseExceptionGroup) -> BaseException:
    """The error to report from a failed TaskGroup: the first agent error, else the first one."""
    flat: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            flat.append(exc)

    walk(group)
    for exc in flat:
        if isinstance(exc, AgentError):
            return exc
    return flat[0]

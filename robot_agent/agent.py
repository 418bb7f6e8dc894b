"""The agent's lifecycle: startup, the long-lived tasks, and a shutdown that always stops the arm.

``Agent(config).run()`` wraps ``serve()``:

1. startup: build and connect the robot and the configured cameras *before* contacting the server,
   so a missing arm or camera is reported even when no server runs;
2. one ``asyncio.TaskGroup`` for control, stream, scheduler, sensors and metrics, so one failure
   cancels the rest; the arm holds until the first chunk arrives, and whenever the server is gone;
3. shutdown in a fixed order: stop sending, come to hold, stop and close the driver (in
   ``finally``, never skipped), close cameras, write the summary.

Signals only record and flag (uvicorn's ``handle_exit``): SIGINT / SIGTERM set the stop event, a
second SIGINT skips the graceful waits (never the driver stop), SIGUSR1 latches the e-stop.
A latched e-stop ends the run. With a ``run_file`` (``runfile.py``) the agent says it runs, and
when it latched, so ``robot-agent estop`` signals only a live agent and can confirm the latch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server

from robot_agent.action_space import STATE_NAMES, ActionSpace, StateVectorBuilder, measured_from_state
from robot_agent.cameras import camera_class, create_camera
from robot_agent.cameras.base import Frame
from robot_agent.cameras.capture import Sensors
from robot_agent.config import AgentConfig, CameraConfig
from robot_agent.control import ControlLoop, LinkState
from robot_agent.drivers import create_robot
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import (
    AgentError,
    CameraError,
    ConfigError,
    DriverError,
    NotAPolicyServer,
    SpecMismatch,
)
from robot_agent.metrics import AgentMetrics
from robot_agent.policy_client import Backoff, Chunk, DelayedClient, PolicyClient
from robot_agent.recorder import NullRecorder, Recorder
from robot_agent.runfile import RunFile, RunFileError, RunState
from robot_agent.scheduler import Scheduler
from robot_agent.security import ChannelSecurity
from robot_agent.summary import RunStats, describe_policy, policy_identity
from robot_agent.trajectory import Trajectory
from safety import SafetyConfig, Shield
from safety.errors import SafetyConfigError
from vla.v1 import policy_pb2 as pb

__all__ = ["Agent", "fit_spec"]

logger = logging.getLogger(__name__)


class Agent:
    """One robot session. ``robot`` may be handed in (the caller then owns it: ``eval`` reuses one
    simulated arm across episodes); otherwise it is built from ``config.robot`` and closed here.

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
        self.link = LinkState()
        self.spec: pb.PolicySpec | None = None
        self.summary: dict[str, Any] | None = None
        self.metrics_port: int | None = None
        self.control: ControlLoop | None = None
        # Created here, awaited in serve(): asyncio primitives bind to a loop only when used.
        self.started = asyncio.Event()  # robot and cameras ready, control running
        self.connected = asyncio.Event()  # spec read and stream open at least once
        self._stop = asyncio.Event()
        self._force = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shield: Any = None
        self._recorder: NullRecorder = NullRecorder()
        self._sensors = Sensors()
        self._driver: ThreadPoolExecutor | None = None
        self._client: Any = None
        self._scheduler: Scheduler | None = None
        self._pending: dict[int, RobotState] = {}
        self._instruction = config.instruction
        self._camera_specs: dict[str, pb.CameraSpec] = {}
        self._state_builder = StateVectorBuilder(())  # replaced by the spec's names at connect
        self._run_file = run_file  # how `robot-agent estop` finds this run and sees the latch
        self._pending_estop: str | None = None  # an e-stop asked for before the shield existed
        self._frame_age_bounds: dict[str, float] = {}  # camera -> oldest usable frame, seconds
        self._stale: str | None = None  # what made the last observation unusable, until one is fresh
        # After an INVALID or ERROR answer the next request waits (exponential, capped, reset on OK).
        self._answer_backoff = Backoff(
            config.server.backoff_initial_s,
            config.server.backoff_factor,
            config.server.backoff_max_s,
            config.server.backoff_jitter,
        )
        self._next_request_s = 0.0
        self._plan_faults_seen = 0  # link.plan_faults already answered with a backoff step
        self._backoff_resets_on_motion = False  # a usable chunk resets it once the arm moves on it

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
        Asked for before the shield exists (during startup), it is latched as soon as it does."""
        self._pending_estop = self._pending_estop or reason  # recorded first: startup checks it after
        if self._loop is not None and self._shield is not None:
            self._loop.call_soon_threadsafe(self._shield.estop.trigger, reason)

    # --- lifecycle ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run until SIGINT / SIGTERM or the configured duration; return the summary."""
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is in the agent extra
            return asyncio.run(self.serve(install_signal_handlers=True))
        return uvloop.run(self.serve(install_signal_handlers=True))

    async def serve(self, *, install_signal_handlers: bool = False) -> dict[str, Any]:
        """Start up, run the tasks, shut down; return the summary (also in ``self.summary``)."""
        self._loop = asyncio.get_running_loop()
        with self._capture_signals(install_signal_handlers):
            self._driver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="driver")
            try:
                if self._run_file is not None:  # after the SIGUSR1 handler: the file says it is there
                    await asyncio.to_thread(self._run_file.write, "running")
                await self._startup()
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
        if self.robot is None:
            self.robot = create_robot(config.robot)
            where = f" at {config.robot.ip}" if config.robot.ip else ""
            logger.info("Connecting to robot %s%s", config.robot.kind, where)
            try:
                await self._call_driver(self.robot.connect)
                self._robot_connected = True
            except AgentError:
                raise
            except Exception as exc:
                raise DriverError(f"robot {config.robot.kind}{where}: connect failed: {exc}") from exc
        try:
            state: RobotState = await self._call_driver(self.robot.read_state)
        except AgentError:
            raise
        except Exception as exc:
            raise DriverError(f"robot {config.robot.kind}: reading the state failed: {exc}") from exc
        if state.fault:
            raise DriverError(f"robot {config.robot.kind} reports a fault: {state.fault}")
        logger.info("Robot ready: %s, ee at %s", config.robot.kind, np.round(state.ee.position, 3).tolist())
        self._shield = self._build_shield(state)
        if self._pending_estop is not None:  # an operator e-stop during startup
            self._shield.estop.trigger(self._pending_estop)
        for name, cam_config in config.cameras.items():
            camera = create_camera(cam_config, self.robot)
            await asyncio.to_thread(self._sensors.add, name, camera)
            logger.info(
                "Camera %s ready (%s, %dx%d)", name, cam_config.kind, cam_config.width, cam_config.height
            )
        if not config.cameras:
            await self._probe_default_camera()
        self.control = ControlLoop(
            robot=self.robot,
            call_driver=self._call_driver,
            shield=self._shield,
            link=self.link,
            metrics=self.metrics,
            stats=self.stats,
            recorder=self._recorder,
            rate_hz=config.control.rate_hz,
            max_state_age_s=config.control.max_state_age_s,
            max_consecutive_faults=config.control.max_consecutive_faults,
        )
        self.control.latest_state = state
        self._scheduler = Scheduler(
            config.scheduler, request_timeout_s=config.server.request_timeout_ms / 1000
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

    async def _probe_default_camera(self) -> None:
        """With no camera configured, each camera the policy asks for is a ``default_camera``,
        created once the spec is read; check now that its kind has a device, so a missing camera
        is reported even when no server runs, as a missing arm is."""
        kind = self.config.default_camera
        cls = camera_class(kind, "default_camera")
        try:
            await asyncio.to_thread(cls.probe, CameraConfig(name="default", kind=kind))
        except CameraError as exc:
            raise CameraError(f"default_camera is {kind!r} but {exc}") from exc

    def _build_shield(self, state: RobotState) -> Any:
        """The shield from ``[safety]``, checked against this robot; its errors become ConfigError."""
        assert self.robot is not None
        try:
            safety_config = SafetyConfig.from_mapping(self.config.safety)
            lower, upper = self.robot.joint_limits
            safety_config.validate_against(
                home=state.ee,
                home_joints=np.asarray(self.robot.home_joints).tolist(),
                robot_joint_min=np.asarray(lower).tolist(),
                robot_joint_max=np.asarray(upper).tolist(),
            )
        except SafetyConfigError as exc:
            raise ConfigError(str(exc), field=exc.field or "safety") from exc
        # With the arm's IK the shield checks an end-effector command's joints before sending it;
        # without, it sees only the measured joints (see Robot.inverse_kinematics).
        ik = getattr(self.robot, "inverse_kinematics", None)
        if ik is None:
            logger.info(
                "Robot %s offers no IK: joint limits of ee commands are checked on measured joints",
                self.config.robot.kind,
            )
        # With its FK the shield checks each joint command's end-effector position against the
        # workspace and keep-out zones; without, _accept_spec refuses joint policies with zones.
        shield = Shield(safety_config, ik=ik, fk=getattr(self.robot, "forward_kinematics", None))
        shield.reset(measured_from_state(state))
        self._recorder.safety_limits(safety_config.to_dict())
        return shield

    async def _main(self) -> None:
        assert self.control is not None
        stopping = asyncio.Event()  # control, sensors and metrics end on it
        self.stats.started_s = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            control = tg.create_task(self.control.run(stopping), name="control")
            senders = [
                tg.create_task(self._stream(), name="stream"),
                tg.create_task(self._schedule(), name="scheduler"),
            ]
            others = [
                tg.create_task(self._sensors.watch(stopping), name="sensors"),
                tg.create_task(self._serve_metrics(stopping), name="metrics"),
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

    async def _wait_for_stop(self, control: asyncio.Task[None]) -> None:
        """Until a stop is asked for, the duration is up, control ends, or the e-stop latched: a
        latched run ends (controlled stop, summary) rather than holding until ``duration_s``."""
        assert self.control is not None
        stop = asyncio.create_task(self._stop.wait())
        latched = asyncio.create_task(self.control.estop_latched.wait())
        try:
            await asyncio.wait(
                {stop, control, latched}, timeout=self.config.duration_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stop.cancel()
            latched.cancel()
        if self.control.estopped:
            self.stats.end("estop", self.stats.estop_reason)
            logger.warning("Ending the run on the e-stop (%s)", self.stats.estop_reason)
            await self._write_run_file("estopped", self.stats.estop_reason)
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
        estopped = self.control is not None and self.control.estopped
        if not estopped:
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
            if self.control is not None and self.control.estopped:
                await self._write_run_file("estopped", self.stats.estop_reason)
            else:
                await asyncio.to_thread(self._run_file.remove)

    # --- stream ---------------------------------------------------------------------------------
    async def _stream(self) -> None:
        """Connect (retrying with backoff), then read responses until the stream breaks; repeat."""
        server = self.config.server
        backoff = Backoff(
            server.backoff_initial_s, server.backoff_factor, server.backoff_max_s, server.backoff_jitter
        )
        attempt = 0
        client = self._client
        while True:
            attempt += 1
            try:
                spec = await client.connect()
            except AgentError as exc:
                if isinstance(exc, SpecMismatch | NotAPolicyServer):  # waiting would not fix either
                    raise
                delay = backoff.next()
                logger.warning(
                    "Waiting for inference server at %s (attempt %d, next in %.1f s): %s",
                    server.address,
                    attempt,
                    delay,
                    exc,
                )
                self._recorder.event("waiting", str(exc), attempt=attempt)
                await asyncio.sleep(delay)
                continue
            await self._accept_spec(spec)
            if self.link.ever_up:
                self.stats.reconnects += 1
                self.metrics.reconnects.inc()
                self._recorder.event("reconnect", f"attempt {attempt}")
                logger.info("Reconnected to inference server at %s", server.address)
            else:
                self._recorder.event("connect", server.address, policy=spec.name, version=spec.version)
                logger.info(
                    "Connected to inference server at %s: policy %s %s (%s, %s), %s, chunk %d x %g s",
                    server.address,
                    spec.name,
                    spec.version,
                    spec.backend,
                    spec.device,
                    spec.action_space,
                    spec.chunk_length,
                    spec.dt_s,
                )
            self.link.up = self.link.ever_up = True
            self.link.in_flight_since = None
            self._pending.clear()
            self.connected.set()
            attempt = 0
            backoff.reset()
            try:
                while True:
                    self._on_chunk(await client.receive())
            except AgentError as exc:
                if isinstance(exc, SpecMismatch):
                    raise
                self.link.up = False
                self.link.in_flight_since = None
                self._recorder.event("stream_down", str(exc))
                logger.warning("Stream to the inference server lost (%s); reconnecting", exc)
                await client.close()

    async def _accept_spec(self, spec: pb.PolicySpec) -> None:
        """Check that ``spec`` fits the robot and cameras; raise :class:`SpecMismatch` if not."""
        assert self.control is not None and self.robot is not None
        address = self.config.server.address
        previous = self.spec
        state = self.control.latest_state
        assert state is not None
        space = fit_spec(
            spec, num_joints=len(self.robot.home_joints), reference=state.ee.quaternion, address=address
        )
        if previous is None or previous.action_space != spec.action_space:
            require_forward_kinematics(
                space, self.robot, self.config.robot.kind, self._shield.config, address
            )
        if previous is not None:
            self._check_policy_change(previous, spec)
        for cam in spec.cameras:
            if cam.name not in self._sensors.names:
                if cam.name not in self.config.cameras and previous is not None:
                    raise SpecMismatch(
                        f"policy at {address} now asks for camera {cam.name!r}, which this agent does not have "
                        f"(it has {', '.join(self._sensors.names) or 'none'})"
                    )
                cam_config = self.config.camera_for(cam.name, cam.height, cam.width)
                camera = create_camera(cam_config, self.robot)
                await asyncio.to_thread(self._sensors.add, cam.name, camera)
                logger.info(
                    "Camera %s ready (%s, %dx%d)",
                    cam.name,
                    cam_config.kind,
                    cam_config.width,
                    cam_config.height,
                )
        unused = set(self.config.cameras) - {c.name for c in spec.cameras}
        if unused and previous is None:
            logger.warning("Configured camera(s) %s are not used by the policy", ", ".join(sorted(unused)))
        self._camera_specs = {cam.name: cam for cam in spec.cameras}
        timeout_ms = self.config.server.request_timeout_ms
        self._frame_age_bounds = {
            cam.name: self.config.camera_for(cam.name, cam.height, cam.width).max_age_s(timeout_ms)
            for cam in spec.cameras
        }
        if previous is None or (previous.action_space, previous.action_dim) != (
            spec.action_space,
            spec.action_dim,
        ):
            if previous is not None:
                logger.warning(
                    "The policy's action space changed to %s; restarting the trajectory", spec.action_space
                )
            self.control.configure(space, self._make_trajectory(space))
        if previous is None or tuple(previous.state_names) != tuple(spec.state_names):
            self._state_builder = StateVectorBuilder(spec.state_names)
        self.spec = spec
        self.stats.policy = policy_identity(spec)

    def _check_policy_change(self, previous: pb.PolicySpec, spec: pb.PolicySpec) -> None:
        """After a reconnect: another name, version or action space is another policy. It is an
        event in the recording either way; unless ``server.allow_policy_change``, the run stops
        with :class:`SpecMismatch` naming both."""
        old, new = policy_identity(previous), policy_identity(spec)
        keys = ("name", "version", "action_space", "action_dim")
        if all(old[k] == new[k] for k in keys):
            return
        allowed = self.config.server.allow_policy_change
        self._recorder.event("policy_change", "allowed" if allowed else "refused", previous=old, policy=new)
        text = (
            f"policy at {self.config.server.address} changed on reconnect: "
            f"was {describe_policy(old)}, now {describe_policy(new)}"
        )
        if not allowed:
            raise SpecMismatch(
                f"{text}; the run stops (set [server] allow_policy_change = true to accept it)"
            )
        logger.warning("%s; accepted (server.allow_policy_change)", text)

    def _make_trajectory(self, space: ActionSpace) -> Trajectory:
        c = self.config.control
        if space.is_ee:
            groups = [c.ruckig_translation] * 3 + [c.ruckig_rotation] * 3 + [c.ruckig_gripper]
        else:
            groups = [c.ruckig_joint] * space.num_joints + [c.ruckig_gripper]
        limits = tuple(np.array([g[i] for g in groups]) for i in range(3))
        return Trajectory(
            blend_mode=c.blend,
            crossfade_steps=c.crossfade_steps,
            ensemble_decay=c.ensemble_decay,
            interpolation=c.interpolation,
            control_dt=1.0 / c.rate_hz,
            ruckig_limits=limits,  # type: ignore[arg-type]
            unwrap=space.unwrap_waypoints,
        )

    def _on_chunk(self, chunk: Chunk) -> None:
        control = self.control
        assert control is not None
        capture_state = self._pending.pop(chunk.request_id, None)
        if capture_state is None:
            logger.debug("Response to request %d of an earlier stream ignored", chunk.request_id)
            return
        if not self._pending:
            self.link.in_flight_since = None
        self.stats.server_status[chunk.status] += 1
        if chunk.status != "OK":
            if chunk.status == "LATE":
                logger.debug("Request %d answered LATE: %s", chunk.request_id, chunk.message)
                return
            # INVALID: this agent's request was refused; ERROR (or a status this agent does not
            # know): the server failed. Either way asking again at once would only repeat it.
            kind = "invalid_request" if chunk.status == "INVALID" else "server_error"
            delay = self._back_off()
            self._reject(chunk, kind, f"{chunk.status}: {chunk.message} (next request in {delay:.2f} s)")
            return
        if chunk.problem is not None or chunk.actions is None:
            # An answer this agent refuses (NaN, wrong shape, unparseable) is an error too: a
            # server sending one on every request got ~96 requests/s, as ERROR used to.
            kind, _, detail = (chunk.problem or "invalid_chunk: no actions").partition(": ")
            delay = self._back_off()
            self._reject(chunk, kind, f"{detail} (next request in {delay:.2f} s)")
            return
        # Our own record of the capture time, not the server's echo: the server is never trusted
        # with the timing of what the arm does.
        capture_time = capture_state.time_s
        rtt = chunk.received_s - capture_time
        self.stats.roundtrips.append(rtt)
        self.metrics.roundtrip_seconds.observe(rtt)
        assert (
            self._scheduler is not None
            and control.action_space is not None
            and control.trajectory is not None
        )
        self._scheduler.rtt.add(rtt)
        now = time.monotonic()
        held = control.latest_state or capture_state
        try:
            # Finite and of the right shape, yet it may still not be plannable (a 1e300 m step
            # overflows the conversion): the chunk is refused, the stream and the arm carry on.
            waypoints = control.action_space.to_waypoints(chunk.actions, capture_state)
            result = control.trajectory.add_chunk(
                waypoints, capture_time, chunk.dt_s, now, start=control.action_space.waypoint_of(held)
            )
        except Exception as exc:
            logger.debug("Chunk %d could not be planned", chunk.request_id, exc_info=True)
            delay = self._back_off()
            self._reject(
                chunk, "invalid_chunk", f"could not be planned: {exc!r} (next request in {delay:.2f} s)"
            )
            return
        # A usable chunk: the backoff starts afresh once the arm has moved on it (a chunk that
        # passes intake can still fault when the control loop samples it, e.g. under Ruckig).
        self._backoff_resets_on_motion = True
        self._next_request_s = 0.0
        self.stats.stale_actions_dropped += result.dropped
        self.metrics.stale_actions_dropped.inc(result.dropped)
        if result.kept == 0:
            # A deadline miss. Holding, the hold is relabelled 'late' (counted as it is); a miss
            # while the old plan still runs, or after the hold says 'late', is counted here.
            if self.link.problem == "late" or not control.holding:
                self.stats.deadline_misses += 1
                self.metrics.deadline_miss.inc()
            if control.holding:
                self.link.problem = "late"
            logger.warning(
                "Chunk %d arrived after all its actions were due (%.0f ms round trip)",
                chunk.request_id,
                rtt * 1000,
            )
            return
        if self.link.problem is not None:
            logger.info("Good chunk again after %s", self.link.problem)
        self.link.problem = None
        self.link.chunks += 1
        self.stats.chunks += 1
        if self.stats.first_chunk_s is None:
            self.stats.first_chunk_s = now
            logger.info("First chunk received (%.0f ms round trip)", rtt * 1000)

    def _reject(self, chunk: Chunk, kind: str, detail: str) -> None:
        self.stats.rejected_chunks[kind] += 1
        self._recorder.event("chunk_rejected", kind, request_id=chunk.request_id, detail=detail)
        if self.link.problem != kind:
            logger.warning("Chunk %d rejected (%s): %s", chunk.request_id, kind, detail)
        self.link.problem = kind

    # --- scheduler ------------------------------------------------------------------------------
    async def _schedule(self) -> None:
        """At each control tick, decide whether to send the next observation, and send it."""
        control, scheduler, client = self.control, self._scheduler, self._client
        assert control is not None and scheduler is not None
        while True:
            await control.tick_event.wait()
            control.tick_event.clear()
            state = control.latest_state
            spec = self.spec
            if (
                not self.link.up
                or spec is None
                or state is None
                or control.estopped
                or control.action_space is None
            ):
                continue
            now = time.monotonic()
            self._follow_plan_faults(now, control)
            if now < self._next_request_s:  # backing off after an INVALID / ERROR answer
                continue
            plan_end = control.trajectory.end_time if control.trajectory is not None else None
            if not scheduler.should_send(now, plan_end, self.link.in_flight_since):
                continue
            frames = self._sensors.latest()
            if any(frames.get(name) is None for name in self._camera_specs):
                continue
            if not self._observation_fresh(now, state, frames):
                continue
            delay_steps = scheduler.delay_steps(spec.dt_s)
            self.metrics.inference_delay_steps.set(delay_steps)
            self.link.in_flight_since = now
            scheduler.sent(now)
            try:
                # ee_r* continuous from one observation to the next, and prev_actions continuous
                # with it (issue 10, kind 5: a tool pointing down sits on the rotation's pi wrap).
                vector = self._state_builder.build(state)
                prev_actions = None
                if control.trajectory is not None:
                    _, rest = control.trajectory.remaining(now)
                    if len(rest):
                        prev_actions = control.action_space.to_actions(
                            rest, state, near_rotvec=self._state_builder.rotvec
                        )
                request = await asyncio.to_thread(
                    client.build_request,
                    frames,
                    vector,
                    self._instruction,
                    state.time_s,
                    prev_actions,
                    delay_steps,
                )
                request_id = client.stamp(request)
                self._pending[request_id] = state  # before the write: the answer may beat it back
                for old in [rid for rid in self._pending if rid < request_id - 16]:
                    del self._pending[old]
                await client.send(request)
            except AgentError as exc:
                if isinstance(exc, SpecMismatch):  # no request can fit the server's limits: fatal
                    raise
                logger.debug("Sending an observation failed: %s", exc)
                self.link.in_flight_since = None
                continue
            except Exception as exc:
                # Building the request failed on this agent's own data (a state or frame the codec
                # refuses, a plan that cannot be expressed as prev_actions): hold, back off, go on.
                self.link.in_flight_since = None
                delay = self._back_off()
                if self.link.problem != "invalid_request":
                    logger.error(
                        "Building the request failed (next try in %.2f s): %r",
                        delay,
                        exc,
                        exc_info=logger.isEnabledFor(logging.DEBUG),
                    )
                    self._recorder.event("request_failed", repr(exc))
                self.link.problem = "invalid_request"
                continue

    def _back_off(self, now: float | None = None) -> float:
        """Hold the next request back by the answer backoff's next delay (seconds, returned)."""
        delay = self._answer_backoff.next()
        self._next_request_s = (time.monotonic() if now is None else now) + delay
        return delay

    def _follow_plan_faults(self, now: float, control: ControlLoop) -> None:
        """Back off when the control loop dropped a plan that raised (a chunk Ruckig cannot
        follow); reset the backoff once the arm has moved on a chunk."""
        if self.link.plan_faults != self._plan_faults_seen:
            self._plan_faults_seen = self.link.plan_faults
            self._backoff_resets_on_motion = False
            delay = self._back_off(now)
            logger.debug("Plan dropped by the control loop; next request in %.2f s", delay)
        elif self._backoff_resets_on_motion and not control.holding:
            self._backoff_resets_on_motion = False
            self._answer_backoff.reset()

    def _observation_fresh(self, now: float, state: RobotState, frames: Mapping[str, Frame | None]) -> bool:
        """Whether every part of the observation is young enough to act on.

        A frame older than its camera's bound (``cameras.NAME.max_age_ms``, default three frame
        periods) or a robot state older than the request budget means a sensor stopped delivering:
        nothing is sent, so the current plan (computed on fresh data) runs out and the arm holds
        with ``stale_observation``. Logged and recorded once per episode of staleness.
        """
        problem = None
        state_bound = self.config.server.request_timeout_ms / 1000
        if now - state.time_s > state_bound:
            problem = (
                f"robot state is {1000 * (now - state.time_s):.0f} ms old (bound {1000 * state_bound:.0f} ms)"
            )
        else:
            for name, bound in self._frame_age_bounds.items():
                frame = frames.get(name)
                age = now - frame.time_s if frame is not None else math.inf
                if age > bound:
                    problem = (
                        f"camera {name!r} frame is {1000 * age:.0f} ms old (bound {1000 * bound:.0f} ms)"
                    )
                    break
        if problem is None:
            if self._stale is not None:
                logger.info("Observation fresh again after: %s", self._stale)
                self._recorder.event("observation_fresh", self._stale)
                self._stale = None
                if self.link.problem == "stale_observation":
                    self.link.problem = None
            return True
        if self._stale is None:
            logger.warning("Not sending observations: %s", problem)
            self._recorder.event("stale_observation", problem)
            self.stats.stale_observations += 1
        self._stale = problem
        self.link.problem = "stale_observation"  # the hold's label once the plan in hand runs out
        return False

    # --- metrics --------------------------------------------------------------------------------
    async def _serve_metrics(self, stopping: asyncio.Event) -> None:
        port = self.config.metrics_port
        if port is None:
            await stopping.wait()
            return
        host = self.config.metrics_host
        try:  # port 0: any free port, the one bound is logged and kept in self.metrics_port
            server, thread = start_http_server(port, addr=host, registry=self.metrics.registry)
        except OSError as exc:
            import errno
            import socket

            # A name that does not resolve, or an address of another machine, is the host's fault:
            # '--metrics-host nonsense' used to be blamed on metrics_port.
            if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
                field, hint = "metrics_host", "an address of this machine, 0.0.0.0 for every interface"
            else:
                field, hint = "metrics_port", "another port, 0 for any free one, or off"
            raise ConfigError(
                f"metrics endpoint {host}:{port}: cannot bind: {exc.strerror or exc} ({field}: {hint})",
                field=field,
            ) from exc
        self.metrics_port = server.server_port
        logger.info("Metrics on http://%s:%d/metrics", host, self.metrics_port)
        try:
            await stopping.wait()
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=1.0)

    # --- signals --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _capture_signals(self, install: bool) -> Iterator[None]:
        # Always signal.signal (not loop.add_signal_handler) so the previous handlers come back.
        if not install or threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
        previous = {sig: signal.signal(sig, self._handle_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _handle_signal(self, sig: int, frame: Any) -> None:
        if sig == signal.SIGUSR1:
            logger.warning("SIGUSR1: operator e-stop")
            self.trigger_estop("operator signal SIGUSR1")
            return
        self.stats.end("signal", signal.Signals(sig).name)
        force = sig == signal.SIGINT and self._stop.is_set()
        if force:
            logger.warning("Second SIGINT: skipping graceful shutdown (the arm is still stopped)")
        self.request_stop(force=force)


def fit_spec(spec: pb.PolicySpec, *, num_joints: int, reference: np.ndarray, address: str) -> ActionSpace:
    """The action space for ``spec`` on an arm of ``num_joints`` joints; raise
    :class:`SpecMismatch` naming what does not fit (state entries, action space, dimensions)."""
    names = list(spec.state_names)
    if len(names) != spec.state_dim:
        raise SpecMismatch(
            f"policy at {address}: state_dim is {spec.state_dim} but it names {len(names)} state entries "
            f"(state_names {names}); the agent fills the state by name from: {', '.join(STATE_NAMES)}"
        )
    for name in names:
        if name not in STATE_NAMES or (name.startswith("joint_") and int(name[6:]) >= num_joints):
            raise SpecMismatch(f"policy at {address}: state entry {name!r} is not one this robot can fill")
    if spec.dt_s <= 0 or spec.chunk_length < 1:
        raise SpecMismatch(
            f"policy at {address}: chunk_length {spec.chunk_length}, dt_s {spec.dt_s} are not usable"
        )
    try:
        return ActionSpace(spec.action_space, spec.action_dim, num_joints, reference=reference)
    except SpecMismatch as exc:
        raise SpecMismatch(f"policy at {address}: {exc}") from None


def require_forward_kinematics(
    space: ActionSpace, robot: Robot, robot_kind: str, safety: SafetyConfig, address: str
) -> None:
    """Refuse a joint-space policy the shield cannot keep out of the keep-out zones.

    The shield checks a joint command's end-effector position through the arm's forward
    kinematics (:attr:`Robot.forward_kinematics`, issue 10 kind 8). On an arm without one and
    with ``safety.keep_out`` zones, raise :class:`SpecMismatch` naming the robot; with only the
    workspace box, log a warning (the box is always configured, so refusing would bar every
    joint-space policy from such an arm): joint commands are then bounded by the joint band only.
    """
    if space.is_ee or getattr(robot, "forward_kinematics", None) is not None:
        return
    if safety.keep_out:
        names = ", ".join(repr(z.name or z.kind) for z in safety.keep_out)
        raise SpecMismatch(
            f"policy at {address}: its action space {space.name} commands joints, and robot "
            f"{robot_kind!r} offers no forward kinematics, so the safety shield cannot keep those "
            f"commands out of safety.keep_out ({names}); serve an end-effector policy, or run "
            "without keep-out zones"
        )
    logger.warning(
        "Robot %r offers no forward kinematics: the joint commands of a %s policy are checked "
        "against the joint limits only, not against safety.workspace",
        robot_kind,
        space.name,
    )


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

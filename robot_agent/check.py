"""``robot-agent check``: a preflight before a real run (the seed's DeploymentValidator).

Checks, in order, and reports each as PASS / FAIL / CHECK (CHECK: a person must do it):

- the config loads and the ``[safety]`` limits are valid;
- the robot connects, its state is readable, it reports no fault, and the safety limits fit it
  where it stands and where it starts from;
- each configured camera delivers a frame (with none configured: the ``default_camera`` kind has
  a device);
- the server answers, its spec fits the robot, the shield and the cameras, and, once its health
  says SERVING (waiting up to :data:`WARMUP_WAIT_S` for its warm-up), the p95 round trip of a few
  real requests fits in what a chunk lasts;
- the e-stop: tested by hand.

Every step but the last is the agent's own (``startup.py``): a config the check passes, the agent
starts with, and the other way round. The arm is never commanded. Exit status 1 when anything
FAILs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_agent import startup
from robot_agent.action_space import state_vector
from robot_agent.cameras.base import Frame
from robot_agent.cameras.capture import Sensors
from robot_agent.config import AgentConfig, CameraConfig
from robot_agent.drivers import create_robot
from robot_agent.drivers.base import Robot, RobotState
from robot_agent.errors import AgentError
from robot_agent.policy_client import PolicyClient
from robot_agent.security import ChannelSecurity
from safety import SafetyConfig
from vla.v1 import policy_pb2 as pb

__all__ = ["CheckResult", "format_report", "preflight", "run_check"]

Add = Callable[[str, str, str], None]

#: How long the latency check waits for the server's health to say SERVING (s): a TensorRT
#: engine's load and warm-up take a minute or more on a cold GPU box.
WARMUP_WAIT_S = 120.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # PASS | FAIL | CHECK | SKIP
    detail: str


async def preflight(config: AgentConfig, *, requests: int = 10) -> list[CheckResult]:
    """Run every check; never raises for a failing check, it reports it."""
    results: list[CheckResult] = []

    def add(name: str, status: str, detail: str) -> None:
        results.append(CheckResult(name, status, detail))

    kind = config.robot.kind
    safety: SafetyConfig | None = None
    try:
        safety = startup.load_safety(config.safety)
        add("config", "PASS", f"robot {kind}, {len(config.cameras)} camera(s), {config.control.rate_hz:g} Hz")
    except AgentError as exc:
        add("config", "FAIL", str(exc))

    robot: Robot | None = None
    state: RobotState | None = None
    sensors = Sensors()
    frames: dict[str, Frame] = {}
    try:
        try:
            robot = create_robot(config.robot)
            await startup.connect_robot(robot, config.robot, asyncio.to_thread)
            state = await startup.read_first_state(robot, kind, asyncio.to_thread)
        except Exception as exc:
            add("robot", "FAIL", f"{kind}: {type(exc).__name__}: {exc}")
        if state is not None:
            try:
                startup.refuse_fault(state, kind)
                add("robot", "PASS", f"{kind} connected, ee at {np.round(state.ee.position, 3).tolist()}")
            except AgentError as exc:
                add("robot", "FAIL", str(exc))
        if robot is not None and state is not None and safety is not None:
            try:
                startup.validate_safety(safety, robot, state)
                add("robot in limits", "PASS", "the current pose is inside the safety limits")
            except AgentError as exc:
                add("robot in limits", "FAIL", str(exc))

        async def grab(name: str, cam_config: CameraConfig) -> None:
            assert robot is not None
            try:
                await startup.open_camera(name, cam_config, robot, sensors)
                frame = sensors.latest()[name]
                assert frame is not None  # Sensors.add returns once the first frame is there
                frames[name] = frame
                h, w = frame.rgb.shape[:2]
                add(f"camera {name}", "PASS", f"{cam_config.kind}, frame {w}x{h}")
            except Exception as exc:
                add(f"camera {name}", "FAIL", f"{cam_config.kind}: {type(exc).__name__}: {exc}")

        if robot is not None:
            for name, cam_config in config.cameras.items():
                await grab(name, cam_config)
            if not config.cameras:
                try:
                    await startup.probe_default_camera(config.default_camera)
                    add(
                        "default camera",
                        "PASS",
                        f"{config.default_camera}: a device is there (opened once the policy names its cameras)",
                    )
                except AgentError as exc:
                    add("default camera", "FAIL", str(exc))

        client = PolicyClient(
            config.server.address,
            request_timeout_ms=config.server.request_timeout_ms,
            connect_timeout_s=config.server.connect_timeout_s,
            jpeg_quality=config.server.jpeg_quality,
            security=ChannelSecurity.from_config(config.server),
        )
        spec: pb.PolicySpec | None
        try:
            spec = await client.connect()
        except AgentError as exc:
            add("server", "FAIL", str(exc))
            spec = None
        if spec is not None:
            add(
                "server",
                "PASS",
                f"{spec.name} {spec.version} ({spec.backend}, {spec.device}, {spec.precision})",
            )
            if robot is not None and state is not None:
                try:
                    _fit(spec, robot, state, safety, config)
                    cameras = startup.reconcile_cameras(
                        spec, previous=None, config=config, opened=list(frames)
                    )
                    for name, cam_config in cameras.to_open.items():
                        await grab(name, cam_config)
                    missing = [c.name for c in spec.cameras if c.name not in frames]
                    if missing:
                        add(
                            "spec fits",
                            "FAIL",
                            f"no frame from camera(s) {', '.join(missing)} the policy asks for",
                        )
                    else:
                        add(
                            "spec fits",
                            "PASS",
                            f"{spec.action_space} [{spec.chunk_length} x {spec.action_dim}] every {spec.dt_s:g} s",
                        )
                        await _latency(client, spec, state, frames, config, requests, add)
                except AgentError as exc:
                    add("spec fits", "FAIL", str(exc))
        await client.close()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(sensors.close)
        if robot is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(robot.close)
    add(
        "e-stop",
        "CHECK",
        "test by hand: press the arm's e-stop; and `robot-agent estop` latches a running agent's (and confirms it)",
    )
    return results


def _fit(
    spec: pb.PolicySpec, robot: Robot, state: RobotState, safety: SafetyConfig | None, config: AgentConfig
) -> None:
    """The agent's fit of a first spec (``startup.fit_policy``); with an invalid ``[safety]``
    (already a FAIL) only the part that needs no limits (``startup.fit_spec``)."""
    address = config.server.address
    if safety is None:
        startup.fit_spec(
            spec, num_joints=len(robot.home_joints), reference=state.ee.quaternion, address=address
        )
        return
    startup.fit_policy(
        spec,
        previous=None,
        robot=robot,
        robot_kind=config.robot.kind,
        safety=safety,
        reference=state.ee.quaternion,
        address=address,
    )


async def _latency(
    client: PolicyClient,
    spec: pb.PolicySpec,
    state: RobotState,
    frames: dict[str, Frame],
    config: AgentConfig,
    requests: int,
    add: Add,
) -> None:
    rtts = []
    vector = state_vector(state, spec.state_names)
    # A server answers the spec as soon as it binds, and health says SERVING once its model is
    # warm: a request before that waits behind the warm-up and comes back LATE.
    if not await client.wait_until_serving(WARMUP_WAIT_S):
        add(
            "latency",
            "FAIL",
            f"server health still NOT_SERVING after {WARMUP_WAIT_S:g} s (loading or warming up its model?)",
        )
        return
    try:
        for _ in range(requests):
            request = client.build_request(frames, vector, config.instruction, time.monotonic())
            client.stamp(request)
            start = time.monotonic()
            await client.send(request)
            chunk = await asyncio.wait_for(
                client.receive(), timeout=config.server.request_timeout_ms / 1000 + 5
            )
            if chunk.status != "OK" or chunk.problem:
                add(
                    "latency",
                    "FAIL",
                    f"request {chunk.request_id}: {chunk.status} {chunk.problem or chunk.message}",
                )
                return
            rtts.append(time.monotonic() - start)
    except (AgentError, TimeoutError) as exc:
        add("latency", "FAIL", f"{type(exc).__name__}: {exc}")
        return
    steady = rtts[1:] if len(rtts) > 1 else rtts  # the first call is not the steady state
    p95 = float(np.quantile(steady, 0.95))
    budget = spec.chunk_length * spec.dt_s
    detail = f"round trip p95 {p95 * 1000:.1f} ms over {len(steady)} requests; a chunk lasts {budget * 1000:.0f} ms"
    add("latency", "PASS" if p95 < budget else "FAIL", detail)


def format_report(results: list[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    return "\n".join(f"{r.status:<5} {r.name:<{width}}  {r.detail}" for r in results)


def run_check(config: AgentConfig) -> int:
    """Print the report; 1 when anything failed."""
    results = asyncio.run(preflight(config))
    print(format_report(results), flush=True)
    failed = [r for r in results if r.status == "FAIL"]
    if failed:
        print(f"{len(failed)} check(s) failed", file=sys.stderr, flush=True)
        return 1
    return 0

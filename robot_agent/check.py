"""``robot-agent check``: a preflight before a real run (the seed's DeploymentValidator).

Checks, in order, and reports each as PASS / FAIL / CHECK (CHECK: a person must do it):

- the config loads and the ``[safety]`` limits are valid;
- the robot connects, its state is readable, it reports no fault, and it stands inside the safety
  limits;
- each configured camera delivers a frame;
- the server answers, its spec fits the robot and the cameras, and the p95 round trip of a few
  real requests fits in what a chunk lasts;
- the e-stop: tested by hand.

The arm is never commanded. Exit status 1 when anything FAILs.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_agent.action_space import state_vector
from robot_agent.agent import fit_spec
from robot_agent.cameras import create_camera
from robot_agent.config import AgentConfig
from robot_agent.drivers import create_robot
from robot_agent.errors import AgentError
from robot_agent.policy_client import PolicyClient
from robot_agent.security import ChannelSecurity
from safety import SafetyConfig
from safety.errors import SafetyConfigError

__all__ = ["CheckResult", "format_report", "preflight", "run_check"]


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

    try:
        safety = SafetyConfig.from_mapping(config.safety)
        add(
            "config",
            "PASS",
            f"robot {config.robot.kind}, {len(config.cameras)} camera(s), {config.control.rate_hz:g} Hz",
        )
    except SafetyConfigError as exc:
        add("config", "FAIL", str(exc))
        safety = None

    robot: Any = None
    state = None
    cameras: dict[str, Any] = {}
    frames: dict[str, Any] = {}
    try:
        try:
            robot = create_robot(config.robot)
            await asyncio.to_thread(robot.connect)
            state = await asyncio.to_thread(robot.read_state)
            if state.fault:
                add("robot", "FAIL", f"{config.robot.kind} reports a fault: {state.fault}")
            else:
                add(
                    "robot",
                    "PASS",
                    f"{config.robot.kind} connected, ee at {np.round(state.ee.position, 3).tolist()}",
                )
        except Exception as exc:
            add("robot", "FAIL", f"{config.robot.kind}: {type(exc).__name__}: {exc}")
        if state is not None and safety is not None:
            try:
                lower, upper = robot.joint_limits
                safety.validate_against(
                    home=state.ee,
                    home_joints=state.joint_positions,
                    robot_joint_min=lower,
                    robot_joint_max=upper,
                )
                add("robot in limits", "PASS", "the current pose is inside the safety limits")
            except SafetyConfigError as exc:
                add("robot in limits", "FAIL", str(exc))

        async def grab(name: str, cam_config: Any) -> None:
            try:
                camera = create_camera(cam_config, robot)
                cameras[name] = camera
                await asyncio.to_thread(camera.open)
                frame = await asyncio.to_thread(camera.read)
                frames[name] = frame
                h, w = frame.rgb.shape[:2]
                add(f"camera {name}", "PASS", f"{cam_config.kind}, frame {w}x{h}")
            except Exception as exc:
                add(f"camera {name}", "FAIL", f"{cam_config.kind}: {type(exc).__name__}: {exc}")

        if robot is not None:
            for name, cam_config in config.cameras.items():
                await grab(name, cam_config)

        client = PolicyClient(
            config.server.address,
            request_timeout_ms=config.server.request_timeout_ms,
            connect_timeout_s=config.server.connect_timeout_s,
            jpeg_quality=config.server.jpeg_quality,
            security=ChannelSecurity.from_config(config.server),
        )
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
                    fit_spec(
                        spec,
                        num_joints=len(robot.home_joints),
                        reference=state.ee.quaternion,
                        address=client.address,
                    )
                    for cam in spec.cameras:
                        if cam.name not in frames:
                            await grab(cam.name, config.camera_for(cam.name, cam.height, cam.width))
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
        for camera in cameras.values():
            with contextlib.suppress(Exception):
                await asyncio.to_thread(camera.close)
        if robot is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(robot.close)
    add(
        "e-stop",
        "CHECK",
        "test by hand: press the arm's e-stop; and `robot-agent estop` latches a running agent's (and confirms it)",
    )
    return results


async def _latency(client: PolicyClient, spec: Any, state: Any, frames: dict[str, Any], config: AgentConfig,
                   requests: int, add: Any) -> None:  # fmt: skip
    rtts = []
    vector = state_vector(state, spec.state_names)
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

"""Stale sensor data never drives the arm (issue 10, kind 3), and refused or failed requests are
not hammered (kind 4): real agent, simulated arm, a server on loopback."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from robot_agent import startup
from robot_agent.agent import Agent
from robot_agent.cameras.base import Camera, Frame
from robot_agent.config import CameraConfig
from robot_agent.errors import CameraError
from robot_agent.policy_client import PolicyClient
from tests.e2e._agent_helpers import (
    BACKOFF,
    agent_config,
    assert_backed_off,
    bundle,
    read_jsonl,
    running,
    server_on,
)
from tests.e2e._rogue_server import RogueServicer, ok_answer, rogue_server, still_actions
from tests.utils import poll_until
from vla.v1 import policy_pb2 as pb


class FreezableCamera(Camera):
    """A camera whose frames stop arriving while ``frozen`` is set: each read then waits
    ``timeout_s`` and fails, as RealSense's ``wait_for_frames`` does ("Frame didn't arrive")."""

    def __init__(self, inner: Camera, timeout_s: float = 0.3) -> None:
        self.inner = inner
        self.name = inner.name
        self.frozen = threading.Event()
        self.thawed = threading.Event()
        self.thawed.set()
        self.timeout_s = timeout_s

    def open(self) -> None:
        self.inner.open()

    def read(self) -> Frame:
        if self.frozen.is_set():
            self.thawed.wait(self.timeout_s)
            if self.frozen.is_set():
                raise CameraError(f"Frame didn't arrive within {int(self.timeout_s * 1000)}")
        return self.inner.read()

    def freeze(self) -> None:
        self.thawed.clear()
        self.frozen.set()

    def thaw(self) -> None:
        self.frozen.clear()
        self.thawed.set()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def cameras(monkeypatch: pytest.MonkeyPatch) -> list[FreezableCamera]:
    """Every camera the agent creates is wrapped in a FreezableCamera (listed here)."""
    made: list[FreezableCamera] = []
    real_create = startup.create_camera

    def create(config: CameraConfig, robot: Any) -> Camera:
        camera = FreezableCamera(real_create(config, robot))
        made.append(camera)
        return camera

    monkeypatch.setattr(startup, "create_camera", create)
    return made


@pytest.fixture
def frame_ages(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The age (s) of the oldest frame of every request the agent builds."""
    ages: list[float] = []
    real_build = PolicyClient.build_request

    def build(self: PolicyClient, frames: Any, *args: Any, **kwargs: Any) -> pb.PredictRequest:
        now = time.monotonic()
        ages.append(max(now - frame.time_s for frame in frames.values()))
        return real_build(self, frames, *args, **kwargs)

    monkeypatch.setattr(PolicyClient, "build_request", build)
    return ages


async def test_a_frozen_camera_stops_requests_holds_stale_observation_and_resumes(
    tmp_path: Path, cameras: list[FreezableCamera], frame_ages: list[float]
) -> None:
    record = tmp_path / "episode"
    policy = bundle(tmp_path / "circle", "Circle", chunk_length=10, dt_s=0.05)
    async with server_on(policy) as server:
        agent = Agent(agent_config(server.port, **{"record.dir": str(record)}))
        async with running(agent):
            await poll_until(lambda: agent.status().chunks >= 3 and not agent.status().holding, timeout=10)
            (camera,) = cameras
            camera.freeze()
            await poll_until(lambda: agent.status().hold_reason == "stale_observation", timeout=5)
            requests_when_held = len(frame_ages)
            ticks = agent.status().ticks
            await poll_until(lambda: agent.status().ticks > ticks + 30, timeout=5)
            assert len(frame_ages) == requests_when_held  # nothing asked on the frozen frame
            assert agent.status().holding and agent.status().hold_reason == "stale_observation"
            camera.thaw()
            chunks = agent.status().chunks
            await poll_until(lambda: agent.status().chunks > chunks and not agent.status().holding, timeout=5)
    bound = 3 / 30  # three frame periods of the 30 fps default
    slack = 0.05  # between the check and the build (a thread hop)
    assert max(frame_ages) < bound + slack, sorted(frame_ages)[-5:]
    assert agent.summary["holds"]["stale_observation"] == 1
    assert agent.summary["stale_observations"] == 1
    events = [e["event"] for e in read_jsonl(record / "events.jsonl")]
    assert events.index("stale_observation") < events.index("observation_fresh")


async def test_a_camera_bound_from_config_is_used(
    tmp_path: Path, cameras: list[FreezableCamera], frame_ages: list[float]
) -> None:
    """``cameras.NAME.max_age_ms`` replaces the three-frame default."""
    policy = bundle(tmp_path / "still", "Still")
    overrides = {"cameras": {"front": {"kind": "sim", "width": 64, "height": 48, "max_age_ms": 400}}}
    async with server_on(policy) as server:
        agent = Agent(agent_config(server.port, **overrides))
        async with running(agent):
            await poll_until(lambda: agent.status().chunks >= 2, timeout=10)
            assert agent.status().frame_age_bounds == {"front": pytest.approx(0.4)}


def test_the_frame_age_bound_defaults_to_three_periods_capped_by_the_request_budget() -> None:
    assert CameraConfig(name="c", fps=30).max_age_s(1000) == pytest.approx(0.1)
    assert CameraConfig(name="c", fps=6).max_age_s(1000) == pytest.approx(0.5)
    assert CameraConfig(name="c", fps=1).max_age_s(1000) == pytest.approx(1.0)  # capped: 3 s > 1 s
    assert CameraConfig(name="c", max_age_ms=50).max_age_s(1000) == pytest.approx(0.05)


class RefusingServicer(RogueServicer):
    """Answers the first ``good`` requests OK, then ``status`` until ``recover`` is set."""

    def __init__(self, status: int, good: int = 3) -> None:
        super().__init__(good=good)
        self.status = status
        self.recover = threading.Event()

    def answer(self, request: pb.PredictRequest) -> pb.PredictResponse:
        if self.answered < self.good or self.recover.is_set():
            return ok_answer(request, still_actions())
        return pb.PredictResponse(
            request_id=request.request_id, status=self.status, message="plugin raised KeyError: 'x'"
        )


@pytest.mark.parametrize(
    ("status", "reason"),
    [(pb.PredictResponse.INVALID, "invalid_request"), (pb.PredictResponse.ERROR, "server_error")],
)
async def test_refused_requests_back_off_exponentially_hold_and_recover(status: int, reason: str) -> None:
    servicer = RefusingServicer(status)
    async with rogue_server(servicer) as port:
        agent = Agent(agent_config(port, **BACKOFF))
        async with running(agent):
            await poll_until(lambda: agent.status().hold_reason == reason, timeout=10)
            await poll_until(lambda: len(servicer.arrivals) >= servicer.good + 6, timeout=10)
            assert_backed_off(servicer.arrivals[servicer.good :])
            assert agent.status().holding and agent.status().hold_reason == reason
            servicer.recover.set()
            await poll_until(lambda: not agent.status().holding, timeout=5)
            n = len(servicer.arrivals)
            await poll_until(lambda: len(servicer.arrivals) >= n + 3, timeout=5)
    assert agent.summary["rejected_chunks"][reason] >= 6

"""The request fits what the server accepts (issue 10, kind 4), end to end: an agent with two VGA
cameras against a server that takes at most 1 MiB. Two RAW frames are 1.84 MB: the agent used to
get nothing but INVALID (379 in 4 s) and the arm never moved."""

from __future__ import annotations

from pathlib import Path

from inference_server import ServerConfig
from robot_agent.agent import Agent
from tests.e2e._agent_helpers import STATE_NAMES, agent_config, running
from tests.utils import poll_until, run_server, write_python_bundle

MIB = 1 << 20


async def test_two_vga_cameras_stream_to_a_one_mib_server(tmp_path: Path) -> None:
    cameras = ("front", "wrist")
    policy = write_python_bundle(
        tmp_path / "circle",
        "tests.e2e.agent_policies:Circle",
        cameras={name: (480, 640) for name in cameras},
        state_dim=len(STATE_NAMES),
        state_names=STATE_NAMES,
        chunk_length=10,
        dt_s=0.05,
        extra_manifest={
            "cameras": {
                n: {"height": 480, "width": 640, "encodings": ["RAW_RGB8", "JPEG", "PNG"]} for n in cameras
            }
        },
    )
    config = ServerConfig(policy=policy, metrics_port=None, warmup_iters=0, max_request_bytes=MIB)
    async with run_server(config) as server:
        agent = Agent(
            agent_config(
                server.port, cameras={n: {"kind": "sim", "width": 640, "height": 480} for n in cameras}
            )
        )
        async with running(agent, timeout=30) as task:
            await poll_until(lambda: agent.status().chunks >= 5, timeout=20)
            assert not task.done()
    status = agent.summary["server_status"]
    assert status.get("OK", 0) >= 5 and "INVALID" not in status, status
    assert agent.summary["rejected_chunks"] == {}

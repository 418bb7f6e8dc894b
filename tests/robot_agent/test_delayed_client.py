"""``DelayedClient`` (``eval --inject-latency-ms``) is a policy client with a slower answer path:
what it forwards to the inner client is declared (no ``__getattr__``, issue 12 item 6), so the
agent's typed seams (``sender.RequestChannel``, ``stream.PolicyStream``) hold for it under mypy."""

from __future__ import annotations

import numpy as np
import pytest

from robot_agent.cameras.base import Frame
from robot_agent.policy_client import DelayedClient, PolicyClient
from vla.codec import from_tensor
from vla.v1 import policy_pb2 as pb


def _frame() -> Frame:
    return Frame(rgb=np.zeros((24, 32, 3), np.uint8), time_s=1.0)


def _inner() -> PolicyClient:
    client = PolicyClient("127.0.0.1:1", request_timeout_ms=250, session_id="s1")
    client.spec = pb.PolicySpec(
        cameras=[pb.CameraSpec(name="front", height=24, width=32)], action_dim=7, chunk_length=4
    )
    return client


def test_the_delayed_client_sends_what_its_inner_client_builds() -> None:
    inner = _inner()
    client = DelayedClient(inner, latency_ms=50)
    assert client.spec is inner.spec
    request = client.build_request(
        {"front": _frame()}, np.ones(3), "touch", 12.5, prev_actions=np.zeros((6, 7)), inference_delay_steps=9
    )
    assert request.session_id == "s1" and request.timeout_ms == 250 and request.capture_time_s == 12.5
    assert request.inference_delay_steps == 4  # capped at chunk_length, as the inner client does
    assert from_tensor(request.prev_actions).shape == (4, 7)
    assert client.stamp(request) == 1 and inner.stamp(request) == 2  # one id sequence, the inner's


def test_the_delayed_client_forwards_only_what_it_declares() -> None:
    client = DelayedClient(_inner(), latency_ms=50)
    with pytest.raises(AttributeError):
        client.session_id  # noqa: B018 - an undeclared attribute is not reached through to the inner


@pytest.mark.parametrize("frames", [{}, {"front": None}])
def test_a_request_without_a_frame_of_a_spec_camera_is_refused_naming_it(
    frames: dict[str, Frame | None],
) -> None:
    with pytest.raises(ValueError, match=r"no frame from camera\(s\) front the policy expects"):
        _inner().build_request(frames, np.ones(3), "touch", 1.0)

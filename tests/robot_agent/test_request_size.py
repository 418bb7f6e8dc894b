"""The request fits what the server accepts (issue 10, kind 4): the agent picks an encoding per
camera so that a request fits ``max_request_bytes``, or refuses at connect naming the sizes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from inference_server import ServerConfig
from robot_agent import policy_client
from robot_agent.cameras.base import Frame
from robot_agent.errors import SpecMismatch
from robot_agent.policy_client import PolicyClient, estimate_image_bytes, plan_encodings
from tests.utils import run_server, write_python_bundle
from vla.codec import encode_image
from vla.v1 import policy_pb2 as pb

RAW, JPEG, PNG = pb.Image.RAW_RGB8, pb.Image.JPEG, pb.Image.PNG
MIB = 1 << 20


def spec(
    max_request_bytes: int, *cameras: tuple[str, list[int]], h: int = 480, w: int = 640
) -> pb.PolicySpec:
    return pb.PolicySpec(
        cameras=[pb.CameraSpec(name=n, height=h, width=w, encodings=e) for n, e in cameras],
        state_dim=8,
        action_dim=7,
        chunk_length=16,
        dt_s=0.1,
        max_request_bytes=max_request_bytes,
    )


def noise(h: int = 480, w: int = 640, seed: int = 0) -> Frame:
    """Uniform noise: the frame JPEG compresses worst."""
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Frame(rgb=rgb, time_s=0.0)


@pytest.mark.parametrize(
    ("the_spec", "expected"),
    [
        # the example: two RAW frames are 1.84 MB; both go as JPEG
        (spec(MIB, ("front", [RAW, JPEG, PNG]), ("wrist", [RAW, JPEG, PNG])), {"front": JPEG, "wrist": JPEG}),
        # room for RAW: the server's first choice is kept
        (spec(8 * MIB, ("front", [RAW, JPEG, PNG]), ("wrist", [RAW, JPEG, PNG])), {"front": RAW, "wrist": RAW}),
        # no limit announced (an older server): the server's first choice
        (spec(0, ("front", [PNG, RAW]), ("wrist", [RAW, JPEG])), {"front": PNG, "wrist": RAW}),
        # one RAW frame fits beside one JPEG, so only one camera changes
        (spec(1_300_000, ("front", [RAW]), ("wrist", [RAW, JPEG])), {"front": RAW, "wrist": JPEG}),
        # PNG can be as large as RAW (noise does not deflate): it does not count as smaller
        (spec(MIB, ("front", [RAW, PNG, JPEG]), ("wrist", [PNG, JPEG])), {"front": JPEG, "wrist": JPEG}),
        # a camera that lists nothing takes RAW
        (spec(MIB, ("front", [])), {"front": RAW}),
    ],
)  # fmt: skip
def test_encodings_are_planned_to_fit_max_request_bytes(
    the_spec: pb.PolicySpec, expected: dict[str, int]
) -> None:
    assert plan_encodings(the_spec, 90) == expected


def test_a_spec_that_cannot_fit_is_refused_naming_the_limit_and_the_sizes() -> None:
    the_spec = spec(MIB, ("front", [RAW, PNG]), ("wrist", [RAW, JPEG]))
    with pytest.raises(SpecMismatch) as info:
        plan_encodings(the_spec, 90, address="gpu:50051")
    message = str(info.value)
    assert message.startswith("policy at gpu:50051: a request needs up to ")
    assert "front 640x480 RAW_RGB8 921664" in message and "wrist 640x480 JPEG " in message
    assert "more than the server's max_request_bytes 1048576" in message


def test_a_camera_with_no_encoding_the_agent_writes_is_refused() -> None:
    with pytest.raises(SpecMismatch, match=r"camera 'front' accepts only 7"):
        plan_encodings(spec(MIB, ("front", [7])), 90)  # type: ignore[list-item]


@pytest.mark.parametrize("quality", [50, 75, 90, 95, 100])
@pytest.mark.parametrize(("h", "w"), [(480, 640), (224, 224), (16, 16)])
def test_the_jpeg_estimate_bounds_the_worst_frame(quality: int, h: int, w: int) -> None:
    data = encode_image(noise(h, w).rgb, JPEG, jpeg_quality=quality).ByteSize()
    assert data <= estimate_image_bytes(h, w, JPEG, quality)


@pytest.mark.parametrize(("h", "w"), [(480, 640), (16, 16)])
def test_the_raw_and_png_estimates_bound_the_encoded_frame(h: int, w: int) -> None:
    for encoding in (RAW, PNG):
        assert encode_image(noise(h, w).rgb, encoding).ByteSize() <= estimate_image_bytes(h, w, encoding)


def test_a_frame_larger_than_planned_falls_back_to_lower_jpeg_quality(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An optimistic estimate (0.1 byte per pixel) lets the plan pass; the noise frames then do not fit at q90.
    monkeypatch.setattr(policy_client, "_JPEG_BYTES_PER_PIXEL", ((100, 0.1),))
    client = PolicyClient("here:1", jpeg_quality=90)
    client.spec = spec(450_000, ("front", [RAW, JPEG]), ("wrist", [JPEG]))
    frames = {"front": noise(seed=1), "wrist": noise(seed=2)}
    caplog.set_level(logging.WARNING, logger="robot_agent.policy_client")
    request = client.build_request(frames, np.zeros(8, np.float32), "go", 1.0)
    assert request.ByteSize() <= 450_000
    assert {n: i.encoding for n, i in request.images.items()} == {"front": JPEG, "wrist": JPEG}
    assert [r.getMessage() for r in caplog.records] == [
        "A request at JPEG quality 90 was over max_request_bytes 450000; sent at quality 75"
    ]


def test_a_frame_that_never_fits_is_a_spec_mismatch_naming_the_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy_client, "_JPEG_BYTES_PER_PIXEL", ((100, 0.01),))
    client = PolicyClient("here:1", jpeg_quality=90)
    client.spec = spec(60_000, ("front", [JPEG]), ("wrist", [JPEG]))
    frames = {"front": noise(seed=1), "wrist": noise(seed=2)}
    with pytest.raises(
        SpecMismatch,
        match=r"^policy at here:1: a request is \d+ bytes \(front JPEG \d+, wrist JPEG \d+\), more than the server's max_request_bytes 60000",
    ):
        client.build_request(frames, np.zeros(8, np.float32), "go", 1.0)


def test_prev_actions_and_the_delay_are_capped_at_the_chunk_length() -> None:
    client = PolicyClient("here:1")
    client.spec = spec(0, ("front", [RAW]), h=8, w=8)
    rows = np.arange(20 * 7, dtype=np.float32).reshape(20, 7)
    request = client.build_request({"front": noise(8, 8)}, np.zeros(8, np.float32), "go", 1.0, rows, 1000)
    assert list(request.prev_actions.shape) == [16, 7]  # the next 16 rows, in order
    assert np.frombuffer(request.prev_actions.data, np.float32)[0] == 0.0
    assert request.inference_delay_steps == 16


async def test_two_vga_cameras_fit_a_one_mib_server(tmp_path: Path) -> None:
    """The issue's example against a real server: every request used to be INVALID."""
    bundle = write_python_bundle(
        tmp_path / "b",
        "tests.inference_server.policies:EchoPolicy",
        cameras={"front": (480, 640), "wrist": (480, 640)},
        extra_manifest={
            "cameras": {
                n: {"height": 480, "width": 640, "encodings": ["RAW_RGB8", "JPEG", "PNG"]}
                for n in ("front", "wrist")
            }
        },
    )
    config = ServerConfig(policy=bundle, metrics_port=None, warmup_iters=0, max_request_bytes=MIB)
    async with run_server(config) as server:
        client = PolicyClient(f"127.0.0.1:{server.port}", jpeg_quality=90)
        the_spec = await client.connect()
        assert the_spec.max_request_bytes == MIB
        chunks = []
        for i in range(3):
            frames = {"front": noise(seed=i), "wrist": noise(seed=100 + i)}
            request = client.build_request(frames, np.full(8, float(i), np.float32), "go", float(i))
            assert {n: img.encoding for n, img in request.images.items()} == {"front": JPEG, "wrist": JPEG}
            assert request.ByteSize() <= MIB
            client.stamp(request)
            await client.send(request)
            chunks.append(await client.receive())
        await client.close()
    assert [(c.status, c.problem) for c in chunks] == [("OK", None)] * 3, [c.message for c in chunks]


async def test_a_server_whose_limit_no_encoding_fits_is_refused_at_connect(tmp_path: Path) -> None:
    bundle = write_python_bundle(
        tmp_path / "b",
        "tests.inference_server.policies:EchoPolicy",
        cameras={"front": (480, 640), "wrist": (480, 640)},
        extra_manifest={
            "cameras": {
                n: {"height": 480, "width": 640, "encodings": ["RAW_RGB8", "PNG"]} for n in ("front", "wrist")
            }
        },
    )
    config = ServerConfig(policy=bundle, metrics_port=None, warmup_iters=0, max_request_bytes=MIB)
    async with run_server(config) as server:
        client = PolicyClient(f"127.0.0.1:{server.port}")
        with pytest.raises(SpecMismatch, match=r"more than the server's max_request_bytes 1048576"):
            await client.connect()

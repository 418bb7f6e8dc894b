"""gRPC round-trip overhead of the inference server on loopback: round trip minus inference time.

Starts ``inference-server`` in a subprocess on a do-nothing Python policy (so inference is ~0 and
what is left is transport, serialisation, validation, decoding and queueing), then streams
requests in lockstep, as one robot does, for one and two 224x224 cameras, raw RGB and JPEG.
The JPEG encode happens on the client before sending and is reported separately.

    python bench/grpc_overhead.py [--requests 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from _stats import format_summary, summarize, write_json
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vla.codec import encode_image, to_tensor
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc

POLICY = '''\
import numpy as np


class Zeros:
    """Returns zeros at once: the benchmark measures everything but the model."""

    def __init__(self, bundle_dir, manifest):
        self.shape = (int(manifest["chunk_length"]), int(manifest["action_dim"]))

    def predict(self, batch):
        return np.zeros((batch["state"].shape[0], *self.shape), np.float32)
'''

MANIFEST = """\
name = "grpc-overhead"
backend = "python"
entrypoint = "zeros_policy:Zeros"
chunk_length = 16
dt_s = 0.1
action_space = "ee_delta"
action_dim = 7
state_names = ["joint_0", "joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]

[cameras.front]
height = 224
width = 224

[cameras.wrist]
height = 224
width = 224
"""


def scene(seed: int) -> np.ndarray:
    """A camera-like 224x224 frame (smooth shapes plus sensor noise), so JPEG sizes are realistic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:224, 0:224].astype(np.float32)
    img = np.stack([x, y, (x + y) / 2], axis=-1) * 0.8 + 30
    cx, cy = rng.uniform(50, 170, 2)
    img[(x - cx) ** 2 + (y - cy) ** 2 < 900] = (200, 40, 40)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_serving(target: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {target} not SERVING after {timeout} s")
            await asyncio.sleep(0.05)


async def measure(
    target: str, cameras: int, encoding: int, requests: int, warmup: int
) -> dict[str, dict[str, float]]:
    names = ("front", "wrist")[:cameras]
    frames = [scene(i) for i in range(8)]
    rtt, overhead, server_total, encode, size = [], [], [], [], []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        queue: asyncio.Queue[pb.PredictRequest | None] = asyncio.Queue()

        async def source():  # type: ignore[no-untyped-def]
            while (r := await queue.get()) is not None:
                yield r

        call = stub.Predict(source())
        for i in range(warmup + requests):
            t0 = time.perf_counter()
            images = {n: encode_image(frames[(i + k) % len(frames)], encoding) for k, n in enumerate(names)}
            t1 = time.perf_counter()
            request = pb.PredictRequest(
                session_id="bench", request_id=i, images=images, state=to_tensor(np.zeros(8, np.float32))
            )
            t_send = time.perf_counter()
            queue.put_nowait(request)
            answer = await call.read()
            t_recv = time.perf_counter()
            if answer.status != pb.PredictResponse.OK:
                raise RuntimeError(
                    f"request {i}: {pb.PredictResponse.Status.Name(answer.status)} {answer.message}"
                )
            if i >= warmup:
                round_trip = (t_recv - t_send) * 1e3
                rtt.append(round_trip)
                overhead.append(round_trip - answer.timing.inference_ms)
                server_total.append(answer.timing.total_ms)
                encode.append((t1 - t0) * 1e3)
                size.append(request.ByteSize() / 1024)
        queue.put_nowait(None)
        if await call.read() is not grpc.aio.EOF:
            raise RuntimeError("the server sent an answer nobody asked for")
    return {
        "overhead_ms": summarize(overhead),
        "round_trip_ms": summarize(rtt),
        "server_total_ms": summarize(server_total),
        "client_encode_ms": summarize(encode),
        "request_kib": summarize(size),
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cameras in (1, 2):
            bundle = Path(tmp) / f"bundle{cameras}"
            bundle.mkdir()
            manifest = MANIFEST if cameras == 2 else MANIFEST.split("\n[cameras.wrist]")[0]
            (bundle / "policy.toml").write_text(manifest)
            (bundle / "zeros_policy.py").write_text(POLICY)
            port = free_port()
            server = subprocess.Popen(
                [sys.executable, "-m", "inference_server", "--policy", str(bundle), "--host", "127.0.0.1",
                 "--port", str(port), "--no-metrics", "--warmup-iters", "1", "--log-level", "warning"],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )  # fmt: skip
            try:
                target = f"127.0.0.1:{port}"
                await wait_serving(target)
                for encoding in (pb.Image.RAW_RGB8, pb.Image.JPEG):
                    name = f"{cameras} camera{'s' if cameras > 1 else ''} {pb.Image.Encoding.Name(encoding)}"
                    stats = await measure(target, cameras, encoding, args.requests, args.warmup)
                    results[name] = stats
                    print(format_summary(f"{name} overhead", stats["overhead_ms"]))
                    print(format_summary(f"{name} round trip", stats["round_trip_ms"]))
                    print(format_summary(f"{name} request size", stats["request_kib"], unit="KiB"))
                    if encoding == pb.Image.JPEG:
                        print(format_summary(f"{name} client encode", stats["client_encode_ms"]))
            finally:
                server.terminate()
                server.wait(timeout=30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=30, help="untimed requests first, per case")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = asyncio.run(main_async(args))
    if args.json is not None:
        write_json(args.json, {"benchmark": "grpc_overhead", "requests": args.requests, "results": results})


if __name__ == "__main__":
    main()

"""gRPC round trip of the inference server on loopback, side by side with the transports it is held to.

Runs the peers itself, in one run, on the same payload (1000 lockstep round trips each, as one
robot streams), for one and two 224x224 cameras and three 480x640 cameras, raw RGB:

- **ours**: ``inference-server`` in a subprocess on a do-nothing Python policy (inference ~0, so
  what is left is transport, parsing, validation, decoding and queueing), driven by a plain client
  of the proto (``encode_image`` + ``PredictRequest``); the round trip includes building the request;
- **grpc.aio minimal**: a bidi stream of pre-built raw bytes answered at once (``_minimal_grpc.py``);
- **openpi**: openpi's websockets + msgpack-numpy transport, ``openpi-client`` from PyPI against a
  server shaped like openpi's (``_openpi_peer.py``). openpi-client pins numpy<2, so it runs in its
  own virtual environment (``--openpi-python``, default ``/tmp/openpi-venv/bin/python``; made with
  ``python -m venv /tmp/openpi-venv && /tmp/openpi-venv/bin/pip install openpi-client websockets
  msgpack-numpy typing_extensions``); the case is skipped when that Python is missing.

Then ours with JPEG, and what JPEG saves on a link of ``--link-gbit`` (1 Gbit/s): wire time =
bytes / link rate (computed, not shaped), plus the measured client encode and server-side decode.

    python bench/grpc_overhead.py [--requests 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from _stats import format_summary, summarize, write_json
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vla.codec import decode_image, encode_image_into, to_tensor
from vla.malloc import keep_large_buffers
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc

BENCH = Path(__file__).resolve().parent
CAMERA_NAMES = ("front", "wrist", "top")
SERVER_PARTS = ("preprocess_ms", "queue_ms", "inference_ms", "postprocess_ms")


@dataclass(frozen=True)
class Case:
    """``cameras`` images of ``height`` x ``width`` RGB per request."""

    cameras: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return f"{self.cameras}x{self.height}x{self.width}"


CASES = (Case(1, 224, 224), Case(2, 224, 224), Case(3, 480, 640))

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
"""


def manifest(case: Case) -> str:
    cameras = "".join(
        f"\n[cameras.{name}]\nheight = {case.height}\nwidth = {case.width}\n"
        for name in CAMERA_NAMES[: case.cameras]
    )
    return MANIFEST + cameras


def scene(seed: int, height: int = 224, width: int = 224) -> np.ndarray:
    """A camera-like frame (smooth shapes plus sensor noise), so JPEG sizes are realistic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = (
        np.stack([x * 224 / width, y * 224 / height, (x + y) / 2 * 224 / max(height, width)], axis=-1) * 0.8
        + 30
    )
    cx, cy = rng.uniform(0.2, 0.8, 2) * (width, height)
    img[(x - cx) ** 2 + (y - cy) ** 2 < (0.13 * min(height, width)) ** 2] = (200, 40, 40)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


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


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def measure_ours(
    target: str, case: Case, encoding: int, requests: int, warmup: int
) -> dict[str, dict[str, float]]:
    names = CAMERA_NAMES[: case.cameras]
    frames = [scene(i, case.height, case.width) for i in range(8)]
    rtt, wire, overhead, server_total, encode, decode, size = [], [], [], [], [], [], []
    parts: dict[str, list[float]] = {part: [] for part in SERVER_PARTS}
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    ) as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        call = stub.Predict()  # written to as robot_agent.policy_client does
        for i in range(warmup + requests):
            t0 = time.perf_counter()
            request = pb.PredictRequest(
                session_id="bench", request_id=i, state=to_tensor(np.zeros(8, np.float32))
            )
            for k, n in enumerate(names):
                encode_image_into(request.images[n], frames[(i + k) % len(frames)], encoding)
            t_send = time.perf_counter()
            await call.write(request)
            answer = await call.read()
            t_recv = time.perf_counter()
            if answer.status != pb.PredictResponse.OK:
                raise RuntimeError(
                    f"request {i}: {pb.PredictResponse.Status.Name(answer.status)} {answer.message}"
                )
            if i >= warmup:
                rtt.append((t_recv - t0) * 1e3)
                wire.append((t_recv - t_send) * 1e3)
                overhead.append((t_recv - t0) * 1e3 - answer.timing.inference_ms)
                server_total.append(answer.timing.total_ms)
                for part in SERVER_PARTS:
                    parts[part].append(getattr(answer.timing, part))
                encode.append((t_send - t0) * 1e3)
                size.append(request.ByteSize())
                if encoding != pb.Image.RAW_RGB8 and i < warmup + 100:
                    d0 = time.perf_counter()
                    for n in names:
                        decode_image(request.images[n])
                    decode.append((time.perf_counter() - d0) * 1e3)
        await call.done_writing()
        if await call.read() is not grpc.aio.EOF:
            raise RuntimeError("the server sent an answer nobody asked for")
    out = {
        "round_trip_ms": summarize(rtt),
        "send_to_answer_ms": summarize(wire),
        "overhead_ms": summarize(overhead),
        "server_total_ms": summarize(server_total),
        **{f"server_{part}": summarize(values) for part, values in parts.items()},
        "client_build_ms": summarize(encode),
        "request_bytes": summarize(size),
    }
    if decode:
        out["server_decode_ms"] = summarize(decode)
    return out


async def measure_minimal(target: str, case: Case, requests: int, warmup: int) -> dict[str, dict[str, float]]:
    """Round trips of the minimal stream with the payload of a raw request of ``case``, pre-built."""
    names = CAMERA_NAMES[: case.cameras]
    payloads = []
    for i in range(8):
        request = pb.PredictRequest(
            session_id="bench", request_id=i, state=to_tensor(np.zeros(8, np.float32))
        )
        for k, n in enumerate(names):
            encode_image_into(request.images[n], scene(i + k, case.height, case.width))
        payloads.append(request.SerializeToString())
    rtt = []
    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    ) as channel:
        deadline = time.monotonic() + 30
        await asyncio.wait_for(channel.channel_ready(), timeout=max(1.0, deadline - time.monotonic()))
        call = channel.stream_stream("/bench.Echo/Stream")()
        for i in range(warmup + requests):
            t0 = time.perf_counter()
            await call.write(payloads[i % len(payloads)])
            await call.read()
            if i >= warmup:
                rtt.append((time.perf_counter() - t0) * 1e3)
        await call.done_writing()
    return {"round_trip_ms": summarize(rtt)}


def measure_openpi(python: str, case: Case, requests: int, warmup: int) -> dict[str, dict[str, float]]:
    port = str(free_port())
    server = subprocess.Popen([python, str(BENCH / "_openpi_peer.py"), "serve", port])
    try:
        out = subprocess.run(
            [python, str(BENCH / "_openpi_peer.py"), "client", port, str(case.cameras), str(case.height),
             str(case.width), str(requests), str(warmup)],
            check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        stop(server)
    return {"round_trip_ms": summarize(json.loads(out.stdout))}


def jpeg_savings(
    raw: dict[str, dict[str, float]], jpeg: dict[str, dict[str, float]], gbit: float
) -> dict[str, float]:
    """Per request at the p50s: raw wire time against JPEG wire time plus encode and decode (ms)."""
    rate = gbit * 1e9 / 8  # bytes per second
    raw_wire = raw["request_bytes"]["p50"] / rate * 1e3
    jpeg_wire = jpeg["request_bytes"]["p50"] / rate * 1e3
    codec = jpeg["client_build_ms"]["p50"] + jpeg["server_decode_ms"]["p50"]
    return {
        "raw_wire_ms": raw_wire,
        "jpeg_wire_ms": jpeg_wire,
        "jpeg_encode_decode_ms": codec,
        "saved_ms": raw_wire - (jpeg_wire + codec),
    }


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    results: dict[str, object] = {}
    have_openpi = Path(args.openpi_python).exists()
    if not have_openpi:
        print(f"openpi: {args.openpi_python} not found, openpi's transport is skipped", file=sys.stderr)
    minimal_port = free_port()
    minimal = subprocess.Popen(
        [sys.executable, str(BENCH / "_minimal_grpc.py"), str(minimal_port)], env=child_env()
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for case in (c for c in CASES if not args.cases or c.name in args.cases):
                bundle = Path(tmp) / case.name
                bundle.mkdir()
                (bundle / "policy.toml").write_text(manifest(case))
                (bundle / "zeros_policy.py").write_text(POLICY)
                port = free_port()
                server = subprocess.Popen(
                    [sys.executable, "-m", "inference_server", "--policy", str(bundle), "--host", "127.0.0.1",
                     "--port", str(port), "--no-metrics", "--warmup-iters", "1", "--log-level", "warning",
                     "--max-request-rate-hz", "100000", "--max-request-burst", "100000",
                     "--max-request-bytes", str(64 << 20)],
                    env=child_env(),
                )  # fmt: skip
                row: dict[str, object] = {}
                try:
                    target = f"127.0.0.1:{port}"
                    await wait_serving(target)
                    row["ours"] = ours = await measure_ours(
                        target, case, pb.Image.RAW_RGB8, args.requests, args.warmup
                    )
                    row["ours_jpeg"] = jpeg = await measure_ours(
                        target, case, pb.Image.JPEG, args.requests, args.warmup
                    )
                finally:
                    stop(server)
                row["grpc_minimal"] = floor = await measure_minimal(
                    f"127.0.0.1:{minimal_port}", case, args.requests, args.warmup
                )
                p50 = ours["round_trip_ms"]["p50"]
                ratios = {"ours_over_grpc_minimal": p50 / floor["round_trip_ms"]["p50"]}
                if have_openpi:
                    row["openpi"] = openpi = measure_openpi(
                        args.openpi_python, case, args.requests, args.warmup
                    )
                    ratios["ours_over_openpi"] = p50 / openpi["round_trip_ms"]["p50"]
                row["ratios_p50"] = ratios
                row["jpeg_on_link"] = saving = jpeg_savings(ours, jpeg, args.link_gbit)
                results[case.name] = row
                print(f"== {case.name} RGB ({ours['request_bytes']['p50'] / 1024:.0f} KiB raw, "
                      f"{jpeg['request_bytes']['p50'] / 1024:.0f} KiB JPEG)")  # fmt: skip
                for peer in ("ours", "grpc_minimal", "openpi"):
                    if peer in row:
                        print(format_summary(f"  {peer} round trip", row[peer]["round_trip_ms"]))  # type: ignore[index]
                print(format_summary("  ours server total", ours["server_total_ms"]))
                print("  ours server parts (p50): " + "  ".join(
                    f"{part} {ours[f'server_{part}']['p50']:.3f}" for part in SERVER_PARTS))  # fmt: skip
                print(format_summary("  ours JPEG round trip", jpeg["round_trip_ms"]))
                print("  ratios (p50): " + "  ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
                print(
                    f"  JPEG on {args.link_gbit:g} Gbit/s: raw wire {saving['raw_wire_ms']:.3f} ms, JPEG wire "
                    f"{saving['jpeg_wire_ms']:.3f} + encode/decode {saving['jpeg_encode_decode_ms']:.3f} ms: "
                    f"saves {saving['saved_ms']:.3f} ms per request"
                )
    finally:
        stop(minimal)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000, help="timed round trips per case and peer")
    parser.add_argument("--warmup", type=int, default=50, help="untimed round trips first, per case and peer")
    parser.add_argument("--openpi-python", default="/tmp/openpi-venv/bin/python",
                        help="a Python with openpi-client installed (its own venv: it pins numpy<2)")  # fmt: skip
    parser.add_argument("--link-gbit", type=float, default=1.0, help="link rate for the JPEG saving, Gbit/s")
    parser.add_argument(
        "--cases", nargs="*", default=[], help=f"only these ({', '.join(c.name for c in CASES)})"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    keep_large_buffers()  # as the server and the agent do; for every client in this process alike
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

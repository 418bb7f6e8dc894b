"""openpi's transport, for ``bench/grpc_overhead.py``: run with a Python that has ``openpi-client``.

openpi-client pins numpy<2, so this file runs in its own virtual environment (never the
project's), as a subprocess of the benchmark, in one of two roles:

    python _openpi_peer.py serve PORT
        A websockets + msgpack-numpy server shaped like openpi's ``WebsocketPolicyServer``
        (openpi ``src/openpi/serving/websocket_policy_server.py``: ``compression=None``,
        ``max_size=None``, metadata sent on connect, then ``recv -> unpackb -> infer -> pack ->
        send``), whose policy answers float32 zeros ``[16, 7]`` at once.
    python _openpi_peer.py client PORT CAMERAS HEIGHT WIDTH REQUESTS WARMUP
        ``openpi_client.websocket_client_policy.WebsocketClientPolicy.infer`` in lockstep on
        ``CAMERAS`` uint8 ``[HEIGHT, WIDTH, 3]`` images plus a float32 ``[8]`` state; prints the
        timed round trips (ms, one JSON list) on stdout.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time

import numpy as np


def serve(port: int) -> None:
    import websockets.asyncio.server
    from openpi_client import msgpack_numpy

    packer = msgpack_numpy.Packer()
    actions = np.zeros((16, 7), np.float32)

    async def handler(websocket) -> None:  # type: ignore[no-untyped-def]
        await websocket.send(packer.pack({"name": "zeros"}))
        while True:
            try:
                obs = msgpack_numpy.unpackb(await websocket.recv())
            except websockets.ConnectionClosed:
                return
            t0 = time.monotonic()
            result = {"actions": actions, "state": obs["state"]}
            result["server_timing"] = {"infer_ms": (time.monotonic() - t0) * 1e3}
            await websocket.send(packer.pack(result))

    async def main() -> None:
        async with websockets.asyncio.server.serve(
            handler, "127.0.0.1", port, compression=None, max_size=None
        ) as server:
            await server.serve_forever()

    asyncio.run(main())


def client(port: int, cameras: int, height: int, width: int, requests: int, warmup: int) -> None:
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    deadline = time.monotonic() + 30
    while True:  # the server is a fresh process: wait until it listens
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(8)]
    names = ("front", "wrist", "top")[:cameras]
    policy = WebsocketClientPolicy("127.0.0.1", port)
    state = np.zeros(8, np.float32)
    samples = []
    for i in range(warmup + requests):
        obs = {"images": {n: frames[(i + k) % len(frames)] for k, n in enumerate(names)}, "state": state}
        t0 = time.perf_counter()
        answer = policy.infer(obs)
        t1 = time.perf_counter()
        if answer["actions"].shape != (16, 7):
            raise RuntimeError(f"unexpected answer {answer!r}")
        if i >= warmup:
            samples.append((t1 - t0) * 1e3)
    print(json.dumps(samples))


if __name__ == "__main__":
    role, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    if role == "serve":
        serve(*args)
    else:
        client(*args)

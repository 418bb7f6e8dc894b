"""Abusive clients for ``test_limits.py``, run in their own process (another machine, in effect).

``python -m tests.inference_server.abuser PORT STREAMS SECONDS [--idle]``: ``STREAMS`` Predict
streams that each send valid requests as fast as gRPC takes them (half of them never reading an
answer), for at most ``SECONDS``. ``--idle``: one stream, one request, then nothing (to be frozen
with SIGSTOP). Prints ``open`` once every stream has sent its first request.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc

from tests.utils import make_request
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc


async def _flood(spec: pb.PolicySpec, name: str, sent: asyncio.Event) -> AsyncIterator[pb.PredictRequest]:
    request = make_request(spec, 1, session_id=name)
    i = 0
    while True:
        i += 1
        request.request_id = i
        yield request
        sent.set()


async def _stream(
    stub: policy_pb2_grpc.PolicyServiceStub, spec: pb.PolicySpec, i: int, sent: asyncio.Event
) -> None:
    call = stub.Predict(_flood(spec, f"abuser-{i}", sent))
    if i % 2:  # half read answers as fast as they come, half never read one
        async for _ in call:
            pass
    else:
        await asyncio.Event().wait()


async def main(port: int, streams: int, seconds: float, idle: bool) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        if idle:
            queue: asyncio.Queue[pb.PredictRequest] = asyncio.Queue()
            queue.put_nowait(make_request(spec, 1, session_id="frozen"))

            async def requests() -> AsyncIterator[pb.PredictRequest]:
                while True:
                    yield await queue.get()

            call = stub.Predict(requests())
            await call.read()
            print("open", flush=True)
            await asyncio.sleep(seconds)
            return
        events = [asyncio.Event() for _ in range(streams)]
        tasks = [asyncio.create_task(_stream(stub, spec, i, e)) for i, e in enumerate(events)]
        await asyncio.gather(*(e.wait() for e in events))
        print("open", flush=True)
        await asyncio.wait(tasks, timeout=seconds)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), "--idle" in sys.argv))

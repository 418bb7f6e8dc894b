"""The floor for ``bench/grpc_overhead.py``: a minimal grpc.aio bidi stream of raw bytes.

    python _minimal_grpc.py PORT

Serves ``/bench.Echo/Stream`` with no (de)serialisers, no checks and no model: every request is
answered at once with the same pre-serialised ``PredictResponse`` (OK, float32 zeros ``[16, 7]``),
so a round trip is what gRPC's Python stack itself costs for the payload.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc
import numpy as np

from vla.codec import to_tensor
from vla.malloc import keep_large_buffers
from vla.v1 import policy_pb2 as pb

METHOD = "/bench.Echo/Stream"
RESPONSE = pb.PredictResponse(
    status=pb.PredictResponse.OK, actions=to_tensor(np.zeros((16, 7), np.float32)), dt_s=0.1
).SerializeToString()


async def stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for _ in requests:
        yield RESPONSE


async def serve(port: int) -> None:
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    )
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    keep_large_buffers()  # as inference-server does
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(int(sys.argv[1])))

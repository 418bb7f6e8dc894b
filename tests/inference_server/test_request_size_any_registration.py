"""The size limit holds however the service is registered (issue 13's ByteSize() skip).

``add_to_server`` parses requests with ``parse_request``, which refuses an oversize one from its
wire bytes, so its Predict skips ``ByteSize()``. The same service registered with the generated
``add_PolicyServiceServicer_to_server`` gets messages gRPC parsed, unsized: there the size must
still be checked, whatever other server the service was also added to.
"""

from __future__ import annotations

import re
from pathlib import Path

import grpc

from inference_server import ServerConfig
from tests.utils import PredictStream, make_request, run_server, write_python_bundle
from vla.v1 import policy_pb2 as pb
from vla.v1 import policy_pb2_grpc


async def _answer(port: int) -> pb.PredictResponse:
    """The answer to one request of 128x128 RAW_RGB8 (49,152 image bytes, every field valid)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = policy_pb2_grpc.PolicyServiceStub(channel)
        spec = await stub.GetPolicySpec(pb.GetPolicySpecRequest())
        stream = PredictStream(stub)
        stream.send(make_request(spec, 1))
        answer: pb.PredictResponse = await stream.recv()
        await stream.close()
    return answer


async def test_an_oversize_request_is_refused_through_the_generated_registration_too(tmp_path: Path) -> None:
    bundle = write_python_bundle(
        tmp_path / "b",
        "tests.inference_server.policies:EchoPolicy",
        extra_manifest={"cameras": {"front": {"height": 128, "width": 128, "encodings": ["RAW_RGB8"]}}},
    )
    config = ServerConfig(policy=bundle, metrics_port=None, warmup_iters=1, max_request_bytes=32768)
    async with run_server(config) as server:
        assert server.port is not None
        answers = [await _answer(server.port)]  # add_to_server: refused from its wire bytes
        plain = grpc.aio.server()
        # The same service registered a second way: gRPC parses, nothing has sized the request.
        policy_pb2_grpc.add_PolicyServiceServicer_to_server(server._service, plain)
        port = plain.add_insecure_port("127.0.0.1:0")
        await plain.start()
        try:
            answers.append(await _answer(port))
        finally:
            await plain.stop(None)
    for answer in answers:
        assert (answer.request_id, answer.status) == (1, pb.PredictResponse.INVALID)
        assert re.search(r"^request: \d+ bytes, larger than max_request_bytes 32768$", answer.message), (
            answer.message
        )

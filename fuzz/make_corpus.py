"""Write the fuzz seeds: real requests, and a real server's answers to them.

``python fuzz/make_corpus.py`` (from the repository root) runs the inference server on loopback
with ``fuzz/bundle`` (the echo policy of the tests), sends it requests built by
``tests/utils.py::make_request`` (RAW, JPEG and PNG images, with ``prev_actions`` and
``inference_delay_steps``, and two that the server refuses), and writes each serialized request
to ``fuzz/corpus/request/`` and each serialized answer (OK and INVALID) to
``fuzz/corpus/response/``, overwriting seeds of the same name; the ``crash-*`` reproducers that
fuzzing found are left in place. Each file is under 2 KB.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.utils, and the echo policy the bundle names

from fuzz._common import BUNDLE_DIR, CORPUS_DIR  # noqa: E402
from inference_server import ServerConfig  # noqa: E402
from tests.utils import PredictStream, connect, make_request, run_server  # noqa: E402
from vla.codec import to_tensor  # noqa: E402
from vla.v1 import policy_pb2 as pb  # noqa: E402


def requests(spec: pb.PolicySpec) -> dict[str, pb.PredictRequest]:
    """Named requests for ``spec``: three valid ones (one per encoding) and two INVALID ones."""
    out: dict[str, pb.PredictRequest] = {}
    for i, (name, encoding) in enumerate(
        (("raw", pb.Image.RAW_RGB8), ("jpeg", pb.Image.JPEG), ("png", pb.Image.PNG)), start=1
    ):
        request = make_request(spec, i, encoding=encoding, timeout_ms=1000, session_id="fuzz-seed")
        request.prev_actions.CopyFrom(to_tensor(np.full((2, spec.action_dim), 0.25 * i, np.float32)))
        request.inference_delay_steps = 1
        out[f"ok-{name}"] = request
    nan_state = np.zeros(spec.state_dim, np.float32)
    nan_state[3] = np.nan
    out["invalid-nan-state"] = make_request(spec, 4, state=nan_state, session_id="fuzz-seed")
    missing = make_request(spec, 5, session_id="fuzz-seed")
    del missing.images[spec.cameras[-1].name]
    out["invalid-missing-camera"] = missing
    return out


async def answers(named: dict[str, pb.PredictRequest]) -> dict[str, pb.PredictResponse]:
    """The server's answer to each request, by the request's name."""
    config = ServerConfig(policy=BUNDLE_DIR, metrics_port=None, warmup_iters=0, max_batch=1)
    out: dict[str, pb.PredictResponse] = {}
    async with run_server(config) as server, connect(server) as stub:
        stream = PredictStream(stub)
        by_id = {request.request_id: name for name, request in named.items()}
        for request in named.values():
            stream.send(request)
            response = await stream.recv()
            out[by_id[response.request_id]] = response
        await stream.close()
    return out


async def spec_of_server() -> pb.PolicySpec:
    config = ServerConfig(policy=BUNDLE_DIR, metrics_port=None, warmup_iters=0, max_batch=1)
    async with run_server(config) as server, connect(server) as stub:
        return await stub.GetPolicySpec(pb.GetPolicySpecRequest())


def write(directory: Path, messages: dict[str, pb.PredictRequest] | dict[str, pb.PredictResponse]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, message in messages.items():
        data = message.SerializeToString()
        assert len(data) < 2048, f"{name}: {len(data)} bytes"
        (directory / name).write_bytes(data)
        print(f"{directory.relative_to(ROOT)}/{name}: {len(data)} bytes")


async def amain() -> None:
    spec = await spec_of_server()
    named = requests(spec)
    responses = await answers(named)
    statuses = {name: pb.PredictResponse.Status.Name(r.status) for name, r in responses.items()}
    expected = {name: "OK" if name.startswith("ok-") else "INVALID" for name in named}
    assert statuses == expected, statuses
    write(CORPUS_DIR / "request", named)
    write(CORPUS_DIR / "response", responses)


if __name__ == "__main__":
    asyncio.run(amain())

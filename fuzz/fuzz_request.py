"""Fuzz the server's request path: raw bytes → :func:`parse_request` → :func:`decode_request`.

Run ``python -m fuzz.fuzz_request [libFuzzer flags] [corpus dirs]`` from the repository root.
The oracle, :func:`check`, accepts exactly two outcomes for any bytes:

- INVALID: :func:`parse_request` yields :class:`Undecodable`, or :func:`decode_request` raises
  :class:`InvalidRequest`; the answer the server would send (a ``PredictResponse`` with status
  INVALID and that message, at most :data:`MAX_MESSAGE_CHARS` characters) must serialize.
- a decoded :class:`Observation` that fits the bundle: each camera ``uint8 [H, W, 3]`` of its
  size, ``state`` finite ``float32 [state_dim]``, ``prev_actions`` finite ``float32 [n,
  action_dim]`` with ``n <= chunk_length`` or None, ``inference_delay_steps <= chunk_length``.

Anything else is a crash: any other exception (a :class:`CodecError` escaping
``decode_request`` would be answered ERROR, not INVALID), or an observation that breaks the above.
"""

from __future__ import annotations

import numpy as np

from fuzz._common import BUNDLE_DIR, MAX_MESSAGE_CHARS, MAX_REQUEST_BYTES, instrumented, main

with instrumented(__name__):
    from inference_server.bundle import load_bundle
    from inference_server.errors import InvalidRequest
    from inference_server.service import Undecodable, parse_request
    from inference_server.validation import Observation, decode_request, needs_decoding
    from vla.v1 import policy_pb2 as pb

__all__ = ["BUNDLE", "check"]

BUNDLE = load_bundle(BUNDLE_DIR)


def check(data: bytes) -> str:
    """``"invalid"`` or ``"valid"`` for ``data``; raises for any other outcome (a crash)."""
    parsed = parse_request(data, MAX_REQUEST_BYTES)
    if isinstance(parsed, Undecodable):
        assert 0 <= parsed.request_id < 2**64, parsed
        _check_invalid_answer(parsed.request_id, parsed.message)
        return "invalid"
    needs_decoding(parsed)
    try:
        observation = decode_request(parsed, BUNDLE, MAX_REQUEST_BYTES)
    except InvalidRequest as exc:
        assert exc.field and str(exc).startswith(f"{exc.field}: "), repr(exc)
        _check_invalid_answer(parsed.request_id, str(exc))
        return "invalid"
    _check_observation(observation)
    return "valid"


def _check_invalid_answer(request_id: int, message: str) -> None:
    assert message and len(message) <= MAX_MESSAGE_CHARS, f"{len(message)} characters: {message[:200]!r}"
    answer = pb.PredictResponse(request_id=request_id, status=pb.PredictResponse.INVALID, message=message)
    assert pb.PredictResponse.FromString(answer.SerializeToString()).message == message


def _check_observation(obs: Observation) -> None:
    assert set(obs.images) == {c.name for c in BUNDLE.cameras}, sorted(obs.images)
    for cam in BUNDLE.cameras:
        image = obs.images[cam.name]
        assert image.dtype == np.uint8 and image.shape == (cam.height, cam.width, 3), (cam, image.shape)
    assert obs.state.dtype == np.float32 and obs.state.shape == (BUNDLE.state_dim,), obs.state
    assert np.isfinite(obs.state).all(), obs.state
    if obs.prev_actions is not None:
        prev = obs.prev_actions
        assert prev.dtype == np.float32 and prev.ndim == 2, prev
        assert prev.shape[0] <= BUNDLE.chunk_length and prev.shape[1] == BUNDLE.action_dim, prev.shape
        assert np.isfinite(prev).all(), prev
    delay = obs.inference_delay_steps
    assert delay is None or 0 <= delay <= BUNDLE.chunk_length, delay


if __name__ == "__main__":
    main(check)

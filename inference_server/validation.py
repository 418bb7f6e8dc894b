"""Check requests against the spec on the way in, and model outputs on the way out.

A request that does not fit gets INVALID with the field named and the stream lives on; a model
that returns the wrong shape or a non-finite number gets ERROR, so nothing unchecked ever reaches
a robot (the agent's safety shield checks again: it trusts nothing it receives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference_server.bundle import Bundle
from inference_server.errors import InvalidRequest
from vla.codec import CodecError, decode_image, from_tensor
from vla.v1 import policy_pb2 as pb

__all__ = ["Observation", "check_actions", "decode_request", "needs_decoding"]


@dataclass(frozen=True, eq=False)
class Observation:
    """One decoded, checked request: what the batcher stacks."""

    images: dict[str, np.ndarray]
    state: np.ndarray
    instruction: str
    prev_actions: np.ndarray | None
    inference_delay_steps: int | None


def needs_decoding(request: pb.PredictRequest) -> bool:
    """True when some image is compressed, i.e. decoding is worth a thread hop."""
    return any(img.encoding != pb.Image.RAW_RGB8 for img in request.images.values())


def check_header(request: pb.PredictRequest, bundle: Bundle, max_request_bytes: int) -> None:
    """The cheap checks (size, cameras, encodings, state): fail fast before any decoding."""
    size = request.ByteSize()
    if size > max_request_bytes:
        raise InvalidRequest("request", f"{size} bytes, larger than max_request_bytes {max_request_bytes}")
    expected = {c.name for c in bundle.cameras}
    for cam in bundle.cameras:
        field = f"images.{cam.name}"
        if cam.name not in request.images:
            raise InvalidRequest(field, f"missing (the policy expects cameras {', '.join(sorted(expected))})")
        img = request.images[cam.name]
        enc = (
            pb.Image.Encoding.Name(img.encoding)
            if img.encoding in pb.Image.Encoding.values()
            else str(img.encoding)
        )
        if enc not in cam.encodings:
            raise InvalidRequest(field, f"encoding {enc} not accepted (accepted: {', '.join(cam.encodings)})")
        if (img.height, img.width) != (cam.height, cam.width):
            raise InvalidRequest(
                field,
                f"{img.width}x{img.height} (width x height), the policy expects {cam.width}x{cam.height}",
            )
        if img.channels != 3:
            raise InvalidRequest(field, f"{img.channels} channels, the policy expects 3 (RGB)")
    extra = sorted(set(request.images) - expected)
    if extra:
        raise InvalidRequest(
            f"images.{extra[0]}", f"unknown camera (the policy expects {', '.join(sorted(expected))})"
        )
    if request.state.dtype != pb.Tensor.FLOAT32:
        name = (
            pb.Tensor.DType.Name(request.state.dtype)
            if request.state.dtype in pb.Tensor.DType.values()
            else request.state.dtype
        )
        raise InvalidRequest("state", f"dtype {name}, expected FLOAT32")
    if list(request.state.shape) != [bundle.state_dim]:
        raise InvalidRequest(
            "state", f"shape {list(request.state.shape)}, the policy expects [{bundle.state_dim}]"
        )


def decode_request(request: pb.PredictRequest, bundle: Bundle, max_request_bytes: int) -> Observation:
    """Validate and decode; raises :class:`InvalidRequest` naming the first field that is wrong."""
    check_header(request, bundle, max_request_bytes)
    images = {}
    for cam in bundle.cameras:
        try:
            images[cam.name] = decode_image(request.images[cam.name], name=f"images.{cam.name}")
        except CodecError as exc:
            field, _, message = str(exc).partition(": ")
            raise InvalidRequest(field, message) from None
    state = _decode_tensor(request.state, "state")
    bad = np.flatnonzero(~np.isfinite(state))
    if bad.size:
        raise InvalidRequest(f"state[{bad[0]}]", f"is {state[bad[0]]}, expected a finite number")
    prev = None
    if request.HasField("prev_actions") and len(request.prev_actions.shape) > 0:
        prev = _decode_tensor(request.prev_actions, "prev_actions")
        if prev.dtype != np.float32 or prev.ndim != 2 or prev.shape[1] != bundle.action_dim:
            raise InvalidRequest(
                "prev_actions", f"{prev.dtype} {list(prev.shape)}, expected float32 [n, {bundle.action_dim}]"
            )
        if not np.isfinite(prev).all():
            raise InvalidRequest("prev_actions", "has a non-finite value")
    delay = request.inference_delay_steps if request.HasField("inference_delay_steps") else None
    return Observation(
        images=images,
        state=state,
        instruction=request.instruction,
        prev_actions=prev,
        inference_delay_steps=delay,
    )


def _decode_tensor(tensor: pb.Tensor, name: str) -> np.ndarray:
    try:
        return from_tensor(tensor, name=name)
    except CodecError as exc:
        field, _, message = str(exc).partition(": ")
        raise InvalidRequest(field, message) from None


def check_actions(actions: np.ndarray, bundle: Bundle) -> str | None:
    """``None`` when one request's ``actions`` are ``[H, A]`` finite floats, else what is wrong."""
    expected = (bundle.chunk_length, bundle.action_dim)
    if actions.dtype.kind != "f":
        return f"model returned actions of dtype {actions.dtype}, expected float"
    if actions.shape != expected:
        return f"model returned actions of shape {list(actions.shape)}, expected {list(expected)}"
    if not np.isfinite(actions).all():
        row, col = np.argwhere(~np.isfinite(actions))[0]
        return f"model returned a non-finite action: actions[{row}, {col}] is {actions[row, col]}"
    return None

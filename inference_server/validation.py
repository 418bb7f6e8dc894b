"""Check requests against the spec on the way in, and model outputs on the way out.

A request that does not fit gets INVALID with the field named and the stream lives on; a model
that returns the wrong shape or a non-finite number gets ERROR, so nothing unchecked ever reaches
a robot (the agent's safety shield checks again: it trusts nothing it receives).

Nothing in a request is trusted: sizes, shapes, dtypes, enum values, counts and strings are
checked against the spec and the bounds below before anything is decoded or allocated (the codec
checks byte counts and compressed-image headers the same way), and text from the peer is
shortened before it is echoed in an answer or a log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from inference_server.bundle import Bundle
from inference_server.errors import InvalidRequest
from vla.codec import CodecError, decode_image, dtype_name, encoding_name, from_tensor
from vla.v1 import policy_pb2 as pb

__all__ = [
    "MAX_INSTRUCTION_CHARS",
    "MAX_SESSION_ID_CHARS",
    "Observation",
    "OutputProblem",
    "check_actions",
    "check_header",
    "check_output",
    "decode_request",
    "needs_decoding",
    "shown",
]

#: Longest ``session_id``: a UUID is 32 hex digits (the agent's default), 36 with dashes.
MAX_SESSION_ID_CHARS = 128
#: Longest ``instruction``: VLA tokenizers keep far fewer (openpi's pi0 keeps 48 tokens, pi0-FAST
#: 250); 4096 characters is room for any prompt, not for a megabyte of text in every request.
MAX_INSTRUCTION_CHARS = 4096


@dataclass(frozen=True, eq=False)
class Observation:
    """One decoded, checked request: what the batcher stacks.

    ``images`` are uint8 ``[H, W, 3]`` per camera; ``state`` float32 ``[state_dim]``;
    ``prev_actions`` float32 ``[n, action_dim]`` with ``n <= chunk_length``, or None;
    ``inference_delay_steps`` at most ``chunk_length``, or None.
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    instruction: str
    prev_actions: np.ndarray | None
    inference_delay_steps: int | None


def shown(text: str, limit: int = 64) -> str:
    """``repr(text)``, cut to about ``limit`` characters: peer text echoed in answers and logs."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def needs_decoding(request: pb.PredictRequest) -> bool:
    """True when some image is compressed, i.e. decoding is worth a thread hop."""
    return any(img.encoding != pb.Image.RAW_RGB8 for img in request.images.values())


def check_header(request: pb.PredictRequest, bundle: Bundle, max_request_bytes: int | None) -> None:
    """The cheap checks: size, strings, cameras, encodings, tensor dtypes and shapes, counts.

    Fails fast, before any decoding or allocation; raises :class:`InvalidRequest` naming the
    first field that is wrong. ``max_request_bytes`` None: the caller has already refused a
    larger request from its wire bytes (:func:`~inference_server.service.parse_request` does),
    so the size is not computed again: ``ByteSize()`` serialises the whole message with
    protobuf's upb backend (about 190 us and a fresh 2.7 MB buffer for three 480x640 cameras).
    """
    if max_request_bytes is not None:
        size = request.ByteSize()
        if size > max_request_bytes:
            raise InvalidRequest(
                "request", f"{size} bytes, larger than max_request_bytes {max_request_bytes}"
            )
    if len(request.session_id) > MAX_SESSION_ID_CHARS:
        raise InvalidRequest(
            "session_id", f"{len(request.session_id)} characters, at most {MAX_SESSION_ID_CHARS}"
        )
    if len(request.instruction) > MAX_INSTRUCTION_CHARS:
        raise InvalidRequest(
            "instruction", f"{len(request.instruction)} characters, at most {MAX_INSTRUCTION_CHARS}"
        )
    if not math.isfinite(request.capture_time_s):
        raise InvalidRequest("capture_time_s", f"is {request.capture_time_s}, expected a finite time")
    expected = {c.name for c in bundle.cameras}
    for cam in bundle.cameras:
        field = f"images.{cam.name}"
        if cam.name not in request.images:
            raise InvalidRequest(field, f"missing (the policy expects cameras {', '.join(sorted(expected))})")
        img = request.images[cam.name]
        if _is_empty(img):
            raise InvalidRequest(
                field, f"is an empty Image (the policy expects {cam.width}x{cam.height} RGB)"
            )
        if img.encoding == pb.Image.ENCODING_UNSPECIFIED:
            raise InvalidRequest(
                field, f"encoding is not set (ENCODING_UNSPECIFIED; accepted: {', '.join(cam.encodings)})"
            )
        enc = encoding_name(img.encoding)
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
            f"images.{_name(extra[0])}", f"unknown camera (the policy expects {', '.join(sorted(expected))})"
        )
    if not request.HasField("state"):
        raise InvalidRequest("state", f"is missing (the policy expects FLOAT32 [{bundle.state_dim}])")
    if request.state.dtype == pb.Tensor.DTYPE_UNSPECIFIED:
        raise InvalidRequest("state", "dtype is not set (DTYPE_UNSPECIFIED), expected FLOAT32")
    if request.state.dtype != pb.Tensor.FLOAT32:
        raise InvalidRequest("state", f"dtype {dtype_name(request.state.dtype)}, expected FLOAT32")
    if list(request.state.shape) != [bundle.state_dim]:
        raise InvalidRequest(
            "state", f"shape {_shape(request.state)}, the policy expects [{bundle.state_dim}]"
        )
    if _has_prev_actions(request):
        prev = request.prev_actions
        shape = list(prev.shape)
        if (
            prev.dtype != pb.Tensor.FLOAT32
            or len(shape) != 2
            or shape[1] != bundle.action_dim
            or not 0 <= shape[0] <= bundle.chunk_length
        ):
            raise InvalidRequest(
                "prev_actions",
                f"{dtype_name(prev.dtype)} {_shape(prev)}, expected FLOAT32 [n, {bundle.action_dim}] "
                f"with n <= chunk_length {bundle.chunk_length}",
            )
    if request.HasField("inference_delay_steps") and request.inference_delay_steps > bundle.chunk_length:
        raise InvalidRequest(
            "inference_delay_steps",
            f"is {request.inference_delay_steps}, more than chunk_length {bundle.chunk_length}",
        )


def decode_request(request: pb.PredictRequest, bundle: Bundle, max_request_bytes: int | None) -> Observation:
    """Validate and decode; raises :class:`InvalidRequest` naming the first field that is wrong.

    ``max_request_bytes`` as for :func:`check_header` (None: already checked on the wire bytes).
    Each image's bytes are copied once (reading a upb ``bytes`` field copies) and viewed, not
    copied again, by the arrays of the :class:`Observation`.
    """
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
    if _has_prev_actions(request):
        prev = _decode_tensor(request.prev_actions, "prev_actions")
        if not np.isfinite(prev).all():
            row, col = np.argwhere(~np.isfinite(prev))[0]
            raise InvalidRequest(
                f"prev_actions[{row}, {col}]", f"is {prev[row, col]}, expected a finite number"
            )
    delay = int(request.inference_delay_steps) if request.HasField("inference_delay_steps") else None
    return Observation(
        images=images,
        state=state,
        instruction=request.instruction,
        prev_actions=prev,
        inference_delay_steps=delay,
    )


def _name(key: str) -> str:
    """A map key from the peer as it can appear in a field name: itself if short and printable."""
    return key if len(key) <= 64 and key.isprintable() else shown(key)


def _is_empty(image: pb.Image) -> bool:
    """True for an Image with no field set, without ``ByteSize()`` (which serialises its data)
    and reading ``data`` (which copies it) only when every other field is unset."""
    if image.height or image.width or image.channels or image.encoding:
        return False
    return not image.data


def _has_prev_actions(request: pb.PredictRequest) -> bool:
    # An empty Tensor message (no shape) is how a client says "none" without clearing the field.
    return request.HasField("prev_actions") and len(request.prev_actions.shape) > 0


def _shape(tensor: pb.Tensor) -> str:
    """The tensor's shape as text, at most 8 dimensions shown (a shape can have thousands)."""
    shape = list(tensor.shape)
    if len(shape) <= 8:
        return str(shape)
    return f"[{', '.join(map(str, shape[:8]))}, ...] ({len(shape)} dimensions)"


def _decode_tensor(tensor: pb.Tensor, name: str) -> np.ndarray:
    try:
        return from_tensor(tensor, name=name)
    except CodecError as exc:
        field, _, message = str(exc).partition(": ")
        raise InvalidRequest(field, message) from None


@dataclass(frozen=True)
class OutputProblem:
    """What is wrong with a model's output for a whole batch, said two ways.

    ``message`` for the answers of the batch (ERROR); ``bundle_message`` and ``field`` for a
    :class:`BundleError` at warm-up, naming the manifest field the model contradicts
    (``chunk_length``, ``action_dim``; None when no one field is wrong). ``kind`` is ``"shape"``
    or ``"dtype"``.
    """

    kind: Literal["shape", "dtype"]
    message: str
    bundle_message: str
    field: str | None = None


def check_output(actions: np.ndarray, bundle: Bundle, size: int) -> OutputProblem | None:
    """``None`` when a batch of ``size`` got float ``[size, chunk_length, action_dim]``, else what is wrong.

    The one check of what a model returns: the worker answers ERROR with ``message`` (then checks
    each request's row with :func:`check_actions`), warm-up raises a :class:`BundleError` with
    ``bundle_message``.
    """
    shape = tuple(actions.shape)
    expected = (size, bundle.chunk_length, bundle.action_dim)
    if shape != expected:
        message = (
            f"model returned actions of shape {list(shape)} for a batch of {size}, expected {list(expected)}"
        )
        if len(shape) == 3 and shape[0] == size:  # one manifest field is wrong: name it
            for axis, field in ((1, "chunk_length"), (2, "action_dim")):
                if shape[axis] != expected[axis]:
                    said = f"{field} is {expected[axis]}, the model returns {shape[axis]}"
                    return OutputProblem("shape", message, said, field)
        return OutputProblem(
            "shape",
            message,
            f"the model returns actions of shape {list(shape)} for a batch of {size}, expected {list(expected)}",
        )
    if actions.dtype.kind != "f":
        message = f"model returned actions of dtype {actions.dtype}, expected float"
        return OutputProblem(
            "dtype", message, f"the model returns actions of dtype {actions.dtype}, expected float"
        )
    return None


def check_actions(actions: np.ndarray) -> str | None:
    """``None`` when one request's ``actions`` (a row of a batch :func:`check_output` passed) are
    all finite, else the first non-finite entry."""
    if not np.isfinite(actions).all():
        row, col = np.argwhere(~np.isfinite(actions))[0]
        return f"model returned a non-finite action: actions[{row}, {col}] is {actions[row, col]}"
    return None

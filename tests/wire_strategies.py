"""Hypothesis strategies for arbitrary wire messages: what a broken or hostile peer could send.

Every field takes any value its proto type allows (int64 shapes, uint32 sizes, any int32 for an
enum, any bytes), mixed with values near the edges (0, 2**31, 2**32, 2**63 - 1) and with
well-formed data that has been truncated or given another size's header, so a decoder sees both
nonsense and near-misses.
"""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import strategies as st

from vla.codec import encode_image, to_tensor
from vla.v1 import policy_pb2 as pb

__all__ = ["images", "predict_requests", "predict_responses", "raw_messages", "tensors"]

_EDGES_64 = [0, 1, 2, 7, 8, 16, 2**31 - 1, 2**31, 2**32, 2**32 + 1, 2**62, 2**63 - 1, -1, -(2**63)]
_EDGES_32U = [0, 1, 2, 3, 4, 7, 8, 16, 64, 60000, 2**31, 2**32 - 1]

int64s = st.one_of(st.sampled_from(_EDGES_64), st.integers(-(2**63), 2**63 - 1), st.integers(0, 20))
uint32s = st.one_of(st.sampled_from(_EDGES_32U), st.integers(0, 2**32 - 1), st.integers(0, 70))
uint64s = st.one_of(st.sampled_from([0, 1, 2**32, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))
enum_values = st.one_of(st.integers(0, 9), st.integers(-(2**31), 2**31 - 1))
doubles = st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def tensors(draw: st.DrawFn, *, good_shape: list[int] | None = None) -> pb.Tensor:
    """A ``Tensor``: any dtype value, any shape, any bytes, or a good tensor with one thing off."""
    if draw(st.booleans()):
        shape = good_shape if good_shape is not None else draw(st.lists(st.integers(0, 4), max_size=3))
        kinds = ["float32"] * 4 + ["float64", "float16", "uint8", "int32", "int64", "bool"]
        kind = draw(st.sampled_from(kinds))
        array = np.zeros(shape, dtype=kind)
        if kind.startswith("float") and array.size and draw(st.booleans()):
            values = st.floats(allow_nan=True, allow_infinity=True, width=16)
            array.flat[:] = draw(st.lists(values, min_size=array.size, max_size=array.size))
        tensor = to_tensor(array)
        mutation = draw(st.sampled_from(["none", "none", "none", "dtype", "shape", "data", "extra_dim"]))
        if mutation == "dtype":
            tensor.dtype = draw(enum_values)  # type: ignore[assignment]
        elif mutation == "shape":
            del tensor.shape[:]
            tensor.shape.extend(draw(st.lists(int64s, max_size=4)))
        elif mutation == "data":
            tensor.data = draw(st.binary(max_size=64))
        elif mutation == "extra_dim":
            tensor.shape.append(draw(int64s))
        return tensor
    return pb.Tensor(
        dtype=draw(enum_values),  # type: ignore[arg-type]
        shape=draw(st.lists(int64s, max_size=draw(st.sampled_from([4, 40, 80])))),
        data=draw(st.binary(max_size=128)),
    )


@functools.cache
def _encoded(height: int, width: int, encoding: int) -> bytes:
    rng = np.random.default_rng(height * 1000 + width)
    return encode_image(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), encoding).data


@st.composite
def _image_data(draw: st.DrawFn, height: int, width: int, encoding: int) -> bytes:
    """Bytes for an image: random, a real JPEG/PNG/RAW of this or another size, cut or spliced."""
    kind = draw(
        st.sampled_from(["binary", "real", "real", "real", "other_size", "truncated", "spliced", "bomb"])
    )
    if kind == "binary":
        return draw(st.binary(max_size=256))
    enc = encoding if encoding in (pb.Image.RAW_RGB8, pb.Image.JPEG, pb.Image.PNG) else pb.Image.PNG
    h = height if 1 <= height <= 64 else 8
    w = width if 1 <= width <= 64 else 8
    if kind == "other_size":
        h, w = draw(st.integers(1, 32)), draw(st.integers(1, 32))
    if kind != "real":
        enc = draw(st.sampled_from([enc, pb.Image.JPEG, pb.Image.PNG]))
    data = _encoded(h, w, enc)
    if kind == "truncated":
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if kind == "spliced":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(max_size=16)) + data[at:]
    if kind == "bomb":  # a real PNG whose IHDR now claims another (possibly huge) size
        png = bytearray(_encoded(h, w, pb.Image.PNG))
        png[16:20] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
        png[20:24] = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
        return bytes(png)
    return data


@st.composite
def images(draw: st.DrawFn, *, height: int | None = None, width: int | None = None) -> pb.Image:
    """An ``Image``: half the time well-formed but for its data (real, cut, spliced, another
    size's, a bomb's header), else with any declared size, channels, encoding value and data."""
    if draw(st.integers(0, 3)):
        h = height if height is not None else draw(st.integers(1, 32))
        w = width if width is not None else draw(st.integers(1, 32))
        encoding = draw(st.sampled_from([pb.Image.RAW_RGB8, pb.Image.JPEG, pb.Image.PNG]))
        channels = 3
    else:
        h = height if height is not None and draw(st.booleans()) else draw(uint32s)
        w = width if width is not None and draw(st.booleans()) else draw(uint32s)
        encoding = draw(st.one_of(st.sampled_from([1, 2, 3]), enum_values))
        channels = draw(st.one_of(st.just(3), uint32s))
    return pb.Image(
        height=h,
        width=w,
        channels=channels,
        encoding=encoding,  # type: ignore[arg-type]
        data=draw(_image_data(h, w, encoding)),
    )


def _mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` seven times in eight: a request with one or two things wrong reaches the deep checks."""
    # Not one_of(good, good, good, bad): hypothesis does not weight repeated branches.
    return st.integers(0, 7).flatmap(lambda i: bad if i == 5 else good)


@st.composite
def predict_requests(
    draw: st.DrawFn, *, cameras: dict[str, tuple[int, int]], state_dim: int, action_dim: int
) -> pb.PredictRequest:
    """A ``PredictRequest`` built around a spec's cameras, with every field possibly wrong."""
    any_names = st.lists(
        st.one_of(st.sampled_from(sorted(cameras)), st.text(max_size=8), st.text(min_size=200, max_size=300)),
        max_size=3,
        unique=True,
    )
    names = draw(_mostly(st.just(sorted(cameras)), any_names))
    request = pb.PredictRequest(
        session_id=draw(_mostly(st.text(max_size=8), st.text(min_size=129, max_size=200))),
        request_id=draw(uint64s),
        instruction=draw(_mostly(st.text(max_size=16), st.just("x" * 5000))),
        timeout_ms=draw(st.sampled_from([0, 0, 10_000, 2**32 - 1])),
        capture_time_s=draw(_mostly(st.floats(-1e9, 1e9), doubles)),
    )
    for name in names:
        h, w = cameras.get(name, (8, 8))
        good = st.sampled_from([pb.Image.RAW_RGB8, pb.Image.JPEG, pb.Image.PNG]).map(
            lambda e, h=h, w=w: pb.Image(height=h, width=w, channels=3, encoding=e, data=_encoded(h, w, e))
        )
        request.images[name].CopyFrom(draw(_mostly(good, images(height=h, width=w))))
    finite = st.floats(-1e3, 1e3, width=32)
    good_state = st.lists(finite, min_size=state_dim, max_size=state_dim).map(
        lambda v: to_tensor(np.array(v, np.float32))
    )
    request.state.CopyFrom(draw(_mostly(good_state, tensors(good_shape=[state_dim]))))
    if draw(st.booleans()):
        rows = draw(st.integers(0, 20))
        good_prev = st.lists(finite, min_size=rows * action_dim, max_size=rows * action_dim).map(
            lambda v: to_tensor(np.array(v, np.float32).reshape(rows, action_dim))
        )
        request.prev_actions.CopyFrom(draw(_mostly(good_prev, tensors(good_shape=[rows, action_dim]))))
    if draw(st.booleans()):
        request.inference_delay_steps = draw(_mostly(st.integers(0, 16), uint32s))
    return request


@st.composite
def predict_responses(draw: st.DrawFn, *, chunk_length: int, action_dim: int) -> pb.PredictResponse:
    """A ``PredictResponse`` with any status value, actions tensor, ``dt_s`` and message."""
    response = pb.PredictResponse(
        request_id=draw(uint64s),
        status=draw(_mostly(st.just(pb.PredictResponse.OK), enum_values)),  # type: ignore[arg-type]
        message=draw(_mostly(st.text(max_size=16), st.just("m" * 100_000))),
        dt_s=draw(_mostly(st.just(0.1), doubles)),
        capture_time_s=draw(doubles),
    )
    rows = draw(st.sampled_from([chunk_length, 1, 0, chunk_length + 1]))
    values = st.floats(allow_nan=True, allow_infinity=True, width=32)
    good = st.lists(
        _mostly(st.floats(-10, 10, width=32), values), min_size=rows * action_dim, max_size=rows * action_dim
    )
    actions = good.map(lambda v: to_tensor(np.array(v, np.float32).reshape(rows, action_dim)))
    response.actions.CopyFrom(draw(_mostly(actions, tensors(good_shape=[rows, action_dim]))))
    if draw(st.booleans()):
        response.timing.total_ms = draw(st.floats(width=32))
    return response


@st.composite
def raw_messages(draw: st.DrawFn, base: st.SearchStrategy | None = None) -> bytes:
    """Bytes that may or may not parse: random, or a message from ``base`` cut short or with
    bytes inserted."""
    if base is None or not draw(st.integers(0, 3)):
        return draw(st.binary(max_size=200))
    data = draw(base).SerializeToString()
    at = draw(st.integers(0, len(data)))
    if draw(st.booleans()):
        return data[:at]
    return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]

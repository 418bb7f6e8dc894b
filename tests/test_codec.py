"""Round trips of tensors and images through the wire messages."""

from __future__ import annotations

import numpy as np
import pytest

from vla.codec import CodecError, decode_image, encode_image, from_tensor, to_tensor
from vla.v1 import policy_pb2 as pb

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    "array",
    [
        RNG.standard_normal((16, 7)).astype(np.float32),  # an action chunk
        RNG.standard_normal(8).astype(np.float64),  # a state vector in float64
        np.arange(24, dtype=np.int64).reshape(2, 3, 4),  # 3-d integer tensor
        np.zeros((0, 7), dtype=np.float32),  # empty rest of a chunk
        np.asfortranarray(RNG.standard_normal((3, 5)).astype(np.float32)),  # Fortran order in
        np.array([True, False]),  # bool
    ],
)
def test_tensor_round_trip(array: np.ndarray) -> None:
    out = from_tensor(to_tensor(array))
    assert out.dtype == array.dtype.newbyteorder("<") or out.dtype == array.dtype
    assert out.shape == array.shape
    np.testing.assert_array_equal(out, array)


def test_tensor_with_wrong_byte_count_names_the_field() -> None:
    t = to_tensor(np.zeros(8, np.float32))
    t.data = t.data[:-4]
    with pytest.raises(CodecError, match=r"state: 28 bytes.*needs 32"):
        from_tensor(t, name="state")


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(CodecError, match="complex128"):
        to_tensor(np.zeros(2, np.complex128))


@pytest.mark.parametrize("encoding", [pb.Image.RAW_RGB8, pb.Image.PNG])
def test_lossless_image_round_trip(encoding: int) -> None:
    rgb = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(encode_image(rgb, encoding)), rgb)


def test_jpeg_round_trip_is_close() -> None:
    rgb = np.full((32, 40, 3), (200, 30, 60), np.uint8)
    out = decode_image(encode_image(rgb, pb.Image.JPEG, jpeg_quality=95))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).max() < 8


def test_raw_image_with_wrong_size_names_the_camera() -> None:
    img = encode_image(np.zeros((10, 10, 3), np.uint8))
    img.height = 12
    with pytest.raises(CodecError, match="wrist"):
        decode_image(img, name="wrist")


def test_corrupt_jpeg_is_an_error() -> None:
    img = pb.Image(height=4, width=4, channels=3, encoding=pb.Image.JPEG, data=b"not a jpeg")
    with pytest.raises(CodecError, match="not a valid JPEG"):
        decode_image(img, name="front")

"""Round trips of tensors and images through the wire messages."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.wire_strategies import images, tensors
from vla.codec import CodecError, decode_image, encode_image, from_tensor, peek_varint, to_tensor
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


# --- bytes from the peer are never trusted (issue 10, kind 2) ------------------------------------


def test_huge_shape_with_empty_data_is_a_codec_error_naming_the_field() -> None:
    """Regression: [2**32, 2**32] has 2**64 elements, which wraps to 0 in int64 and used to match
    the empty data, then failed in numpy's reshape with a ValueError."""
    tensor = pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[2**32, 2**32], data=b"")
    with pytest.raises(
        CodecError, match=r"^prev_actions: shape \[4294967296, 4294967296\] of float32 is larger"
    ):
        from_tensor(tensor, name="prev_actions")


@pytest.mark.parametrize(
    ("tensor", "expected"),
    [
        # an empty tensor whose other dimensions overflow numpy's size arithmetic
        (pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[0, 2**62, 2**62]), r"larger than 2147483648 bytes"),
        # more dimensions than numpy supports, all zero
        (pb.Tensor(dtype=pb.Tensor.UINT8, shape=[0] * 70), r"70 dimensions, at most 32"),
        (pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[-1, -4], data=b"\0" * 16), r"negative dimension"),
        (pb.Tensor(dtype=pb.Tensor.BFLOAT16, shape=[1], data=b"\0\0"), r"dtype BFLOAT16 is not supported"),
        (pb.Tensor(dtype=42, shape=[1], data=b"\0"), r"dtype 42 is not supported"),  # unknown enum value
        (pb.Tensor(dtype=pb.Tensor.DTYPE_UNSPECIFIED), r"dtype DTYPE_UNSPECIFIED"),  # an empty message
        (pb.Tensor(dtype=pb.Tensor.INT64, shape=[3], data=b"\0" * 23), r"23 bytes of data, .* needs 24"),
    ],
)
def test_malformed_tensor_is_a_codec_error(tensor: pb.Tensor, expected: str) -> None:
    with pytest.raises(CodecError, match=expected):
        from_tensor(tensor, name="t")


def test_an_empty_tensor_with_sane_dimensions_decodes() -> None:
    out = from_tensor(pb.Tensor(dtype=pb.Tensor.FLOAT32, shape=[0, 7]))
    assert out.shape == (0, 7) and out.dtype == np.float32


@settings(max_examples=400, deadline=None)
@given(tensors())
def test_decoding_any_tensor_gives_its_shape_or_a_codec_error(tensor: pb.Tensor) -> None:
    try:
        out = from_tensor(tensor, name="x")
    except CodecError as exc:
        assert str(exc).startswith("x: ")
        event("refused")
        return
    event("decoded")
    assert list(out.shape) == list(tensor.shape)
    assert out.nbytes == len(tensor.data)


def _png_claiming(width: int, height: int, real: tuple[int, int] = (4, 4)) -> bytes:
    """A real PNG of ``real`` (h, w) pixels whose IHDR says ``width x height``: a decompression bomb
    when the numbers are large (the decoder allocates the declared size before reading the rows)."""
    png = bytearray(encode_image(np.zeros((*real, 3), np.uint8), pb.Image.PNG).data)
    png[16:20] = width.to_bytes(4, "big")
    png[20:24] = height.to_bytes(4, "big")
    return bytes(png)


def _jpeg(height: int = 16, width: int = 16) -> bytes:
    return encode_image(np.full((height, width, 3), 90, np.uint8), pb.Image.JPEG).data


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        # a 100-byte PNG declaring 60000x60000 under a message that says 64x64
        (pb.Image(height=64, width=64, channels=3, encoding=pb.Image.PNG, data=_png_claiming(60000, 60000)),
         r"PNG header says 60000x60000, the message says 64x64"),
        # the same bomb with the message agreeing: refused on the pixel count, before decoding
        (pb.Image(height=60000, width=60000, channels=3, encoding=pb.Image.PNG, data=_png_claiming(60000, 60000)),
         r"60000x60000 \(width x height\) is more than 67108864 pixels"),
        # a JPEG whose frame header says 16x16 under a message that says 32x32
        (pb.Image(height=32, width=32, channels=3, encoding=pb.Image.JPEG, data=_jpeg()),
         r"JPEG header says 16x16, the message says 32x32"),
        # a JPEG cut short: decoders would fill the rest with grey and call it a success
        (pb.Image(height=16, width=16, channels=3, encoding=pb.Image.JPEG, data=_jpeg()[:-40]),
         r"not a valid JPEG image \(truncated"),
        # a PNG cut short
        (pb.Image(height=4, width=4, channels=3, encoding=pb.Image.PNG, data=_png_claiming(4, 4)[:-13]),
         r"not a valid PNG image \(truncated"),
        # PNG bytes labelled JPEG: OpenCV would decode any format it knows; only the labelled one is read
        (pb.Image(height=4, width=4, channels=3, encoding=pb.Image.JPEG, data=_png_claiming(4, 4)),
         r"not a valid JPEG image \(no JPEG header\)"),
        (pb.Image(height=4, width=4, channels=3, encoding=7, data=b"\0" * 48), r"unknown encoding 7"),
        (pb.Image(height=4, width=4, channels=3, encoding=pb.Image.ENCODING_UNSPECIFIED, data=b"\0" * 48),
         r"unknown encoding ENCODING_UNSPECIFIED"),
        (pb.Image(height=0, width=4, channels=3, encoding=pb.Image.RAW_RGB8), r"4x0 \(width x height\) is empty"),
        (pb.Image(height=4, width=4, channels=2**32 - 1, encoding=pb.Image.RAW_RGB8), r"4294967295 channels"),
        # RAW sizes as Python integers: 2**32 x 2**32 x 3 does not wrap to match empty data
        (pb.Image(height=2**32 - 1, width=2**32 - 1, channels=3, encoding=pb.Image.RAW_RGB8),
         r"more than 67108864 pixels"),
    ],
)  # fmt: skip
def test_malformed_image_is_refused_before_decoding(
    image: pb.Image, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cv2

    def must_not_decode(*args: object) -> None:
        raise AssertionError("the decoder was reached")

    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    with pytest.raises(CodecError, match=f"^front: .*{expected}"):
        decode_image(image, name="front")


def test_an_exif_rotation_does_not_swap_the_checked_size() -> None:
    """A JPEG with EXIF orientation 6 (rotate 90°) is decoded as stored, matching its header."""
    jpeg = _jpeg(height=8, width=24)
    # APP1 Exif, big-endian TIFF, one IFD entry: Orientation (0x0112), SHORT, 1 value, 6.
    tiff = (
        b"MM\x00\x2a\x00\x00\x00\x08"
        + b"\x00\x01"
        + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
        + b"\0\0\0\0"
    )
    app1 = b"Exif\0\0" + tiff
    data = jpeg[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + jpeg[2:]
    image = pb.Image(height=8, width=24, channels=3, encoding=pb.Image.JPEG, data=data)
    assert decode_image(image).shape == (8, 24, 3)


@settings(max_examples=300, deadline=None)
@given(images(height=16, width=16))
def test_decoding_any_image_gives_its_declared_size_or_a_codec_error(image: pb.Image) -> None:
    try:
        out = decode_image(image, name="cam")
    except CodecError as exc:
        assert str(exc).startswith("cam: ")
        event("refused")
        return
    event("decoded")
    assert (out.shape, out.dtype) == ((image.height, image.width, 3), np.uint8)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (pb.PredictRequest(request_id=2**64 - 1, session_id="s").SerializeToString(), 2**64 - 1),
        (pb.PredictRequest(session_id="s", instruction="x").SerializeToString(), None),  # absent
        (pb.PredictRequest(request_id=5, instruction="abc").SerializeToString()[:-1], 5),  # cut short
        (b"\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", None),  # a length that runs off the end
        (b"", None),
    ],
)
def test_peek_varint_reads_the_request_id_of_bytes_that_do_not_parse(
    data: bytes, expected: int | None
) -> None:
    assert peek_varint(data, 2) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_peek_varint_never_raises(data: bytes) -> None:
    value = peek_varint(data, 2)
    assert value is None or 0 <= value < 2**64

"""Requests that fuzzing (``fuzz/fuzz_request.py``, issue 15) found to cost the server gigabytes:
each is refused as INVALID before the image decoder runs.

1. A PNG whose chunk length runs past the data: OpenCV allocates the declared length first, so
   a 268-byte 8x8 PNG declaring a 4 GB IDAT took 4 GB and 33 s to refuse.
2. A JPEG whose FF00 "segment" hides a real frame header: the size check walked over it by its
   length and read the 8x8 frame behind, libjpeg skipped FF00 as garbage and decoded the
   20000x20000 frame inside (1.2 GB, 18 s) before the shape check refused it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference_server.bundle import load_bundle
from inference_server.errors import InvalidRequest
from inference_server.service import parse_request
from inference_server.validation import decode_request
from vla.codec import CodecError, decode_image, encode_image
from vla.v1 import policy_pb2 as pb

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
MAX_REQUEST_BYTES = 1 << 16


@pytest.fixture
def no_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoder must not see the data: reaching ``cv2.imdecode`` fails the test."""

    def imdecode(*args: object) -> None:
        raise AssertionError("cv2.imdecode was called")

    monkeypatch.setattr(cv2, "imdecode", imdecode)


def png(height: int, width: int, seed: int = 0) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode_image(rgb, pb.Image.PNG).data


def chunks(data: bytes) -> list[tuple[int, bytes]]:
    """``(offset, type)`` of each chunk of a well-formed PNG."""
    out, i = [], 8
    while i < len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        out.append((i, data[i + 4 : i + 8]))
        i += 12 + length
    return out


def with_length(data: bytes, chunk_type: bytes, length: int) -> bytes:
    offset = next(i for i, t in chunks(data) if t == chunk_type)
    return data[:offset] + length.to_bytes(4, "big") + data[offset + 4 :]


def png_image(data: bytes, height: int = 8, width: int = 8) -> pb.Image:
    return pb.Image(height=height, width=width, channels=3, encoding=pb.Image.PNG, data=data)


@pytest.mark.parametrize(
    "length",
    [0xFD000057, 0x270000D3, 2**31 - 1, 2**32 - 1, 1 << 20],
    ids=["4GB-fuzz", "650MB-fuzz", "max-legal", "max-u32", "1MB"],
)
def test_png_chunk_length_past_the_data_is_refused_before_decoding(length: int, no_decoder: None) -> None:
    bad = with_length(png(8, 8), b"IDAT", length)
    with pytest.raises(CodecError, match=r"^image: .*PNG.*a chunk's length runs past the data"):
        decode_image(png_image(bad))


def test_png_ancillary_chunk_length_past_the_data_is_refused(no_decoder: None) -> None:
    good = png(8, 8)
    offset = next(i for i, t in chunks(good) if t == b"IDAT")
    text = (0x7FFFFFFF).to_bytes(4, "big") + b"tEXt" + b"k\x00v" + b"\x00" * 4
    with pytest.raises(CodecError, match="a chunk's length runs past the data"):
        decode_image(png_image(good[:offset] + text + good[offset:]))


def test_png_walk_must_end_on_the_last_chunk(no_decoder: None) -> None:
    """An IEND tail appended after a chunk whose length is one byte short is not a PNG's end."""
    good = png(8, 8)
    idat = next(i for i, t in chunks(good) if t == b"IDAT")
    length = int.from_bytes(good[idat : idat + 4], "big")
    with pytest.raises(CodecError, match="a chunk's length runs past the data"):
        decode_image(png_image(with_length(good, b"IDAT", length - 1)))


def test_png_with_many_idat_chunks_still_decodes() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    image = encode_image(rgb, pb.Image.PNG)
    assert sum(t == b"IDAT" for _, t in chunks(image.data)) > 1
    np.testing.assert_array_equal(decode_image(image), rgb)


def jpeg_hiding_a_frame(hidden: int) -> bytes:
    """An 8x8 JPEG frame header after an FF00 'segment' whose bytes hold a ``hidden``-square JPEG."""
    blank = encode_image(np.zeros((8, 8, 3), np.uint8), pb.Image.JPEG).data
    sof = blank.index(b"\xff\xc0")
    big = blank[: sof + 5] + hidden.to_bytes(2, "big") * 2 + blank[sof + 9 :]
    body = big[2:]
    length = int.from_bytes(blank[sof + 2 : sof + 4], "big")
    return (
        b"\xff\xd8"
        + b"\xff\x00"
        + (2 + len(body)).to_bytes(2, "big")
        + body
        + blank[sof : sof + 2 + length]
        + b"\xff\xd9"
    )


def test_jpeg_ff00_hiding_a_large_frame_is_refused_before_decoding(no_decoder: None) -> None:
    image = pb.Image(height=8, width=8, channels=3, encoding=pb.Image.JPEG, data=jpeg_hiding_a_frame(20000))
    with pytest.raises(CodecError, match=r"^image: data is not a valid JPEG image \(no JPEG header\)"):
        decode_image(image)


@pytest.mark.parametrize("marker", [0x00, 0x02, 0x4F, 0xBF])
def test_jpeg_reserved_marker_before_the_frame_is_refused(marker: int, no_decoder: None) -> None:
    blank = encode_image(np.zeros((8, 8, 3), np.uint8), pb.Image.JPEG).data
    data = b"\xff\xd8" + bytes([0xFF, marker]) + b"\x00\x04ab" + blank[2:]
    image = pb.Image(height=8, width=8, channels=3, encoding=pb.Image.JPEG, data=data)
    with pytest.raises(CodecError, match="no JPEG header"):
        decode_image(image)


@pytest.mark.parametrize("name", ["crash-png-idat-length-4gb", "crash-png-idat-length-650mb"])
def test_fuzzer_crash_requests_are_invalid_naming_the_camera(name: str) -> None:
    """The two requests the fuzzer wrote as out-of-memory reproducers, as the server reads them."""
    bundle = load_bundle(FUZZ / "bundle")
    request = parse_request((FUZZ / "corpus" / "request" / name).read_bytes(), MAX_REQUEST_BYTES)
    assert isinstance(request, pb.PredictRequest)
    with pytest.raises(InvalidRequest, match="a chunk's length runs past the data") as info:
        decode_request(request, bundle, MAX_REQUEST_BYTES)
    assert info.value.field in {"images.front", "images.wrist"}

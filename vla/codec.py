"""numpy arrays and images to and from the wire messages, with no pickle.

Tensors are raw little-endian C-order bytes with an explicit dtype and shape, so any language can
read them and nothing executes on decode. Images are raw RGB bytes, JPEG or PNG.

Decoding trusts nothing it reads: every dtype, dimension, byte count and image size is checked
with Python integers (which cannot wrap) against the data length and the bounds below *before*
anything is allocated, reshaped or decompressed, and every failure is a :class:`CodecError`
naming the field, which the server turns into an INVALID answer and the agent into a rejected
chunk. A compressed image's own header must agree with the size the message declares before the
decoder runs, so a few bytes declaring 60000x60000 pixels (a decompression bomb) never reach it.
"""

from __future__ import annotations

import numpy as np

from vla.v1 import policy_pb2 as pb

__all__ = [
    "MAX_IMAGE_PIXELS",
    "MAX_TENSOR_BYTES",
    "MAX_TENSOR_DIMS",
    "CodecError",
    "decode_image",
    "dtype_name",
    "encode_image",
    "encode_image_into",
    "encoding_name",
    "from_tensor",
    "peek_varint",
    "to_tensor",
]

#: Most dimensions a tensor may have: numpy 1.x's limit (``NPY_MAXDIMS``; numpy 2 allows 64).
MAX_TENSOR_DIMS = 32
#: Largest tensor a shape may describe, in bytes, zero-sized dimensions counted as 1: gRPC cannot
#: carry a message over 2 GiB, so no honest tensor is larger. It also keeps numpy's own size
#: arithmetic (int64) from overflowing on an empty tensor such as ``[0, 2**62, 2**62]``.
MAX_TENSOR_BYTES = 2**31
#: Most pixels a decoded image may have: 8192 x 8192 (201 MB as RGB), far above any camera a
#: policy reads, and far below what would exhaust memory.
MAX_IMAGE_PIXELS = 8192 * 8192

_NUMPY_BY_DTYPE: dict[int, np.dtype] = {
    pb.Tensor.FLOAT32: np.dtype("<f4"),
    pb.Tensor.FLOAT16: np.dtype("<f2"),
    pb.Tensor.FLOAT64: np.dtype("<f8"),
    pb.Tensor.UINT8: np.dtype("u1"),
    pb.Tensor.INT32: np.dtype("<i4"),
    pb.Tensor.INT64: np.dtype("<i8"),
    pb.Tensor.BOOL: np.dtype("?"),
}
_DTYPE_BY_KIND: dict[str, pb.Tensor.DType] = {
    "float32": pb.Tensor.FLOAT32,
    "float16": pb.Tensor.FLOAT16,
    "float64": pb.Tensor.FLOAT64,
    "uint8": pb.Tensor.UINT8,
    "int32": pb.Tensor.INT32,
    "int64": pb.Tensor.INT64,
    "bool": pb.Tensor.BOOL,
}
# Per request, a dict lookup: ``Enum.Name`` and ``Enum.values()`` build lists, ``dtype.name`` a string.
_DTYPE_BY_NUMPY: dict[np.dtype, pb.Tensor.DType] = {
    np.dtype(kind): dtype for kind, dtype in _DTYPE_BY_KIND.items()
}
_DTYPE_NAMES: dict[int, str] = {value: name for name, value in pb.Tensor.DType.items()}
_ENCODING_NAMES: dict[int, str] = {value: name for name, value in pb.Image.Encoding.items()}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk with its CRC: a PNG's last 12 bytes
# JPEG start-of-frame markers (ITU T.81 table B.1): SOF0-3, 5-7, 9-11, 13-15; C4, C8, CC are not frames.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class CodecError(ValueError):
    """Raised when a message cannot be turned back into an array or image; the message starts
    with the field's name and a colon (``prev_actions: ...``)."""


def dtype_name(dtype: int) -> str:
    """``FLOAT32`` for a known :class:`pb.Tensor.DType` value, else the number as text."""
    return _DTYPE_NAMES.get(dtype) or str(dtype)


def encoding_name(encoding: int) -> str:
    """``JPEG`` for a known :class:`pb.Image.Encoding` value, else the number as text."""
    return _ENCODING_NAMES.get(encoding) or str(encoding)


def to_tensor(array: np.ndarray) -> pb.Tensor:
    """Pack ``array`` as little-endian C-order bytes with its dtype and shape.

    Raises :class:`CodecError` for a dtype the wire has no name for (complex, object, ...).
    """
    array = np.asarray(array)
    dtype = _DTYPE_BY_NUMPY.get(array.dtype)  # the native dtypes; a big-endian one goes by its name
    if dtype is None:
        try:
            dtype = _DTYPE_BY_KIND[array.dtype.name]
        except KeyError:
            raise CodecError(f"dtype {array.dtype.name!r} cannot be sent on the wire") from None
    wire = np.ascontiguousarray(array, dtype=_NUMPY_BY_DTYPE[dtype])
    return pb.Tensor(dtype=dtype, shape=list(wire.shape), data=wire.tobytes())


def from_tensor(tensor: pb.Tensor, *, name: str = "tensor") -> np.ndarray:
    """Unpack a :class:`pb.Tensor` into a read-only array viewing its bytes (no copy).

    ``name`` is the field named in errors. Raises :class:`CodecError` when the dtype is unknown or
    unsupported (BFLOAT16), the shape has more than :data:`MAX_TENSOR_DIMS` dimensions, a negative
    one, or describes more than :data:`MAX_TENSOR_BYTES`, or the byte count does not match it.
    """
    dtype = _NUMPY_BY_DTYPE.get(tensor.dtype)
    if dtype is None:
        raise CodecError(f"{name}: dtype {dtype_name(tensor.dtype)} is not supported")
    shape = [int(d) for d in tensor.shape]
    if len(shape) > MAX_TENSOR_DIMS:
        raise CodecError(f"{name}: {len(shape)} dimensions, at most {MAX_TENSOR_DIMS} are supported")
    if any(d < 0 for d in shape):
        raise CodecError(f"{name}: negative dimension in shape {shape}")
    # Python integers: the products below cannot wrap, unlike numpy's int64 arithmetic.
    bound = dtype.itemsize
    for d in shape:
        bound *= max(d, 1)
    if bound > MAX_TENSOR_BYTES:
        raise CodecError(f"{name}: shape {shape} of {dtype.name} is larger than {MAX_TENSOR_BYTES} bytes")
    expected = dtype.itemsize
    for d in shape:
        expected *= d
    if len(tensor.data) != expected:
        raise CodecError(
            f"{name}: {len(tensor.data)} bytes of data, shape {shape} of {dtype.name} needs {expected}"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def encode_image(rgb: np.ndarray, encoding: int = pb.Image.RAW_RGB8, *, jpeg_quality: int = 90) -> pb.Image:
    """Encode an RGB uint8 ``[H, W, 3]`` frame as raw bytes, JPEG (``jpeg_quality`` 0-100) or PNG.

    Raises :class:`CodecError` for another dtype or shape, an unknown encoding, or when OpenCV
    cannot encode the frame. To fill a field of a message in place (a request's ``images`` map
    entry), :func:`encode_image_into` saves a copy of the bytes.
    """
    image = pb.Image()
    encode_image_into(image, rgb, encoding, jpeg_quality=jpeg_quality)
    return image


def encode_image_into(
    image: pb.Image, rgb: np.ndarray, encoding: int = pb.Image.RAW_RGB8, *, jpeg_quality: int = 90
) -> None:
    """:func:`encode_image` written into ``image`` (every field set), e.g. ``request.images[name]``.

    The pixels are copied twice, each unavoidable: to a ``bytes`` object (protobuf takes nothing
    else) and from it into the message. Building a ``pb.Image`` and then putting it in the map
    (``images={...}`` or ``CopyFrom``) copies them a third time. Raises as :func:`encode_image`;
    ``image`` is left unchanged then.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise CodecError(f"image must be uint8 [H, W, 3], got {rgb.dtype} {list(rgb.shape)}")
    height, width, channels = rgb.shape
    if encoding == pb.Image.RAW_RGB8:
        data = rgb.tobytes()  # C order whatever the array's layout: no ascontiguousarray needed
    elif encoding in (pb.Image.JPEG, pb.Image.PNG):
        import cv2

        ext, params = (
            (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if encoding == pb.Image.JPEG
            else (".png", [])
        )
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
        if not ok:
            raise CodecError(f"OpenCV could not encode a {width}x{height} image as {ext}")
        data = buf.tobytes()
    else:
        raise CodecError(f"unknown image encoding {encoding_name(encoding)}")
    image.height = height
    image.width = width
    image.channels = channels
    # ``encoding`` is the caller's int (one of the three by now); the stub wants the enum type.
    image.encoding = encoding  # type: ignore[assignment]
    image.data = data


def decode_image(image: pb.Image, *, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode to an RGB uint8 ``[H, W, 3]`` array of the size the message declares.

    Raises :class:`CodecError` (message starting with ``name``) when the declared size is empty
    or over ``max_pixels``, the channels are not 3, the encoding is unknown, a RAW_RGB8 byte count
    is not ``height * width * 3``, or JPEG/PNG data does not start with its format's signature,
    is truncated, declares another size in its own header (checked before decoding), has a PNG
    chunk whose length runs past the data or a JPEG byte pair that is not a marker before its
    frame header (both read differently by the decoder, checked before decoding), or does not
    decode.
    """
    height, width, channels = int(image.height), int(image.width), int(image.channels)
    if channels != 3:
        raise CodecError(f"{name}: {channels} channels, expected 3 (RGB)")
    if height < 1 or width < 1:
        raise CodecError(f"{name}: {width}x{height} (width x height) is empty")
    if height * width > max_pixels:
        raise CodecError(f"{name}: {width}x{height} (width x height) is more than {max_pixels} pixels")
    data = image.data
    if image.encoding == pb.Image.RAW_RGB8:
        expected = height * width * channels
        if len(data) != expected:
            raise CodecError(f"{name}: {len(data)} bytes of RAW_RGB8, {width}x{height}x3 needs {expected}")
        return np.frombuffer(data, dtype=np.uint8).reshape(height, width, channels)
    if image.encoding == pb.Image.JPEG:
        header = _jpeg_size(data)
        # Decoders fill a truncated JPEG with grey and call it a success: require the end marker.
        complete = data.rstrip(b"\x00").endswith(b"\xff\xd9")
    elif image.encoding == pb.Image.PNG:
        header = _png_size(data)
        complete = data.endswith(_PNG_IEND)
    else:
        raise CodecError(f"{name}: unknown encoding {encoding_name(image.encoding)}")
    label = encoding_name(image.encoding)
    if header is None:
        raise CodecError(f"{name}: data is not a valid {label} image (no {label} header)")
    if header != (width, height):
        raise CodecError(
            f"{name}: {label} header says {header[0]}x{header[1]}, the message says {width}x{height}"
        )
    if not complete:
        raise CodecError(f"{name}: data is not a valid {label} image (truncated: no end marker)")
    if image.encoding == pb.Image.PNG and not _png_chunks_fit(data):
        raise CodecError(f"{name}: data is not a valid PNG image (a chunk's length runs past the data)")
    import cv2

    # IGNORE_ORIENTATION: an EXIF rotation would swap the checked height and width.
    try:
        bgr = cv2.imdecode(
            np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        )
    except cv2.error as exc:
        raise CodecError(f"{name}: data is not a valid {label} image ({exc.err})") from None
    if bgr is None:
        raise CodecError(f"{name}: data is not a valid {label} image")
    if bgr.shape != (height, width, 3):
        raise CodecError(f"{name}: decoded {bgr.shape[1]}x{bgr.shape[0]}, header says {width}x{height}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _png_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR chunk, which the PNG spec puts first; else None."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _png_chunks_fit(data: bytes) -> bool:
    """True when every chunk of a PNG, walked by its length field from the signature, fits in
    ``data`` (a length is at most 2**31 - 1, PNG spec section 5.3) and the walk ends on an IEND
    chunk at the very end.

    OpenCV's reader allocates a chunk's declared length before reading it: a 268-byte 8x8 PNG
    whose IDAT declared 4 GB took 4 GB of memory and 33 s to refuse (issue 15, fuzzing).
    """
    i, n = len(_PNG_SIGNATURE), len(data)
    while i + 12 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        end = i + 12 + length  # length, type, data, CRC
        if length > 2**31 - 1 or end > n:
            return False
        if data[i + 4 : i + 8] == b"IEND":
            return end == n
        i = end
    return False


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's first start-of-frame segment (ITU T.81 B.2.2); None when
    the data is not a JPEG or a scan comes before any frame header."""
    if not data.startswith(b"\xff\xd8"):
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length field
            i += 2
            continue
        if marker < 0xC0:
            # FF00 is not a marker, 02-BF are reserved (T.81 table B.1). libjpeg skips FF00 as
            # garbage where a length walk would jump over the bytes behind it: an 8x8 SOF placed
            # after a FF00 "segment" hiding a 20000x20000 one decoded 1.2 GB (issue 15, fuzzing).
            return None
        if marker in (0xD8, 0xD9, 0xDA):  # another SOI, end of image or a scan before any frame
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if length < 8 or i + 9 > n:
                return None
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    return None


def peek_varint(data: bytes, field: int) -> int | None:
    """The last value of top-level varint ``field`` in a serialized message, or None.

    Walks the protobuf wire format (https://protobuf.dev/programming-guides/encoding/) without
    parsing the fields, so the request id of a message that does not parse (bad UTF-8 in a
    string, a truncated field) can still be read and its answer matched to it. Never raises.
    """
    found: int | None = None
    i, n = 0, len(data)

    def varint() -> int:
        nonlocal i
        value = shift = 0
        while i < n and shift < 70:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise IndexError("truncated varint")

    try:
        while i < n:
            key = varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                value = varint()
                if number == field:
                    found = value & 0xFFFFFFFFFFFFFFFF
            elif wire == 1:
                i += 8
            elif wire == 2:
                length = varint()  # not ``i += varint()``: that adds to ``i`` as it was before the read
                i += length
            elif wire == 5:
                i += 4
            else:  # groups (3, 4) are not used by proto3; 6, 7 do not exist
                break
    except IndexError:
        pass
    return found

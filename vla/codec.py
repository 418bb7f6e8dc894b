"""numpy arrays and images to and from the wire messages, with no pickle.

Tensors are raw little-endian C-order bytes with an explicit dtype and shape, so any language can
read them and nothing executes on decode. Decoding checks that the byte count matches the shape
and raises :class:`CodecError` naming the problem, which the server turns into an INVALID answer.
"""

from __future__ import annotations

import numpy as np

from vla.v1 import policy_pb2 as pb

__all__ = ["CodecError", "decode_image", "encode_image", "from_tensor", "to_tensor"]

_NUMPY_BY_DTYPE: dict[int, np.dtype] = {
    pb.Tensor.FLOAT32: np.dtype("<f4"),
    pb.Tensor.FLOAT16: np.dtype("<f2"),
    pb.Tensor.FLOAT64: np.dtype("<f8"),
    pb.Tensor.UINT8: np.dtype("u1"),
    pb.Tensor.INT32: np.dtype("<i4"),
    pb.Tensor.INT64: np.dtype("<i8"),
    pb.Tensor.BOOL: np.dtype("?"),
}
_DTYPE_BY_KIND: dict[str, int] = {
    "float32": pb.Tensor.FLOAT32,
    "float16": pb.Tensor.FLOAT16,
    "float64": pb.Tensor.FLOAT64,
    "uint8": pb.Tensor.UINT8,
    "int32": pb.Tensor.INT32,
    "int64": pb.Tensor.INT64,
    "bool": pb.Tensor.BOOL,
}


class CodecError(ValueError):
    """Raised when a message cannot be turned back into an array or image."""


def to_tensor(array: np.ndarray) -> pb.Tensor:
    """Pack ``array`` as little-endian C-order bytes with its dtype and shape."""
    array = np.asarray(array)
    try:
        dtype = _DTYPE_BY_KIND[array.dtype.name]
    except KeyError:
        raise CodecError(f"dtype {array.dtype.name!r} cannot be sent on the wire") from None
    wire = np.ascontiguousarray(array, dtype=_NUMPY_BY_DTYPE[dtype])
    return pb.Tensor(dtype=dtype, shape=list(wire.shape), data=wire.tobytes())


def from_tensor(tensor: pb.Tensor, *, name: str = "tensor") -> np.ndarray:
    """Unpack a :class:`pb.Tensor`; ``name`` is the field named in errors."""
    try:
        dtype = _NUMPY_BY_DTYPE[tensor.dtype]
    except KeyError:
        label = (
            pb.Tensor.DType.Name(tensor.dtype) if tensor.dtype in pb.Tensor.DType.values() else tensor.dtype
        )
        raise CodecError(f"{name}: dtype {label} is not supported") from None
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise CodecError(f"{name}: negative dimension in shape {list(shape)}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise CodecError(
            f"{name}: {len(tensor.data)} bytes of data, shape {list(shape)} of {dtype.name} needs {expected}"
        )
    return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


def encode_image(rgb: np.ndarray, encoding: int = pb.Image.RAW_RGB8, *, jpeg_quality: int = 90) -> pb.Image:
    """Encode an RGB uint8 ``[H, W, 3]`` frame as raw bytes, JPEG or PNG."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise CodecError(f"image must be uint8 [H, W, 3], got {rgb.dtype} {list(rgb.shape)}")
    height, width, channels = rgb.shape
    if encoding == pb.Image.RAW_RGB8:
        data = np.ascontiguousarray(rgb).tobytes()
    elif encoding in (pb.Image.JPEG, pb.Image.PNG):
        import cv2

        ext, params = (
            (".jpg", [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]) if encoding == pb.Image.JPEG else (".png", [])
        )
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]), params)
        if not ok:
            raise CodecError(f"OpenCV could not encode a {width}x{height} image as {ext}")
        data = buf.tobytes()
    else:
        raise CodecError(f"unknown image encoding {encoding}")
    return pb.Image(height=height, width=width, channels=channels, encoding=encoding, data=data)


def decode_image(image: pb.Image, *, name: str = "image") -> np.ndarray:
    """Decode to an RGB uint8 ``[H, W, 3]`` array, checking it against the declared size."""
    height, width, channels = int(image.height), int(image.width), int(image.channels)
    if channels != 3:
        raise CodecError(f"{name}: {channels} channels, expected 3 (RGB)")
    if image.encoding == pb.Image.RAW_RGB8:
        expected = height * width * channels
        if len(image.data) != expected:
            raise CodecError(
                f"{name}: {len(image.data)} bytes of RAW_RGB8, {width}x{height}x3 needs {expected}"
            )
        return np.frombuffer(image.data, dtype=np.uint8).reshape(height, width, channels)
    if image.encoding in (pb.Image.JPEG, pb.Image.PNG):
        import cv2

        bgr = cv2.imdecode(np.frombuffer(image.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CodecError(f"{name}: data is not a valid {pb.Image.Encoding.Name(image.encoding)} image")
        if bgr.shape[:2] != (height, width):
            raise CodecError(f"{name}: decoded {bgr.shape[1]}x{bgr.shape[0]}, header says {width}x{height}")
        return np.ascontiguousarray(bgr[:, :, ::-1])
    raise CodecError(f"{name}: unknown encoding {image.encoding}")

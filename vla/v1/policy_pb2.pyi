from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DTYPE_UNSPECIFIED: _ClassVar[Tensor.DType]
        FLOAT32: _ClassVar[Tensor.DType]
        FLOAT16: _ClassVar[Tensor.DType]
        BFLOAT16: _ClassVar[Tensor.DType]
        FLOAT64: _ClassVar[Tensor.DType]
        UINT8: _ClassVar[Tensor.DType]
        INT32: _ClassVar[Tensor.DType]
        INT64: _ClassVar[Tensor.DType]
        BOOL: _ClassVar[Tensor.DType]
    DTYPE_UNSPECIFIED: Tensor.DType
    FLOAT32: Tensor.DType
    FLOAT16: Tensor.DType
    BFLOAT16: Tensor.DType
    FLOAT64: Tensor.DType
    UINT8: Tensor.DType
    INT32: Tensor.DType
    INT64: Tensor.DType
    BOOL: Tensor.DType
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: Tensor.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[Tensor.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("height", "width", "channels", "encoding", "data")
    class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ENCODING_UNSPECIFIED: _ClassVar[Image.Encoding]
        RAW_RGB8: _ClassVar[Image.Encoding]
        JPEG: _ClassVar[Image.Encoding]
        PNG: _ClassVar[Image.Encoding]
    ENCODING_UNSPECIFIED: Image.Encoding
    RAW_RGB8: Image.Encoding
    JPEG: Image.Encoding
    PNG: Image.Encoding
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    height: int
    width: int
    channels: int
    encoding: Image.Encoding
    data: bytes
    def __init__(self, height: _Optional[int] = ..., width: _Optional[int] = ..., channels: _Optional[int] = ..., encoding: _Optional[_Union[Image.Encoding, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetPolicySpecRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CameraSpec(_message.Message):
    __slots__ = ("name", "height", "width", "encodings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    height: int
    width: int
    encodings: _containers.RepeatedScalarFieldContainer[Image.Encoding]
    def __init__(self, name: _Optional[str] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., encodings: _Optional[_Iterable[_Union[Image.Encoding, str]]] = ...) -> None: ...

class PolicySpec(_message.Message):
    __slots__ = ("name", "version", "backend", "precision", "device", "cameras", "state_dim", "action_dim", "action_space", "action_names", "chunk_length", "dt_s", "max_batch", "state_names", "max_request_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CAMERAS_FIELD_NUMBER: _ClassVar[int]
    STATE_DIM_FIELD_NUMBER: _ClassVar[int]
    ACTION_DIM_FIELD_NUMBER: _ClassVar[int]
    ACTION_SPACE_FIELD_NUMBER: _ClassVar[int]
    ACTION_NAMES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    STATE_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    backend: str
    precision: str
    device: str
    cameras: _containers.RepeatedCompositeFieldContainer[CameraSpec]
    state_dim: int
    action_dim: int
    action_space: str
    action_names: _containers.RepeatedScalarFieldContainer[str]
    chunk_length: int
    dt_s: float
    max_batch: int
    state_names: _containers.RepeatedScalarFieldContainer[str]
    max_request_bytes: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., backend: _Optional[str] = ..., precision: _Optional[str] = ..., device: _Optional[str] = ..., cameras: _Optional[_Iterable[_Union[CameraSpec, _Mapping]]] = ..., state_dim: _Optional[int] = ..., action_dim: _Optional[int] = ..., action_space: _Optional[str] = ..., action_names: _Optional[_Iterable[str]] = ..., chunk_length: _Optional[int] = ..., dt_s: _Optional[float] = ..., max_batch: _Optional[int] = ..., state_names: _Optional[_Iterable[str]] = ..., max_request_bytes: _Optional[int] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("session_id", "request_id", "images", "state", "instruction", "timeout_ms", "prev_actions", "inference_delay_steps", "capture_time_s")
    class ImagesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Image
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PREV_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_DELAY_STEPS_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_S_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    request_id: int
    images: _containers.MessageMap[str, Image]
    state: Tensor
    instruction: str
    timeout_ms: int
    prev_actions: Tensor
    inference_delay_steps: int
    capture_time_s: float
    def __init__(self, session_id: _Optional[str] = ..., request_id: _Optional[int] = ..., images: _Optional[_Mapping[str, Image]] = ..., state: _Optional[_Union[Tensor, _Mapping]] = ..., instruction: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., prev_actions: _Optional[_Union[Tensor, _Mapping]] = ..., inference_delay_steps: _Optional[int] = ..., capture_time_s: _Optional[float] = ...) -> None: ...

class Timing(_message.Message):
    __slots__ = ("queue_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "total_ms", "batch_size")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float
    batch_size: int
    def __init__(self, queue_ms: _Optional[float] = ..., preprocess_ms: _Optional[float] = ..., inference_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("request_id", "status", "message", "actions", "dt_s", "timing", "capture_time_s")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[PredictResponse.Status]
        OK: _ClassVar[PredictResponse.Status]
        LATE: _ClassVar[PredictResponse.Status]
        INVALID: _ClassVar[PredictResponse.Status]
        ERROR: _ClassVar[PredictResponse.Status]
    STATUS_UNSPECIFIED: PredictResponse.Status
    OK: PredictResponse.Status
    LATE: PredictResponse.Status
    INVALID: PredictResponse.Status
    ERROR: PredictResponse.Status
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    DT_S_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_S_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    status: PredictResponse.Status
    message: str
    actions: Tensor
    dt_s: float
    timing: Timing
    capture_time_s: float
    def __init__(self, request_id: _Optional[int] = ..., status: _Optional[_Union[PredictResponse.Status, str]] = ..., message: _Optional[str] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ..., dt_s: _Optional[float] = ..., timing: _Optional[_Union[Timing, _Mapping]] = ..., capture_time_s: _Optional[float] = ...) -> None: ...

"""Keep multi-megabyte message buffers in the heap, so a request does not page-fault them in again.

With glibc's defaults an allocation of 128 KiB or more is its own ``mmap``: every request's fresh
buffers (the wire bytes, the parsed message, each image's bytes, the batch) are mapped, faulted
in page by page (about 4 us per 4 KiB page) and unmapped again, up to 2,000 faults per round
trip at three 480x640 cameras (issue 13). Raising the mmap threshold and the trim threshold
keeps freed buffers in the heap for the next request instead.

Process-wide: call it once, from a command's entry point, before the first request. A no-op
(returning False) where the C library has no ``mallopt`` (musl, macOS, Windows).
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD", "keep_large_buffers"]

#: ``mallopt`` parameter numbers from glibc's ``<malloc.h>``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: glibc caps ``M_MMAP_THRESHOLD`` at ``HEAP_MAX_SIZE / 2``: 32 MiB on 64-bit (mallopt(3)).
_MAX_MMAP_THRESHOLD = 32 << 20


def keep_large_buffers(mmap_threshold: int = _MAX_MMAP_THRESHOLD, trim_threshold: int = 256 << 20) -> bool:
    """Serve allocations under ``mmap_threshold`` bytes (at most 32 MiB) from the heap and keep up
    to ``trim_threshold`` bytes of freed heap top; True when glibc took both settings.

    Raises ValueError for a threshold outside ``[0, 32 MiB]`` / below 0. The cost is memory: up to
    ``trim_threshold`` of freed heap stays with the process (mallopt(3), ``M_TRIM_THRESHOLD``).
    """
    if not 0 <= mmap_threshold <= _MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold {mmap_threshold} is outside [0, {_MAX_MMAP_THRESHOLD}]")
    if trim_threshold < 0:
        raise ValueError(f"trim_threshold {trim_threshold} is negative")
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))

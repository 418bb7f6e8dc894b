"""vla.malloc: the glibc settings are taken, and bad thresholds are refused."""

from __future__ import annotations

import platform

import pytest

from vla.malloc import keep_large_buffers


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_both_settings() -> None:
    assert keep_large_buffers() is True


@pytest.mark.parametrize(("mmap_threshold", "trim_threshold"), [(-1, 0), ((32 << 20) + 1, 0), (0, -1)])
def test_out_of_range_thresholds_are_refused(mmap_threshold: int, trim_threshold: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        keep_large_buffers(mmap_threshold, trim_threshold)

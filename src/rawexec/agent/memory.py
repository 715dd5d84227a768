"""Process-wide memory settings for the long-running agent (``rawexec run``, ``rawexec agent``)."""

from __future__ import annotations

import ctypes
import functools

__all__ = ["limit_malloc_arenas", "trim_malloc"]

_M_ARENA_MAX = -8


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas. One thread per task would otherwise give glibc up to 8 arenas per
    core, each holding freed memory of its own (RSS that never goes back)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_ARENA_MAX, arenas)


def trim_malloc() -> None:
    """Give free heap pages back to the kernel (after a burst of starts or allocations)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)

"""CPU memory: let glibc keep freed memory for reuse instead of handing it back to the OS.

glibc serves every allocation above 32 MB with a fresh `mmap` and unmaps it when freed, so each large
tensor (an encode's [tokens, d_sae] output is 200 MB at 2048 tokens of a 24,576-feature SAE) costs page
faults on first touch, every time. `keep_freed_memory()` turns that off for the process (`mallopt`:
no mmap for allocations, no trimming of the heap's top), so freed blocks are reused warm. The process
keeps its peak memory until it exits. Linux with glibc only; elsewhere it says why it did nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> str | None:
    """Apply the glibc settings to this process; None when applied, else why not (one line)."""
    global _applied
    if _applied:
        return None
    if not sys.platform.startswith("linux"):
        return f"glibc malloc tuning needs Linux (this is {sys.platform})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "glibc malloc tuning needs glibc (mallopt not found: musl or another libc)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if mallopt(M_MMAP_MAX, 0) != 1 or mallopt(M_TRIM_THRESHOLD, 2**31 - 1) != 1:
        return "mallopt refused the settings"
    _applied = True
    return None


def applied() -> bool:
    return _applied

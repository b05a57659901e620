"""Memory: what an SAE's weights will take before it is loaded, what the process holds, and its peak.

Standard library only where it can be (Linux's /proc for the resident set and its peak, which
`/proc/self/clear_refs` resets); torch only for the free memory of a CUDA device. No pytest here.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
DEFAULT_FRACTION = 0.5  # of the memory free when the run starts: the default budget for SAE weights


def weights_bytes(weights: Path, dtype: str) -> int | None:
    """Bytes a safetensors file's tensors take once loaded in `dtype` (from its header, not its data);
    None when the header cannot be read."""
    from ..common.files import is_regular_file

    if not is_regular_file(weights):  # a FIFO would block the open: the load refuses it with the reason
        return None
    try:
        with open(weights, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if not 0 < size <= 100_000_000:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    per = DTYPE_BYTES.get(dtype, 4)
    total = 0
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        count = 1
        for dim in entry.get("shape", ()):
            count *= int(dim)
        total += count * per
    return total


def checkpoint_bytes(directory: Path, dtype: str) -> int | None:
    """Bytes a local checkpoint's weights take once loaded in `dtype`, before loading, in any format (its
    weights file: the last of its signature in formats.py): a safetensors file from its header (SAELens,
    sparsify); a dictionary_learning `ae.pt` or a Gemma Scope `params.npz` from the file's size (both store
    float32)."""
    from ..common.files import is_regular_file
    from .formats import SIGNATURES

    for files in SIGNATURES.values():
        weights = directory / files[-1]
        if not is_regular_file(weights):
            continue
        if weights.suffix == ".safetensors":
            return weights_bytes(weights, dtype)
        try:
            return weights.stat().st_size * DTYPE_BYTES.get(dtype, 4) // 4
        except OSError:
            return None
    return None


def proc_status(field: str) -> int | None:
    """A `kB` field of /proc/self/status in bytes (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak() -> bool:
    """Start a new peak of the resident set (VmHWM) from now; False where the system does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss() -> int | None:
    return proc_status("VmHWM")


def rss() -> int | None:
    return proc_status("VmRSS")


def available_bytes(device: str) -> int | None:
    """Memory free for new tensors: MemAvailable on the CPU, free memory of the CUDA device; None if unknown."""
    if device.startswith("cuda"):
        try:
            import torch

            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free)
        except Exception:  # no CUDA, or a device that cannot be queried
            return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def default_budget(device: str) -> int | None:
    free = available_bytes(device)
    return int(free * DEFAULT_FRACTION) if free is not None else None


def gigabytes(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"

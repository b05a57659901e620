"""Option values: their strict parsers and the session's `Options` (candidates: `candidates.py`). No pytest here.

Parsers raise `ValueError("Could not parse value: ...")`; the pytest layer turns that into a usage error.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..baselines.protocol import ComparePolicy
from ..compute.registry import DTYPES
from .candidates import Candidate


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        raise ValueError(f"Could not parse value: {value!r} (expected a positive integer)")
    return n


def non_negative_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"Could not parse value: {value!r} (expected an integer >= 0)")
    return n


def tolerance(value: str) -> float | str:
    """--interp-tolerance: a number >= 0, or `auto` (by the measurements' intervals)."""
    if value == "auto":
        return value
    try:
        return non_negative_float(value)
    except ValueError:
        raise ValueError(f"Could not parse value: {value!r} (expected a number >= 0, or auto)") from None


def non_negative_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not x >= 0:
        raise ValueError(f"Could not parse value: {value!r} (expected a number >= 0)")
    return x


def gigabytes(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not 0 < x < 1e9:
        raise ValueError(f"Could not parse value: {value!r} (expected a positive number of gigabytes, e.g. 8 or 0.5)")
    return x


def ray_address(value: str) -> str:
    from .ray_connect import ClusterError, host_port

    try:
        host_port(value)
    except ClusterError as exc:
        raise ValueError(f"Could not parse value: {value!r} ({str(exc).split(': ', 1)[-1]})") from None
    return value


def megabytes(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = float("nan")
    if not 0 <= x < 1e12:
        raise ValueError(f"Could not parse value: {value!r} (expected a number of megabytes >= 0, e.g. 1024)")
    return x


def dtype_name(value: str) -> str:
    if value not in DTYPES:
        raise ValueError(f"Could not parse value: {value!r} (expected one of {', '.join(DTYPES)})")
    return value


@dataclass(frozen=True)
class Options:
    device: str = "auto"
    dtype: str = "float32"
    batch_tokens: int | None = None
    offline: bool = False
    candidates: tuple[Candidate, ...] = ()  # --interp-sae: checkpoints every case runs on instead of the file's SAE
    update: bool = False  # --interp-update: record every observed value as the reference's baseline
    compare: bool = False  # --interp-compare: fail on drift from the baseline
    tolerance: float | str | None = None  # --interp-tolerance: one absolute tolerance for every compared value, or "auto"
    worker: int | None = None  # xdist worker index (gw3 -> 3): spreads workers over GPUs
    memory_gb: float | None = None  # --interp-memory: SAE weights a load group may hold (default: half the free memory)
    ray: str | None = None  # --interp-ray: local, auto, HOST:PORT or ray://HOST:PORT; the cases run in the cluster's tasks
    ray_cpus: int = 1  # --interp-ray-cpus: CPUs per task on a CPU cluster
    ray_retries: int = 3  # --interp-ray-retries: Ray's max_retries for a task whose node or worker was lost
    ray_ship_mb: float = 1024.0  # --interp-ray-ship: local checkpoints and corpus files sent to the workers, at most

    @property
    def policy(self) -> ComparePolicy:
        """What the baselines compare and record in this run."""
        return ComparePolicy(update=self.update, compare=self.compare, tolerance=self.tolerance)

    def describe(self) -> dict[str, object]:
        """The options as plain data, for the run's JSON document."""
        return {
            "device": self.device, "dtype": self.dtype, "batch_tokens": self.batch_tokens, "offline": self.offline,
            "candidates": [{"label": c.label, "sae": c.sae.label, "hook": c.hook, "given": c.given} for c in self.candidates],
            "update": self.update, "compare": self.compare, "tolerance": self.tolerance, "memory_gb": self.memory_gb,
            "ray": self.ray,
        }

"""How the benchmarks time (nanoGPT style, pytest-benchmark's conventions) and what they record about where.

Timing is `time.perf_counter` around a callable that synchronises CUDA before it returns. A baseline (the
bare matmul, unsteered generation, the notebook loop, the bare compute) is timed by `Interleaved`, which
pytest-benchmark calls as the `setup` of every round, so benchmark and baseline alternate round by round,
on the same machine in the same state, and their ratio does not drift with the machine's load.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .targets import Loaded

DEFAULT_ROUNDS = {"cpu": (3, 1), "cuda": (20, 3)}  # (measured rounds, warm-up rounds) per device type


@dataclass(frozen=True)
class BenchEnv:
    """Where and how the benchmarks run (from the pytest options)."""

    device: str
    dtype: str
    rounds: int
    warmup: int

    def info(self, loaded: Loaded) -> dict[str, Any]:
        """The extra_info every benchmark carries: what ran, where, in which dtype."""
        import torch

        return {
            "model": loaded.model_name,
            "sae": loaded.sae_name,
            "hook": loaded.hook,
            "d_in": int(loaded.sae.cfg.d_in),
            "d_sae": int(loaded.sae.cfg.d_sae),
            "device": self.device,
            "device_name": device_name(self.device),
            "dtype": self.dtype,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "allocator": allocator(),
            "rounds": self.rounds,
            "warmup_rounds": self.warmup,
        } | ({"replaces": loaded.replaces} if loaded.replaces else {}) | (
            {"float32_matmul_precision": torch.get_float32_matmul_precision()} if self.device.startswith("cuda") else {}
        )


def default_rounds(device: str) -> tuple[int, int]:
    return DEFAULT_ROUNDS.get(device.split(":")[0], DEFAULT_ROUNDS["cpu"])


def allocator() -> str:
    """The process's malloc as it bears on CPU timings: a preloaded jemalloc/tcmalloc (with MALLOC_CONF), else the C library's."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        maps = ""
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if f"lib{name}" in maps:
            conf = os.environ.get("MALLOC_CONF", "") if name == "jemalloc" else ""
            return name + (f" ({conf})" if conf else "")
    return "libc"


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def benchmark_median(benchmark: Any) -> float | None:
    """The median seconds of a finished pytest-benchmark fixture; None when benchmarks are disabled."""
    stats = getattr(benchmark, "stats", None)
    return None if stats is None else float(stats.stats.median)


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work: torch.cuda.synchronize on CUDA, nothing on CPU."""
    import torch

    if device.startswith("cuda"):
        dev = torch.device(device)
        return lambda: torch.cuda.synchronize(dev)
    return lambda: None


def synced(fn: Callable[[], Any], device: str) -> Callable[[], None]:
    """fn, then a device synchronisation, returning nothing (outputs are freed at once)."""
    sync = synchronizer(device)

    def run() -> None:
        fn()
        sync()

    run.__name__ = getattr(fn, "__name__", "run")
    return run


@dataclass
class Interleaved:
    """Baselines timed once each before every round of a benchmark: pass it as pedantic's `setup`.

    pytest-benchmark calls `setup` before each warm-up and each measured round; the first `warmup` calls
    are dropped, so baseline and benchmark get the same number of rounds. A baseline may return a dict of
    its own sub-timings (seconds), kept as `name.part`.
    """

    baselines: Mapping[str, Callable[[], dict[str, float] | None]]
    warmup: int
    times: dict[str, list[float]] = field(default_factory=dict)
    calls: int = 0

    def __call__(self) -> None:
        self.calls += 1
        for name, fn in self.baselines.items():
            t0 = time.perf_counter()
            parts = fn()
            self._add(name, time.perf_counter() - t0)
            for part, seconds in (parts or {}).items():
                self._add(f"{name}.{part}", seconds)

    def _add(self, name: str, seconds: float) -> None:
        if self.calls > self.warmup:
            self.times.setdefault(name, []).append(seconds)

    def median(self, name: str) -> float | None:
        got = self.times.get(name)
        return statistics.median(got) if got else None

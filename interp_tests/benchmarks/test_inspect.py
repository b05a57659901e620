"""`interp-tests inspect` on one sentence, end to end: a fresh `python -m interp_tests inspect` process each
round (interpreter start, imports, loading the bundled pair, the forward, the table), against the same
command with `--transformer-lens` (the bundled pair through TransformerLens and SAELens), alternated round
by round. Target: under 5 s on the project's 2-core CPU. The two print the same table.

The bundled pair only (what the target is about): --interp-sae does not apply. With --benchmark-disable
(CI's smoke run) each command runs once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from .timing import BenchEnv, benchmark_median

SENTENCE = "def add(a, b):\n    return a + b"


def inspect_command(*extra: str) -> list[str]:
    return [sys.executable, "-m", "interp_tests", "inspect", *extra, SENTENCE]


def run_inspect(*extra: str, threads: int) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(inspect_command(*extra, "--threads", str(threads)), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_inspect_end_to_end(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any) -> None:
    import torch

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    threads = torch.get_num_threads()
    outputs: dict[str, str] = {}
    full: list[float] = []

    def bundled_forward() -> None:
        outputs["bundled_forward"] = run_inspect(threads=threads)

    def through_transformer_lens() -> None:  # the baseline, timed in each round next to the benchmark
        start = time.perf_counter()
        outputs["transformer_lens"] = run_inspect("--transformer-lens", threads=threads)
        full.append(time.perf_counter() - start)

    rounds = 1 if smoke else bench_env.rounds
    benchmark.pedantic(bundled_forward, setup=through_transformer_lens, rounds=rounds, warmup_rounds=0)
    assert outputs["bundled_forward"] == outputs["transformer_lens"]
    info: dict[str, Any] = {"model": "tiny-stdlib", "sae": "tiny-stdlib-res/blocks.1.hook_resid_pre", "device": "cpu", "dtype": "float32", "threads": threads, "target_s": 5.0}
    median = benchmark_median(benchmark)
    if median is not None:
        full_s = sorted(full)[len(full) // 2]
        info |= {
            "median_s": median, "transformer_lens_median_s": full_s, "transformer_lens_over_bundled_forward": full_s / median,
            "note": f"process start included; with --transformer-lens {full_s:.2f} s ({full_s / median:.2f}x); target under 5 s",
        }
    benchmark.extra_info.update(info)

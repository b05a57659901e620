"""A sweep of 8 candidates at one hook of the GPT-2-small-shaped target in one run, against 8 separate runs (one
candidate each, each doing its own forward), timed round by round alternately. Both go through the Python API
(`interp_tests.evaluate`, the plugin's code): a case file of the engine workload's texts with reconstruction,
sparsity and feature claims, the model in memory, the candidates saved as SAELens directories. The case
file's reference is not present (as in a user's CI, where only its baseline is): no feature matching, which
would cost the same in both. Target: at least 2x faster.

The ideal ratio by multiply-accumulate count: separate runs do 8 x (stopped forward + encode + decode), the
sweep 1 x forward + 8 x (encode + decode); `ideal_ratio` in extra_info, and how close the run comes.

With --benchmark-disable (CI's smoke run): 2 candidates of 1,024 features over 2 cases.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .timing import BenchEnv, benchmark_median, synced

CANDIDATES, WIDTH, CASES = 8, 24_576, 12


def case_file(path: Path, cases: list[tuple[str, ...]], hook: str) -> Path:
    import json

    lines = ["target:", "  model: gpt2", "  sae: {path: reference-not-present}", f"  hook: {hook}", "texts:"]
    for i, texts in enumerate(cases):
        lines.append(f"  case{i}: [{', '.join(json.dumps(t) for t in texts)}]")
    lines.append("cases:")
    for i in range(len(cases)):
        lines += [
            f"  - id: case-{i}", f"    on: case{i}", "    expect:",
            "      - explained_variance: {min: -1000}", "      - l0: {max: 100000}", "      - cosine: {min: -1}",
            "      - fires: {feature: 0, min: -1}", "      - most_active: {feature: 0}" if i == 0 else "      - silent: {feature: 1, max: 1000000}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def sweep_inputs(tmp_path: Path, n: int, width: int, n_cases: int) -> tuple[Any, list[str], Path, list[tuple[str, ...]]]:
    """(the GPT-2-shaped model, n candidate directories, the case file, its cases' texts)."""
    from .builtin import GPT2_SAE_HOOK, GPT2_SAE_L0, calibrate, gpt2_small_shaped, hook_acts, random_sae
    from .workload import workload

    model = gpt2_small_shaped()
    acts = hook_acts(model, GPT2_SAE_HOOK, 256, seed=1)
    paths = []
    for i in range(n):
        sae = random_sae(model.cfg.d_model, width, GPT2_SAE_HOOK, seed=i)
        calibrate(sae, acts, GPT2_SAE_L0)
        sae.cfg.metadata.model_name = "gpt2"
        sae.save_model(str(tmp_path / f"candidate-{i}"))
        paths.append(str(tmp_path / f"candidate-{i}"))
    cases = workload(n_cases=n_cases)
    return model, paths, case_file(tmp_path / "sweep.yaml", cases, GPT2_SAE_HOOK), cases


def test_sweep_against_separate_runs(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any, tmp_path: Path) -> None:
    import torch

    import interp_tests

    from .builtin import GPT2_SAE_HOOK
    from .flops import encode_flops, forward_flops

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    n, width, n_cases = (2, 1024, 2) if smoke else (CANDIDATES, WIDTH, CASES)
    model, paths, claims, cases = sweep_inputs(tmp_path, n, width, n_cases)
    found: dict[str, Any] = {}

    def sweep() -> None:
        found["sweep"] = interp_tests.evaluate(claims, saes=paths, model=model, dtype="float32")

    separate_times: list[float] = []

    def separate() -> None:  # the baseline, timed in each round next to the sweep
        start = time.perf_counter()
        found["separate"] = [interp_tests.evaluate(claims, saes=[p], model=model, dtype="float32") for p in paths]
        separate_times.append(time.perf_counter() - start)

    rounds = 1 if smoke else bench_env.rounds
    benchmark.pedantic(synced(sweep, "cpu"), setup=separate, rounds=rounds, warmup_rounds=0)
    together = {(c["case_id"], c["checkpoint"]): c["ok"] for c in found["sweep"].document["cases"]}
    apart = {(c["case_id"], c["checkpoint"]): c["ok"] for r in found["separate"] for c in r.document["cases"]}
    assert together == apart and len(together) == n * n_cases  # the same cases, the same verdicts
    tokens = sum(len(model.to_tokens(t)[0]) - 1 for case in cases for t in case)
    layer = int(GPT2_SAE_HOOK.split(".")[1])
    forward = forward_flops(model.cfg, layer, 1, 1) * tokens  # per-token matmul FLOPs of the stopped forward
    per_sae = 2 * encode_flops(tokens, model.cfg.d_model, width)  # encode and decode
    ideal = n * (forward + per_sae) / (forward + n * per_sae)
    info: dict[str, Any] = {"candidates": n, "d_sae": width, "cases": n_cases, "tokens": tokens, "threads": torch.get_num_threads(), "ideal_ratio": ideal}
    median = benchmark_median(benchmark)
    if median:
        separate_s = sorted(separate_times)[len(separate_times) // 2]
        info |= {"median_s": median, "separate_median_s": separate_s, "separate_over_sweep": separate_s / median, "of_ideal": (separate_s / median) / ideal}
    benchmark.extra_info.update(info)


MEMORY_CANDIDATES, MEMORY_BUDGET_GB = 50, 1.0
MEMORY_PROBE = """
import json, sys, time, torch
from pathlib import Path
import interp_tests
from interp_tests.benchmarks.builtin import gpt2_small_shaped
from interp_tests.compute.memory import peak_rss, reset_peak, rss
torch.set_num_threads({threads})
model = gpt2_small_shaped()
paths = sorted(str(p) for p in Path({root!r}).glob("candidate-*"))
assert reset_peak(), "cannot reset the peak (/proc/self/clear_refs)"  # the peak from here: the model and libraries are resident
before = rss()
start = time.perf_counter()
results = interp_tests.evaluate(Path({root!r}) / "sweep.yaml", saes=paths, model=model, dtype="float32", memory={budget})
seconds = time.perf_counter() - start
print(json.dumps({{"grew": peak_rss() - before, "seconds": seconds, "cases": len(results.document["cases"]),
                  "passed": sum(c["ok"] for c in results.document["cases"])}}))
"""


def test_sweep_memory_within_budget(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any, tmp_path: Path) -> None:
    """50 GPT-2-small-shaped checkpoints (768 x 24,576, 151 MB each in float32: 7.5 GB in all) swept in one run
    under `memory=1.0` (GB, `--interp-memory 1`), in a fresh process: the resident memory the sweep adds beyond
    the model stays within the budget, whatever the sweep's total. Recorded: peak_growth_mb, budget_mb,
    checkpoints_mb. With --benchmark-disable (CI's smoke run): 4 checkpoints of 1,024 features."""
    import json
    import subprocess
    import sys

    import torch

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    n, width, budget = (4, 1024, 0.02) if smoke else (MEMORY_CANDIDATES, WIDTH, MEMORY_BUDGET_GB)
    model, paths, claims, _ = sweep_inputs(tmp_path, n, width, 2)
    del model
    checkpoints_mb = sum(f.stat().st_size for p in paths for f in Path(p).iterdir()) / 1e6
    found: dict[str, Any] = {}

    def probe() -> None:
        code = MEMORY_PROBE.format(threads=torch.get_num_threads(), root=str(tmp_path), budget=budget)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
        assert out.returncode == 0, out.stderr[-3000:]
        found.update(json.loads(out.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(synced(probe, "cpu"), rounds=1, warmup_rounds=0)
    assert found["cases"] == 2 * n  # every case ran on every checkpoint (their verdicts are the sweep benchmark's concern)
    growth_mb = found["grew"] / 1e6
    benchmark.extra_info.update({
        "candidates": n, "d_sae": width, "checkpoints_mb": checkpoints_mb, "budget_mb": budget * 1e3, "peak_growth_mb": growth_mb,
        "growth_over_budget": growth_mb / (budget * 1e3), "sweep_s": found["seconds"], "threads": torch.get_num_threads(),
    })

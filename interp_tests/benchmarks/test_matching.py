"""Feature matching of two GPT-2-small-shaped SAEs (d_in 768, 24,576 features each): the reference and a
candidate that is the reference permuted, with noise. Target: under 30 s on the project's 2-core CPU with
under 2 GB beyond the weights (the peak is measured in a fresh process, where nothing else ran before).

With --benchmark-disable (CI's smoke run) the SAEs have 4,096 features and no memory is measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from .timing import BenchEnv, benchmark_median, synced

D_IN, D_SAE = 768, 24_576

MEMORY_PROBE = """
import json, torch
from interp_tests.benchmarks.test_matching import candidate_pair
from interp_tests.compute.matching import match_features
def kib(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))
torch.set_num_threads({threads})
reference, candidate = candidate_pair({d_sae})
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS: the weights only
before = kib("VmRSS:")
match = match_features(reference, candidate)
print(json.dumps({{"extra_kib": kib("VmHWM:") - before, "mmcs": match.mmcs}}))
"""


def candidate_pair(d_sae: int, seed: int = 0) -> tuple[Any, Any]:
    """A reference SAE and a candidate: its features shuffled, decoder and encoder noised (10% of their std)."""
    import copy

    import torch

    from .builtin import random_sae

    reference = random_sae(D_IN, d_sae, "blocks.8.hook_resid_pre", seed=seed)
    candidate = copy.deepcopy(reference)
    g = torch.Generator().manual_seed(seed + 1)
    perm = torch.randperm(d_sae, generator=g)
    with torch.no_grad():
        candidate.W_dec.copy_(reference.W_dec[perm] + 0.1 * reference.W_dec.std() * torch.randn(reference.W_dec.shape, generator=g))
        candidate.W_enc.copy_(reference.W_enc[:, perm] + 0.1 * reference.W_enc.std() * torch.randn(reference.W_enc.shape, generator=g))
    return reference, candidate


def test_matching(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any) -> None:
    import torch

    from ..compute.matching import match_features

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    d_sae = 4096 if smoke else D_SAE
    reference, candidate = candidate_pair(d_sae)
    found: dict[str, Any] = {}

    def run() -> None:
        found["match"] = match_features(reference, candidate)

    benchmark.pedantic(synced(run, "cpu"), rounds=1 if smoke else 3, warmup_rounds=0)
    match = found["match"]
    assert match.mmcs > 0.95 and match.matched_fraction > 0.99, (match.mmcs, match.matched_fraction)  # noise 10%: every feature found
    info: dict[str, Any] = {"d_in": D_IN, "d_sae": d_sae, "device": "cpu", "dtype": "float32", "threads": torch.get_num_threads(), "mmcs": match.mmcs}
    median = benchmark_median(benchmark)
    if median is not None:
        info["median_s"] = median
    if not smoke:
        probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE.format(d_sae=d_sae, threads=torch.get_num_threads())], capture_output=True, text=True, timeout=600)
        assert probe.returncode == 0, probe.stderr
        info["extra_peak_mb"] = json.loads(probe.stdout.strip().splitlines()[-1])["extra_kib"] / 1024
    benchmark.extra_info.update(info)

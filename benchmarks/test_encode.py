"""encode throughput of every SAE under test, against the machine's own ceiling.

The ceiling is a bare `x @ W_enc` of the same shape and dtype, timed round by round alongside encode
(pytest-benchmark's `setup` hook, see interp_tests.bench.Interleaved). SAELens's encode adds to it the
b_dec subtraction, the bias, the activation function and their allocations.
"""

from __future__ import annotations

from typing import Any

from interp_tests import bench


def test_encode(benchmark: Any, bench_target: bench.BenchTarget, bench_tokens: int, bench_loader: bench.Loader, bench_env: bench.BenchEnv, bench_report: bench.BenchReport) -> None:
    import torch

    t = bench_loader(bench_target)
    sae = t.sae
    x = bench.hook_acts(t.model, t.hook, bench_tokens).to(sae.W_enc.dtype)
    flat, w = x.flatten(1), sae.W_enc
    n, d_in, d_sae = flat.shape[0], int(sae.cfg.d_in), int(sae.cfg.d_sae)
    assert flat.shape == (bench_tokens, d_in) and w.shape == (d_in, d_sae), (flat.shape, w.shape)
    with torch.inference_mode():
        assert sae.encode(x[:8]).shape == (8, d_sae)
        ceiling = bench.Interleaved({"matmul": bench.synced(lambda: flat @ w, bench_env.device)}, warmup=bench_env.warmup)
        benchmark.pedantic(bench.synced(lambda: sae.encode(x), bench_env.device), setup=ceiling, rounds=bench_env.rounds, warmup_rounds=bench_env.warmup)

    flops = bench.encode_flops(n, d_in, d_sae)
    info: dict[str, Any] = bench_env.info(t) | {"tokens": n, "batch": 1, "flops": flops}
    median, ceil = bench.benchmark_median(benchmark), ceiling.median("matmul")
    if median is not None and ceil is not None:
        bench_report.ceilings[(bench_target.id, n)] = flops / ceil / 1e9
        info |= {
            "median_s": median, "tokens_per_s": n / median, "gflops": flops / median / 1e9,
            "ceiling_median_s": ceil, "ceiling_gflops": flops / ceil / 1e9, "fraction_of_ceiling": ceil / median,
            "note": f"ceiling {ceil * 1e3:.1f} ms, {flops / ceil / 1e9:.1f} GFLOP/s",
        }
        bench_report.add(benchmark.name, info)
    benchmark.extra_info.update(info)

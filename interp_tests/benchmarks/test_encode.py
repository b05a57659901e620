"""encode throughput of every SAE under test, against the machine's own ceiling.

The ceiling is a bare `x @ W_enc` of the same shape and dtype, timed round by round alongside encode
(pytest-benchmark's `setup` hook, see timing.Interleaved). SAELens's encode adds to it the b_dec
subtraction, the bias, the activation function and their allocations.

A TopK SAE's activation is a selection, not an elementwise op: `torch.topk` over the [N, d_sae]
pre-activations costs as much as a large part of the matmul on a CPU, and no FLOP count covers it. For
such an SAE a second ceiling, `x @ W_enc` then `torch.topk(k, sorted=False)` as SAELens calls it, is timed
alongside too (`topk_ceiling_median_s`, `fraction_of_topk_ceiling`): the part of the gap that the
selection explains, and the part (bias, ReLU, a zeroed [N, d_sae] output and its scatter) that it does not.
"""

from __future__ import annotations

from typing import Any

from .flops import encode_flops
from .summary import BenchReport
from .targets import BenchTarget, Loader
from .timing import BenchEnv, Interleaved, benchmark_median, synced


def topk_k(sae: Any) -> int | None:
    """k of a TopK SAE (SAELens's `TopK` activation), else None."""
    k = getattr(sae.activation_fn, "k", None) if hasattr(sae, "activation_fn") else None
    return int(k) if k is not None else None


def test_encode(benchmark: Any, bench_target: BenchTarget, bench_tokens: int, bench_loader: Loader, bench_env: BenchEnv, bench_report: BenchReport) -> None:
    import torch

    from .builtin import hook_acts

    t = bench_loader(bench_target)
    sae = t.sae
    x = hook_acts(t.model, t.hook, bench_tokens).to(sae.W_enc.dtype)
    flat, w = x.flatten(1), sae.W_enc
    n, d_in, d_sae = flat.shape[0], int(sae.cfg.d_in), int(sae.cfg.d_sae)
    assert flat.shape == (bench_tokens, d_in) and w.shape == (d_in, d_sae), (flat.shape, w.shape)
    k = topk_k(sae)
    baselines = {"matmul": synced(lambda: flat @ w, bench_env.device)}
    if k is not None:
        baselines["matmul+topk"] = synced(lambda: torch.topk(flat @ w, k, dim=-1, sorted=False), bench_env.device)
    with torch.inference_mode():
        assert sae.encode(x[:8]).shape == (8, d_sae)
        ceiling = Interleaved(baselines, warmup=bench_env.warmup)
        benchmark.pedantic(synced(lambda: sae.encode(x), bench_env.device), setup=ceiling, rounds=bench_env.rounds, warmup_rounds=bench_env.warmup)

    flops = encode_flops(n, d_in, d_sae)
    info: dict[str, Any] = bench_env.info(t) | {"tokens": n, "batch": 1, "flops": flops} | ({"topk_k": k} if k is not None else {})
    median, ceil = benchmark_median(benchmark), ceiling.median("matmul")
    if median is not None and ceil is not None:
        bench_report.ceilings[(bench_target.id, n)] = flops / ceil / 1e9
        info |= {
            "median_s": median, "tokens_per_s": n / median, "gflops": flops / median / 1e9,
            "ceiling_median_s": ceil, "ceiling_gflops": flops / ceil / 1e9, "fraction_of_ceiling": ceil / median,
            "note": f"ceiling {ceil * 1e3:.1f} ms, {flops / ceil / 1e9:.1f} GFLOP/s",
        }
        topk_ceil = ceiling.median("matmul+topk")
        if topk_ceil is not None:
            info |= {"topk_ceiling_median_s": topk_ceil, "fraction_of_topk_ceiling": topk_ceil / median}
            info["note"] += f"; matmul+topk({k}) {topk_ceil * 1e3:.1f} ms, encode at {topk_ceil / median:.0%} of it"
        bench_report.add(benchmark.name, info)
    benchmark.extra_info.update(info)

"""forward+encode throughput of every target: token ids -> forward stopped after the hook's block -> encode.

GFLOP/s counts the blocks' matmuls and the encode matmul (interp_tests.bench.forward_flops/encode_flops);
the fraction of the ceiling compares it with the bare x @ W_enc rate that test_encode.py measured for the
same target and token count in this session (absent when test_encode.py did not run).
"""

from __future__ import annotations

from typing import Any

from interp_tests import bench


def test_forward_encode(benchmark: Any, bench_target: bench.BenchTarget, bench_tokens: int, bench_loader: bench.Loader, bench_env: bench.BenchEnv, bench_report: bench.BenchReport) -> None:
    """Token ids -> forward stopped after the hook's block -> encode of every position (rows of 128 tokens)."""
    import torch

    from interp_tests.engine import stop_layer

    t = bench_loader(bench_target)
    model, sae, hook = t.model, t.sae, t.hook
    seq = min(128, model.cfg.n_ctx, bench_tokens)
    batch = -(-bench_tokens // seq)
    tokens = bench.random_tokens(model, batch, seq)

    def forward_encode() -> None:
        sae.encode(bench.forward_to_hook(model, tokens, hook).flatten(0, 1))

    with torch.inference_mode():
        benchmark.pedantic(bench.synced(forward_encode, bench_env.device), rounds=bench_env.rounds, warmup_rounds=bench_env.warmup)

    n = batch * seq
    layers = stop_layer(hook)
    flops = bench.forward_flops(model.cfg, layers if layers is not None else model.cfg.n_layers, batch, seq) + bench.encode_flops(n, int(sae.cfg.d_in), int(sae.cfg.d_sae))
    info: dict[str, Any] = bench_env.info(t) | {"tokens": n, "batch": batch, "seq": seq, "layers_run": layers, "flops": flops}
    median = bench.benchmark_median(benchmark)
    if median is not None:
        ceiling = bench_report.ceilings.get((bench_target.id, n))  # GFLOP/s of the bare matmul, from test_encode
        info |= {"median_s": median, "tokens_per_s": n / median, "gflops": flops / median / 1e9}
        if ceiling is not None:
            info |= {"ceiling_gflops": ceiling, "fraction_of_ceiling": flops / median / 1e9 / ceiling}
        info["note"] = f"{batch}x{seq} tokens, {layers} blocks + encode"
        bench_report.add(benchmark.name, info)
    benchmark.extra_info.update(info)

"""forward+encode throughput of every target: token ids -> the engine's stopped forward -> encode.

The forward is `engine.hook_activations` (what the engine runs, with an all-ones attention mask as the
engine passes one), so it stops where the engine stops. GFLOP/s counts the matmuls of the blocks it
started (`flops.blocks_run`, counted, not derived) and the encode matmul; the fraction of the ceiling
compares it with the bare x @ W_enc rate that test_encode.py measured for the same target and token count
in this session (absent when test_encode.py did not run).

The encode step is also timed on its own inside each round (synchronised before and after on CUDA):
`encode_step_s` is its median over the measured rounds, `encode_step_fraction_of_ceiling` the bare
matmul's median for these tokens (test_encode.py, same session) over it.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from .flops import blocks_run, encode_flops, forward_flops
from .summary import BenchReport, seconds
from .targets import BenchTarget, Loader
from .timing import BenchEnv, benchmark_median, synced, synchronizer


def test_forward_encode(benchmark: Any, bench_target: BenchTarget, bench_tokens: int, bench_loader: Loader, bench_env: BenchEnv, bench_report: BenchReport) -> None:
    """Token ids -> the engine's stopped forward -> encode of every position (rows of 128 tokens)."""
    import torch

    from ..compute.engine import hook_activations
    from .builtin import random_tokens

    t = bench_loader(bench_target)
    model, sae, hook = t.model, t.sae, t.hook
    seq = min(128, model.cfg.n_ctx, bench_tokens)
    batch = -(-bench_tokens // seq)
    tokens = random_tokens(model, batch, seq)
    mask = torch.ones_like(tokens)

    sync = synchronizer(bench_env.device)
    steps: list[float] = []  # the encode step of every round, warm-up rounds first

    def forward_encode() -> None:
        acts = hook_activations(model, hook, tokens, mask).flatten(0, 1)
        sync()
        t0 = time.perf_counter()
        sae.encode(acts)
        sync()
        steps.append(time.perf_counter() - t0)

    with torch.inference_mode():
        benchmark.pedantic(synced(forward_encode, bench_env.device), rounds=bench_env.rounds, warmup_rounds=bench_env.warmup)

    n = batch * seq
    layers = blocks_run(model, hook)
    enc_flops = encode_flops(n, int(sae.cfg.d_in), int(sae.cfg.d_sae))
    flops = forward_flops(model.cfg, layers, batch, seq) + enc_flops
    info: dict[str, Any] = bench_env.info(t) | {"tokens": n, "batch": batch, "seq": seq, "layers_run": layers, "flops": flops}
    median = benchmark_median(benchmark)
    measured = steps[bench_env.warmup :]
    if median is not None and measured:
        ceiling = bench_report.ceilings.get((bench_target.id, n))  # GFLOP/s of the bare matmul, from test_encode
        step = statistics.median(measured)
        info |= {"median_s": median, "tokens_per_s": n / median, "gflops": flops / median / 1e9, "encode_step_s": step}
        info["note"] = f"{batch}x{seq} tokens, {layers} blocks + encode; encode step {seconds(step)}"
        if ceiling is not None:
            ceiling_s = enc_flops / (ceiling * 1e9)
            info |= {
                "ceiling_gflops": ceiling, "fraction_of_ceiling": flops / median / 1e9 / ceiling,
                "encode_step_fraction_of_ceiling": ceiling_s / step,
            }
            info["note"] += f" = {ceiling_s / step:.2f} of the matmul ceiling"
        bench_report.add(benchmark.name, info)
    benchmark.extra_info.update(info)

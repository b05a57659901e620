"""Greedy generation with a steering hook (interp_tests.compute.steering) against the same generation without it.

The benchmark times steered generation; unsteered generation of the same prompt is timed round by round
alongside it (pytest-benchmark's `setup` hook). The cost is compared per generated token.
"""

from __future__ import annotations

from typing import Any

import pytest

from .builtin import random_tokens
from .summary import BenchReport
from .targets import BenchTarget, Loader
from .timing import BenchEnv, Interleaved, benchmark_median, synced

PROMPT_TOKENS = 16
FEATURE, STRENGTH = 0, 8.0


def test_steer(benchmark: Any, bench_target: BenchTarget, bench_loader: Loader, bench_env: BenchEnv, bench_report: BenchReport, bench_new_tokens: int) -> None:
    import torch

    from ..compute.steering import Steerer, generate

    t = bench_loader(bench_target)
    model, hook = t.model, t.hook
    new_tokens = bench_new_tokens
    prompt = random_tokens(model, 1, PROMPT_TOKENS, seed=2)
    if PROMPT_TOKENS + new_tokens > model.cfg.n_ctx:
        pytest.skip(f"{PROMPT_TOKENS} prompt + {new_tokens} new tokens exceed the model's context of {model.cfg.n_ctx}")
    last: dict[str, Any] = {}  # the latest run of each: its steerer and its output

    def steered() -> None:
        last["steerer"] = Steerer(t.sae, FEATURE, STRENGTH, "add")
        last["steered"] = generate(model, prompt, new_tokens, hook=hook, steerer=last["steerer"])

    def unsteered() -> None:
        last["unsteered"] = generate(model, prompt, new_tokens, hook=hook, steerer=None)

    plain = Interleaved({"unsteered": synced(unsteered, bench_env.device)}, warmup=bench_env.warmup)
    with torch.inference_mode():
        benchmark.pedantic(synced(steered, bench_env.device), setup=plain, rounds=bench_env.rounds, warmup_rounds=bench_env.warmup)

    # the hook was really there: at every non-BOS position fed to the model (the last token is never fed)
    n_steered, n_plain = len(last["steered"]), len(last["unsteered"])
    assert len(last["steerer"].seen) == PROMPT_TOKENS - 1 + n_steered - 1, (len(last["steerer"].seen), PROMPT_TOKENS, n_steered)

    info: dict[str, Any] = bench_env.info(t) | {
        "prompt_tokens": PROMPT_TOKENS, "new_tokens": new_tokens, "generated_steered": n_steered, "generated_unsteered": n_plain,
        "feature": FEATURE, "strength": STRENGTH, "kv_cache": True,
    }
    median, base = benchmark_median(benchmark), plain.median("unsteered")
    if median is not None and base is not None:
        steered_tps, plain_tps = n_steered / median, n_plain / base
        info |= {
            "median_s": median, "unsteered_median_s": base, "tokens": n_steered,
            "tokens_per_s": steered_tps, "tokens_per_s_unsteered": plain_tps,
            "steered_cost_per_token": plain_tps / steered_tps,
            "note": f"unsteered {plain_tps:.1f} tok/s; steered costs {plain_tps / steered_tps:.3f}x per token",
        }
        bench_report.add(benchmark.name, info)
    benchmark.extra_info.update(info)

"""The batched engine on a realistic offline suite, against the notebook loop and the bare compute.

Workload: the GPT-2-small-shaped model (random weights, GPT-2's tokenizer) with a 24,576-feature SAE at
blocks.8.hook_resid_pre; 50 cases x 4 texts of 10-60 random common words (one token each). Every case
reads the statistics its feature and reconstruction checks need: pooled explained variance and L0, the
most active feature of its first text and that feature's max on each text.

- engine:   HookCache + SaeEngine as the plugin uses them (all texts registered up front), fresh each round
- notebook: per text, a full `run_with_cache` then encode + decode (the seed notebook's loop)
- bare:     the engine's own stopped forward (`engine.hook_activations`) over the same padded batches
            (`engine.batches`, `engine.padded`), pre-tokenized, then one encode of every real token
            (`bare`); its decode is timed apart (`bare.decode`), since the engine decodes too

The benchmark times the engine; notebook and bare run round by round alongside it (pytest-benchmark's
`setup` hook), so the ratios compare runs under the same load.
"""

from __future__ import annotations

from typing import Any

import pytest

from .summary import BenchReport
from .targets import BUILTIN_TARGET, Loader
from .timing import BenchEnv, Interleaved, benchmark_median, synchronizer
from .workload import CaseStats, bare_compute, engine_suite, notebook_suite, padded_batches, workload

# measured rounds (no warm-up rounds: a two-case warm-up instead); --interp-bench-rounds overrides. One round
# of the three paths is about a minute on 2 CPU cores, and seconds on a GPU.
ROUNDS = {"cpu": 2, "cuda": 5}


@pytest.mark.benchmark(group="engine-workload")
def test_engine_workload(benchmark: Any, bench_loader: Loader, bench_env: BenchEnv, bench_report: BenchReport, bench_cases: int, interp_session: Any, pytestconfig: pytest.Config) -> None:
    import torch

    t = bench_loader(BUILTIN_TARGET)
    cases = workload(n_cases=bench_cases)
    texts = [text for case in cases for text in case]
    batch_tokens = int(interp_session.batch_tokens)
    batches = padded_batches(t, texts, batch_tokens)
    real_tokens = sum(int(mask.sum()) - mask.shape[0] for _, mask in batches)  # non-BOS, non-pad
    sync = synchronizer(bench_env.device)
    rounds = pytestconfig.getoption("interp_bench_rounds") or ROUNDS.get(bench_env.device.split(":")[0], 2)

    notebook_out: list[list[CaseStats]] = []

    def engine() -> list[CaseStats]:
        out = engine_suite(t, cases, batch_tokens)
        sync()
        return out

    def notebook() -> None:
        notebook_out.append(notebook_suite(t, cases))
        sync()

    with torch.inference_mode():
        if benchmark.enabled:  # warm-up on two cases: every code path once, not the minute-long workload
            engine_suite(t, cases[:2], batch_tokens)
            notebook_suite(t, cases[:2])
            bare_compute(t, batches[-1:], sync)
        base = Interleaved({"notebook": notebook, "bare": lambda: bare_compute(t, batches, sync)}, warmup=0)
        got = benchmark.pedantic(engine, setup=base, rounds=rounds, warmup_rounds=0)

    # both paths compute the same numbers: batched + padded vs one text at a time differ by rounding only.
    # In float16/bfloat16 that rounding can also swap near-tied most-active features, so a few may differ.
    want = notebook_out[-1]
    assert len(got) == len(want) == len(cases)
    tol, l0_tol, same_feature = (1e-3, 0.01, 1.0) if bench_env.dtype in ("float32", "float64") else (5e-2, 0.1, 0.9)
    for i, (e, nb) in enumerate(zip(got, want)):
        assert abs(e.explained_variance - nb.explained_variance) < tol and abs(e.l0 - nb.l0) <= l0_tol * max(nb.l0, 1), (i, e, nb)
        if e.feature == nb.feature:
            assert all(abs(a - b) <= tol * max(abs(b), 1) for a, b in zip(e.feature_max, nb.feature_max)), (i, e, nb)
    agree = sum(e.feature == nb.feature for e, nb in zip(got, want)) / len(got)
    assert agree >= same_feature, f"most active feature agrees in {agree:.0%} of cases, engine vs notebook ({bench_env.dtype})"

    info: dict[str, Any] = bench_env.info(t) | {
        "cases": len(cases), "texts": len(texts), "tokens": real_tokens, "batch_tokens": batch_tokens, "batches": len(batches),
        "rounds": rounds, "warmup_rounds": 0, "mean_l0": sum(s.l0 for s in got) / len(got),
    }
    median = benchmark_median(benchmark)
    nb_s, bare_s = base.median("notebook"), base.median("bare.forward+encode")
    if median is not None and nb_s is not None and bare_s is not None:
        info |= {
            "median_s": median, "tokens_per_s": real_tokens / median,
            "notebook_median_s": nb_s, "bare_median_s": bare_s,
            "bare_forward_s": base.median("bare.forward"), "bare_encode_s": base.median("bare.encode"), "bare_decode_s": base.median("bare.decode"),
            "engine_speedup_vs_notebook": nb_s / median, "engine_vs_bare": median / bare_s,
            "engine_vs_bare_with_decode": median / (bare_s + (base.median("bare.decode") or 0.0)),
            "rounds_s": {"engine": list(benchmark.stats.stats.data), **base.times},  # every measured round, to judge noise
            "note": f"{nb_s / median:.2f}x faster than notebook; {median / bare_s:.2f}x bare forward+encode",
        }
        bench_report.add(benchmark.name, info)
    benchmark.extra_info.update(info)

"""Corpus throughput: twelve SAEs (one per layer of the GPT-2-small-shaped model, 24,576 features each)
over the same tokens of the bundled held-out corpus, through the engine's one streamed pass, against
  (a) the bare cost: one forward that stops after layer 11's resid_pre capturing the twelve hooks, and
      twelve encodes and decodes of those activations (engine.hooks_activations + engine.encode_and_decode:
      the engine's own calls; what it leaves out is the running statistics), and
  (b) twelve separate passes, one SAE at a time, as an evaluation loop that runs per SAE does
      (corpus_pass.run_pass for each SAE alone: the engine's own code, one hook each).
Targets: the engine within 1.25x of (a), at least 5x faster than (b). Statistics only (no loss forwards).

With --benchmark-disable (CI's smoke run): two SAEs of 1,024 features over 256 tokens.
"""

from __future__ import annotations

import time
from typing import Any

from .timing import BenchEnv, benchmark_median, synced

LAYERS, D_SAE = 12, 24_576


def engines_and_corpus(n_saes: int, d_sae: int, tokens: int, layers: list[int] | None = None) -> tuple[Any, list[Any], Any]:
    from ..cases.schema import CorpusSpec
    from ..compute.corpus import Corpus
    from ..compute.engine import HookCache, ModelCache, SaeEngine
    from .builtin import calibrate, gpt2_small_shaped, hook_acts, random_sae

    model = gpt2_small_shaped()
    shared = ModelCache(model, batch_tokens=2048)
    engines = []
    for layer in layers if layers is not None else range(n_saes):
        hook = f"blocks.{layer}.hook_resid_pre"
        sae = random_sae(model.cfg.d_model, d_sae, hook, seed=layer)
        calibrate(sae, hook_acts(model, hook, 256, seed=layer + 1), 64)
        engines.append(SaeEngine(HookCache(model, hook, 2048, shared=shared), sae, f"layer-{layer}"))
    corpus = Corpus(CorpusSpec(bundled="tiny-stdlib-heldout", tokens=tokens, context=128), model_dir(), "heldout")
    return model, engines, corpus


def model_dir() -> Any:
    from pathlib import Path

    return Path(__file__).resolve().parent


def test_corpus_twelve_saes(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any) -> None:
    import torch

    from ..compute.corpus_pass import _windows_batches, run_pass
    from ..compute.engine import encode_and_decode, hooks_activations

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    n_saes, d_sae, tokens = (2, 1024, 256) if smoke else (LAYERS, D_SAE, 4096)
    model, engines, corpus = engines_and_corpus(n_saes, d_sae, tokens)
    hooks = [e.hooks.hook for e in engines]

    def engine_pass() -> None:
        run_pass(engines, corpus, with_loss=set(), progress=None)

    def bare() -> None:
        with torch.inference_mode():
            for _, toks, mask, keep in _windows_batches(engines[0], corpus):
                acts = hooks_activations(model, hooks, toks, mask)
                for e in engines:
                    encode_and_decode(e.sae, acts[e.hooks.hook][keep], e.encode_tokens)

    def separate() -> None:
        for e in engines:
            run_pass([e], corpus, with_loss=set(), progress=None)

    timings: dict[str, list[float]] = {"bare": [], "separate": []}

    def alongside() -> None:  # the baselines, timed in each round next to the engine
        for name, fn in (("bare", bare), ("separate", separate)):
            start = time.perf_counter()
            synced(fn, "cpu")()
            timings[name].append(time.perf_counter() - start)

    rounds = 1 if smoke else 2
    benchmark.pedantic(synced(engine_pass, "cpu"), setup=alongside, rounds=rounds, warmup_rounds=0)
    stats = run_pass(engines, corpus, with_loss=set(), progress=None)
    n = stats[0].tokens
    median = benchmark_median(benchmark)
    info: dict[str, Any] = {"saes": n_saes, "d_sae": d_sae, "tokens": n, "device": "cpu", "dtype": "float32", "threads": torch.get_num_threads()}
    if median:
        bare_s, separate_s = sorted(timings["bare"])[len(timings["bare"]) // 2], sorted(timings["separate"])[len(timings["separate"]) // 2]
        info |= {
            "median_s": median, "tokens_per_s": n / median, "bare_median_s": bare_s, "separate_median_s": separate_s,
            "engine_over_bare": median / bare_s, "separate_over_engine": separate_s / median,
        }
    benchmark.extra_info.update(info)


def stdlib_text(path: Any, max_bytes: int) -> Any:
    """A .txt corpus from this Python's standard library sources (documents: blank-line separated blocks)."""
    import sysconfig
    from pathlib import Path

    written = 0
    with open(path, "w", encoding="utf-8") as out:
        for source in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
            text = source.read_text(encoding="utf-8", errors="replace")
            out.write(text + "\n\n")
            written += len(text)
            if written >= max_bytes:
                break
    return path


def test_corpus_million_tokens(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any, tmp_path: Any) -> None:
    """1M tokens through the bundled pair with every reconstruction and loss statistic (target: under 5 minutes)."""
    import torch

    from ..cases.schema import CorpusSpec, SaeRef
    from ..compute.corpus import Corpus
    from ..compute.corpus_pass import run_pass
    from ..compute.engine import HookCache, SaeEngine
    from ..compute.registry import Registry

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    tokens = 5_000 if smoke else 1_000_000
    source = stdlib_text(tmp_path / "stdlib.txt", 20_000_000 if not smoke else 200_000)
    reg = Registry()
    hook = "blocks.1.hook_resid_pre"
    engine = SaeEngine(HookCache(reg.model("tiny-stdlib"), hook, 8192), reg.sae(SaeRef(release="tiny-stdlib-res", id=hook)), "tiny-stdlib-res")
    corpus = Corpus(CorpusSpec(path=str(source), tokens=tokens, context=128), tmp_path, "stdlib")
    found: dict[str, Any] = {}

    def run() -> None:
        found["stats"] = run_pass([engine], corpus, with_loss={id(engine)}, progress=None)[0]

    benchmark.pedantic(synced(run, "cpu"), rounds=1, warmup_rounds=0)
    stats = found["stats"]
    assert stats.tokens >= tokens and stats.predictions > 0
    median = benchmark_median(benchmark)
    info: dict[str, Any] = {"tokens": stats.tokens, "windows": stats.windows, "threads": torch.get_num_threads(), "explained_variance": stats.explained_variance, "ce_loss_score": stats.ce_loss_score}
    if median:
        info |= {"median_s": median, "tokens_per_s": stats.tokens / median}
    benchmark.extra_info.update(info)


INTERVAL_VALUES = ("explained_variance", "mse", "cosine", "l0", "dead_fraction", "dense_fraction", "ce_loss_score", "delta_loss", "kl_div")


def test_corpus_intervals_overhead(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any) -> None:
    """What the 95% intervals cost: one SAE (24,576 features, layer 6 of the GPT-2-small-shaped model) over
    4,096 tokens of the bundled held-out corpus with every reconstruction, sparsity and loss statistic. The
    engine's pass keeps each window's sums (compute/bootstrap.py) and then computes the interval of every
    value (1,000 resamples); the baseline, timed in each round next to it, is the same `run_pass` keeping the
    totals only (`per_window=False`). Target: intervals_over_plain <= 1.05.

    With --benchmark-disable (CI's smoke run): 1,024 features over 256 tokens."""
    import torch

    from ..compute.corpus_pass import run_pass

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    d_sae, tokens = (1024, 256) if smoke else (D_SAE, 4096)
    model, engines, corpus = engines_and_corpus(1, d_sae, tokens, layers=[6])
    engine = engines[0]  # blocks.6.hook_resid_pre
    with_loss = {id(engine)}
    found: dict[str, Any] = {}
    seconds: dict[str, list[float]] = {"plain": [], "intervals_only": []}

    def with_intervals() -> None:
        stats = run_pass([engine], corpus, with_loss=with_loss, progress=None)[0]
        start = time.perf_counter()
        found["intervals"] = {name: stats.interval(name, above=0.1) for name in INTERVAL_VALUES}
        seconds["intervals_only"].append(time.perf_counter() - start)
        found["stats"] = stats

    def alongside() -> None:  # the baseline, timed in each round next to the engine
        start = time.perf_counter()
        found["plain"] = run_pass([engine], corpus, with_loss=with_loss, progress=None, per_window=False)[0]
        seconds["plain"].append(time.perf_counter() - start)

    benchmark.pedantic(synced(with_intervals, "cpu"), setup=alongside, rounds=1 if smoke else 3, warmup_rounds=0)
    stats, plain = found["stats"], found["plain"]
    assert plain.units is None and stats.units is not None and stats.units.units == stats.windows
    assert all(found["intervals"][name] is not None for name in INTERVAL_VALUES)
    for name in INTERVAL_VALUES:  # the same pass: the same values with or without the windows' sums
        assert abs(stats.value(name, above=0.1) - plain.value(name, above=0.1)) <= 1e-9 * max(1.0, abs(plain.value(name, above=0.1))), name
    median = benchmark_median(benchmark)
    info: dict[str, Any] = {"d_sae": d_sae, "tokens": stats.tokens, "windows": stats.windows, "resamples": 1000, "threads": torch.get_num_threads()}
    if median:
        plain_s = sorted(seconds["plain"])[len(seconds["plain"]) // 2]
        intervals_s = sorted(seconds["intervals_only"])[len(seconds["intervals_only"]) // 2]
        info |= {"median_s": median, "plain_median_s": plain_s, "intervals_median_s": intervals_s, "intervals_over_plain": median / plain_s}
    benchmark.extra_info.update(info)

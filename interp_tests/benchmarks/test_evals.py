"""Full-metric corpus evaluation (explained variance, L0, CE loss score, KL) against SAELens's own `run_evals`,
on the GPT-2-small-shaped target, the same token windows fed to both, timed round by round alternately:

- one SAE at blocks.8.hook_resid_pre (target: at least 1.5x faster than run_evals);
- eight SAEs at that hook, a sweep (target: at least 3.5x faster than eight run_evals calls);
- twelve SAEs, one per layer's hook_resid_pre (target: at least 2x faster than twelve run_evals calls).

interp-tests runs its corpus pass (`corpus_pass.run_pass`, what a corpus case runs): one clean forward per batch
for every SAE, each reconstruction spliced in from its hook's block, the zero ablation once per hook.
run_evals runs per SAE a stopped forward for the statistics and three full forwards for the losses.
`ideal_ratio` in extra_info is the ratio of the two by multiply-accumulate count (the unembedding included),
`of_ideal` how close the run comes. Both compute the same metrics over the same windows (the values are
recorded side by side: they agree where the definitions agree, see docs/CASES.md).

With --benchmark-disable (CI's smoke run): SAEs of 1,024 features over 256 tokens, one round.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from .timing import BenchEnv, benchmark_median, synced

SCENARIOS = {"one-sae": [8], "eight-saes-one-hook": [8] * 8, "twelve-layers": list(range(12))}
WIDTH, TOKENS, CONTEXT, BATCH_PROMPTS = 24_576, 2048, 128, 16


class FixedWindows:
    """The windows both tools read: full windows of the bundled held-out corpus, as a corpus of our own."""

    def __init__(self, windows: list[Any]) -> None:
        self.rows = windows

    def windows(self, model: Any) -> Any:
        return iter(self.rows)

    def describe(self) -> str:
        return f"{len(self.rows)} fixed windows"


def windows_of(model: Any, tokens: int) -> list[Any]:
    """Full windows of the held-out corpus, about `tokens` of them, in whole batches of BATCH_PROMPTS (or one
    smaller batch): run_evals reads whole batches, cycling its dataset to fill the last one, and would then
    evaluate more windows than ours."""
    from ..cases.schema import CorpusSpec
    from ..compute.corpus import Corpus

    corpus = Corpus(CorpusSpec(bundled="tiny-stdlib-heldout", tokens=tokens * 2, context=CONTEXT), Path("."), "heldout")
    full = [w for w in corpus.windows(model) if len(w.ids) == CONTEXT]
    n = max(1, tokens // (CONTEXT - 1))
    if n >= BATCH_PROMPTS:
        n -= n % BATCH_PROMPTS
    return full[:n]


def saelens_evals(model: Any, sae: Any, rows: list[Any]) -> dict[str, Any]:
    """SAELens's run_evals on exactly these windows (whole batches of them: the tokens it reports evaluating are
    checked): EV, L0, CE loss score and KL."""
    import torch
    from datasets import Dataset
    from sae_lens import ActivationsStore
    from sae_lens.evals import EvalConfig, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler

    prompts = min(BATCH_PROMPTS, len(rows))
    dataset = Dataset.from_dict({"tokens": [list(w.ids) for w in rows]})
    store = ActivationsStore.from_sae(model, sae, dataset=dataset, streaming=False, context_size=CONTEXT,
                                      store_batch_size_prompts=prompts, n_batches_in_buffer=1, device=str(model.cfg.device))
    batches = math.ceil(len(rows) / prompts)
    config = EvalConfig(batch_size_prompts=prompts, n_eval_reconstruction_batches=batches, n_eval_sparsity_variance_batches=batches,
                        compute_kl=True, compute_ce_loss=True, compute_sparsity_metrics=True, compute_variance_metrics=True)
    with torch.inference_mode():
        metrics, _ = run_evals(sae, store, model, ActivationScaler(), config)
    evaluated = {v for group in metrics.values() if isinstance(group, dict) for k, v in group.items() if k.startswith("total_tokens_eval")}
    assert evaluated == {len(rows) * CONTEXT}, f"run_evals evaluated {evaluated} tokens, not the {len(rows)} windows of {CONTEXT} given"
    return metrics


def ideal_ratio(cfg: Any, layers: list[int], d_sae: int) -> float:
    """run_evals's multiply-accumulates over ours per token: its stopped forward (L blocks) + three full forwards
    + encode/decode twice, per SAE; ours one full forward + per SAE an encode/decode and a splice from its
    block, + one zero-ablation splice per distinct hook."""
    n, d = cfg.n_layers, cfg.d_model
    block = 12 * d * d + 2 * CONTEXT * d  # projections + MLP (d_mlp = 4d) + attention over the window
    unembed = d * cfg.d_vocab
    full = n * block + unembed
    sae = 2 * d * d_sae

    def splice(layer: int) -> int:
        return (n - layer) * block + unembed

    theirs = sum(layer * block + 3 * full + 2 * sae for layer in layers)
    ours = full + sum(sae + splice(layer) for layer in layers) + sum(splice(layer) for layer in set(layers))
    return theirs / ours


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_corpus_metrics_against_run_evals(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any, scenario: str) -> None:
    import torch

    from ..compute.corpus_pass import run_pass
    from ..compute.engine import HookCache, ModelCache, SaeEngine
    from .builtin import GPT2_SAE_L0, calibrate, gpt2_small_shaped, hook_acts, random_sae

    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    width, tokens = (1024, 256) if smoke else (WIDTH, TOKENS)
    layers = SCENARIOS[scenario][:2] if smoke else SCENARIOS[scenario]
    model = gpt2_small_shaped()
    rows = windows_of(model, tokens)
    corpus = FixedWindows(rows)
    batch_tokens = min(BATCH_PROMPTS, len(rows)) * CONTEXT  # the same batches as run_evals's
    shared = ModelCache(model, batch_tokens=batch_tokens)
    engines = []
    for i, layer in enumerate(layers):
        hook = f"blocks.{layer}.hook_resid_pre"
        sae = random_sae(model.cfg.d_model, width, hook, seed=i)
        calibrate(sae, hook_acts(model, hook, 256, seed=i + 1), GPT2_SAE_L0)
        sae.cfg.metadata.context_size = CONTEXT
        engines.append(SaeEngine(HookCache(model, hook, batch_tokens, shared=shared), sae, f"{hook}#{i}"))
    found: dict[str, Any] = {}

    def ours() -> None:
        found["ours"] = run_pass(engines, corpus, with_loss={id(e) for e in engines}, progress=None)  # type: ignore[arg-type]

    theirs_times: list[float] = []

    def theirs() -> None:  # SAELens, timed in each round next to ours
        start = time.perf_counter()
        found["theirs"] = [saelens_evals(model, e.sae, rows) for e in engines]
        theirs_times.append(time.perf_counter() - start)

    benchmark.pedantic(synced(ours, "cpu"), setup=theirs, rounds=1 if smoke else bench_env.rounds, warmup_rounds=0)
    stats, metrics = found["ours"][0], found["theirs"][0]
    info: dict[str, Any] = {
        "scenario": scenario, "saes": len(layers), "d_sae": width, "tokens": stats.tokens, "windows": len(rows), "threads": torch.get_num_threads(),
        "ideal_ratio": ideal_ratio(model.cfg, layers, width),
        "ours": {"explained_variance": stats.explained_variance, "l0": stats.l0, "ce_loss_score": stats.ce_loss_score, "kl_div": stats.kl_div},
        "run_evals": {k: v for group in metrics.values() if isinstance(group, dict) for k, v in group.items() if isinstance(v, (int, float))},
    }
    median = benchmark_median(benchmark)
    if median:
        theirs_s = sorted(theirs_times)[len(theirs_times) // 2]
        info |= {"median_s": median, "run_evals_median_s": theirs_s, "run_evals_over_ours": theirs_s / median, "of_ideal": (theirs_s / median) / info["ideal_ratio"]}
    benchmark.extra_info.update(info)

"""The batched engine: padding and batching change no number; memory is bounded by the token budget."""

from __future__ import annotations

from typing import Any

import pytest

TEXTS = [
    "x",
    "def add(a, b):\n    return a + b",
    "Return the number of items in the list.",
    "import os\nimport sys\n\n\ndef main(argv):\n    for arg in argv:\n        print(os.path.abspath(arg))\n    return 0\n",
    "This module provides functions for parsing dates. " * 6,
]
HOOK = "blocks.1.hook_resid_pre"


def engine(model: Any, sae: Any, batch_tokens: int) -> Any:
    from interp_tests.compute.engine import HookCache, SaeEngine

    return SaeEngine(HookCache(model, HOOK, batch_tokens), sae, "bundled")


@pytest.mark.parametrize("budget", [1, 64], ids=["one-text-per-batch", "small-chunks"])
def test_batched_activations_equal_smaller_batches(interp_model: Any, interp_sae: Any, budget: int) -> None:
    import torch

    batched = engine(interp_model, interp_sae, batch_tokens=100_000)
    single = engine(interp_model, interp_sae, batch_tokens=budget)
    got = batched.acts(TEXTS)
    assert batched.hooks.forward_passes == 1
    want = single.acts(TEXTS)
    assert single.hooks.forward_passes == len(TEXTS) if budget == 1 else single.hooks.forward_passes > 1
    for g, w in zip(got, want):
        assert g.tokens == w.tokens
        torch.testing.assert_close(g.x, w.x, atol=1e-5, rtol=0)
        torch.testing.assert_close(g.x_hat, w.x_hat, atol=1e-5, rtol=0)
        torch.testing.assert_close(g.dense(), w.dense(), atol=1e-5, rtol=0)


def test_engine_matches_a_plain_run_with_cache_per_text_without_bos(interp_model: Any, interp_sae: Any) -> None:
    import torch

    eng = engine(interp_model, interp_sae, batch_tokens=100_000)
    for text, acts in zip(TEXTS, eng.acts(TEXTS)):
        tokens = interp_model.to_tokens(text)  # BOS prepended, as TransformerLens does by default
        _, cache = interp_model.run_with_cache(tokens)
        x = cache[HOOK][0, 1:]
        assert acts.x.shape == x.shape  # BOS dropped, nothing else
        torch.testing.assert_close(acts.x, x, atol=1e-5, rtol=0)
        torch.testing.assert_close(acts.dense(), interp_sae.encode(x), atol=1e-5, rtol=0)
        assert list(acts.tokens) == interp_model.to_str_tokens(tokens[0, 1:])


def test_losses_batched_equal_one_text_at_a_time(interp_model: Any, interp_sae: Any) -> None:
    import torch

    batched = engine(interp_model, interp_sae, batch_tokens=100_000).losses(TEXTS)
    single = engine(interp_model, interp_sae, batch_tokens=1).losses(TEXTS)
    for g, w in zip(batched, single):
        for name in ("ce_orig", "ce_sae", "ce_zero", "kl"):
            torch.testing.assert_close(getattr(g, name), getattr(w, name), atol=1e-5, rtol=0)
    assert batched[0].ce_orig.numel() == 0  # one token: no prediction at positions 1 .. n-2


def test_batches_are_sorted_by_length_and_bounded(interp_model: Any) -> None:
    from interp_tests.compute.engine import batches

    lengths = [5, 50, 7, 49, 6, 51]
    groups = batches(lengths, budget_tokens=110)
    assert sorted(i for g in groups for i in g) == list(range(6))
    for g in groups:
        assert len(g) * max(lengths[i] for i in g) <= 110 or len(g) == 1
    assert groups[0] == [5, 1]  # longest first, padded width 51


@pytest.mark.parametrize("hook,layer", [("blocks.0.hook_resid_pre", 1), ("blocks.8.hook_resid_post", 9), ("hook_embed", 0), ("ln_final.hook_normalized", None)])
def test_stop_layer_still_runs_the_hook(hook: str, layer: int | None) -> None:
    from interp_tests.compute.engine import stop_layer

    assert stop_layer(hook) == layer


def _sae(architecture: str, d_in: int = 32, d_sae: int = 512, **extra: Any) -> Any:
    import torch
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    classes = {"standard": (StandardSAE, StandardSAEConfig), "topk": (TopKSAE, TopKSAEConfig), "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig)}
    sae_class, cfg_class = classes[architecture]
    torch.manual_seed(0)
    sae = sae_class(cfg_class(d_in=d_in, d_sae=d_sae, **extra))
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
    return sae


def spy_on_decode(sae: Any) -> tuple[list[bool], Any]:
    """Wrap sae.decode: each call records whether it was handed a sparse tensor. Returns (calls, the real decode)."""
    calls: list[bool] = []
    real = sae.decode
    sae.decode = lambda acts: calls.append(acts.is_sparse) or real(acts)
    return calls, real


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
def test_decode_of_sparse_features_equals_saelens_dense_decode(architecture: str) -> None:
    import torch

    from interp_tests.compute.engine import decode

    sae = _sae(architecture, **({"k": 8} if architecture == "topk" else {}))
    x = torch.randn(300, 32)
    with torch.inference_mode():
        f = sae.encode(x)
        if architecture != "topk":  # keep about 2% of the features active, as a trained SAE does
            f = torch.where(torch.rand_like(f) < 0.02, f.abs() + 0.1, torch.zeros_like(f))
        assert 0 < int(torch.count_nonzero(f)) <= 0.05 * f.numel()
        calls, real = spy_on_decode(sae)
        got = decode(sae, f)
        assert calls == [True]  # it took the sparse path, through SAELens's own decode
        torch.testing.assert_close(got, real(f), rtol=1e-5, atol=1e-5)
        dense = torch.rand(4, 512) + 0.1  # every feature active: the dense decode
        calls.clear()
        torch.testing.assert_close(decode(sae, dense), real(dense))
        assert calls == [False]
        calls.clear()
        for half in (torch.float16, torch.bfloat16):  # a sparse half-precision matmul accumulates in half precision
            sae.to(half)
            decode(sae, f.to(half))
        assert calls == [False, False]


def test_decode_is_dense_when_the_sae_rescales_by_decoder_norm() -> None:
    import torch

    from interp_tests.compute.engine import decode

    sae = _sae("topk", k=4, rescale_acts_by_decoder_norm=True)
    with torch.inference_mode():
        f = sae.encode(torch.randn(50, 32))
        calls, real = spy_on_decode(sae)
        torch.testing.assert_close(decode(sae, f), real(f))
    assert calls == [False]


def test_a_corpus_pass_with_sparse_decode_equals_one_with_dense_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end, loss forwards included, on a 1,024-feature SAE at L0 ~10 on the bundled model."""
    from pathlib import Path

    from interp_tests.benchmarks.builtin import calibrate, hook_acts, random_sae
    from interp_tests.cases.schema import CorpusSpec
    from interp_tests.compute import engine as engine_module
    from interp_tests.compute.corpus import Corpus
    from interp_tests.compute.corpus_pass import run_pass
    from interp_tests.compute.engine import HookCache, SaeEngine
    from interp_tests.compute.registry import Registry

    hook = "blocks.1.hook_resid_pre"
    model = Registry().model("tiny-stdlib")
    sae = random_sae(128, 1024, hook, seed=3, model_name="tiny-stdlib")
    calibrate(sae, hook_acts(model, hook, 256, seed=4), 10)
    corpus = Corpus(CorpusSpec(bundled="tiny-stdlib-heldout", tokens=1500, context=64), Path("."), "held")
    sparse_calls, _ = spy_on_decode(sae)

    def stats() -> Any:
        engine = SaeEngine(HookCache(model, hook, 512), sae, "random")
        return run_pass([engine], corpus, with_loss={id(engine)}, progress=None)[0]

    sparse = stats()
    assert sparse_calls and all(sparse_calls)
    monkeypatch.setattr(engine_module, "SPARSE_DECODE_MAX_DENSITY", -1.0)
    sparse_calls.clear()
    dense = stats()
    assert sparse_calls and not any(sparse_calls)
    for name in ("explained_variance", "mse", "cosine", "l0", "dead_fraction", "kl_div", "ce_loss_score"):
        assert getattr(sparse, name) == pytest.approx(getattr(dense, name), rel=1e-6, abs=1e-7), name
    assert sparse.content_hash == dense.content_hash and bool((sparse.fired == dense.fired).all())

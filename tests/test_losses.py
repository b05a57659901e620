"""The loss forwards (compute/losses.py): a spliced forward from the hook's block equals the full forward with the
same edit, with padding, for every kind of hook; the corpus pass's CE and KL equal three full forwards per batch
with float64 log-softmax (the way they were computed before: an independent implementation here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TEXTS = ["def add(a, b):\n    return a + b", "x = 1", "Return the number of items in the list, or None when it is empty."]


def padded_batch(model: Any) -> tuple[Any, Any, Any]:
    from interp_tests.compute.engine import padded

    ids = [model.to_tokens(t, prepend_bos=True)[0] for t in TEXTS]
    tokens, mask = padded(model, ids)
    keep = mask.bool()
    keep[:, 0] = False
    return tokens, mask, keep


def hooks_of(model: Any) -> list[str]:
    last = int(model.cfg.n_layers) - 1
    middle = last // 2 + (1 if last > 1 else 0)
    return [
        f"blocks.{middle}.hook_resid_pre",
        f"blocks.{middle}.hook_resid_post",
        f"blocks.{middle}.hook_mlp_out",
        f"blocks.{middle}.attn.hook_z",
        f"blocks.{last}.hook_resid_post",  # the splice starts after the last block: ln_final and the unembedding only
        "blocks.0.hook_resid_pre",
    ]


def assert_splice_equals_full_forward(model: Any, atol: float) -> None:
    import torch

    from interp_tests.compute.losses import clean_forward, input_hooks, positions_replaced, spliced_logits

    tokens, mask, keep = padded_batch(model)
    hooks = hooks_of(model)
    with torch.inference_mode():
        _, clean = clean_forward(model, input_hooks(hooks, int(model.cfg.n_layers)), tokens, mask)
        for hook in hooks:
            act = clean[hook]
            width = act.flatten(2).shape[-1] if act.ndim > 3 else act.shape[-1]
            values = torch.randn(int(keep.sum()), width, generator=torch.Generator().manual_seed(0)).to(act.dtype)
            for replacement in (values, None):
                full = model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(hook, lambda a, hook, r=replacement: positions_replaced(a, keep, r))])
                spliced = spliced_logits(model, hook, clean, tokens, mask, keep, replacement)
                real = mask.bool()
                assert spliced.shape == full.shape, hook
                torch.testing.assert_close(spliced[real], full[real], atol=atol, rtol=0, msg=lambda m, h=hook: f"{h}: {m}")


def test_a_splice_from_the_hooks_block_equals_the_full_forward_on_the_bundled_model(interp_model: Any) -> None:
    assert_splice_equals_full_forward(interp_model, atol=1e-5)


@pytest.mark.slow  # builds a 124M-parameter model (5 s of CPU)
def test_a_splice_from_the_hooks_block_equals_the_full_forward_on_the_gpt2_shaped_model() -> None:
    from interp_tests.benchmarks.builtin import gpt2_small_shaped

    assert_splice_equals_full_forward(gpt2_small_shaped(), atol=1e-4)


def test_splice_points() -> None:
    from interp_tests.compute.losses import input_hooks, splice_point

    assert splice_point("blocks.8.hook_resid_pre", 12) == (8, "blocks.8.hook_resid_pre")
    assert splice_point("blocks.8.hook_resid_post", 12) == (9, "blocks.8.hook_resid_post")
    assert splice_point("blocks.11.hook_resid_post", 12) == (12, "blocks.11.hook_resid_post")
    assert splice_point("blocks.8.attn.hook_z", 12) == (8, "blocks.8.hook_resid_pre")
    assert splice_point("blocks.8.hook_mlp_out", 12) == (8, "blocks.8.hook_resid_pre")
    assert splice_point("hook_embed", 12) is None
    assert input_hooks(["blocks.3.hook_mlp_out", "blocks.3.hook_resid_pre", "hook_embed"], 12) == ["blocks.3.hook_mlp_out", "blocks.3.hook_resid_pre", "hook_embed"]


def three_full_forwards(model: Any, sae: Any, hook: str, tokens: Any, mask: Any, keep: Any) -> dict[str, list[float]]:
    """The oracle: per batch, the clean, reconstructed and zero-ablated forwards from the embeddings, each row's
    CE and KL at positions 1 .. n-2 from a float64 log-softmax."""
    import torch

    def edit(zero: bool) -> Any:
        def hook_fn(act: Any, hook: Any) -> Any:
            flat = act.flatten(2) if act.ndim > 3 else act
            new = torch.zeros_like(flat) if zero else sae.decode(sae.encode(flat.to(sae.W_enc.dtype))).to(flat.dtype)
            return torch.where(keep.unsqueeze(-1), new, flat).reshape(act.shape)

        return hook_fn

    logits = {
        "orig": model(tokens, attention_mask=mask),
        "sae": model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(hook, edit(False))]),
        "zero": model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(hook, edit(True))]),
    }
    out: dict[str, list[float]] = {"orig": [], "sae": [], "zero": [], "kl": []}
    for row, n in enumerate(mask.sum(-1).tolist()):
        if n < 3:
            continue
        lp = {k: v[row, 1 : n - 1].double().log_softmax(-1) for k, v in logits.items()}
        for k in ("orig", "sae", "zero"):
            out[k].extend((-lp[k].gather(-1, tokens[row, 2:n].unsqueeze(-1)).squeeze(-1)).tolist())
        out["kl"].extend((lp["orig"].exp() * (lp["orig"] - lp["sae"])).sum(-1).tolist())
    return out


def test_corpus_loss_values_equal_three_full_forwards_per_batch(interp_model: Any) -> None:
    """Four SAEs at four kinds of hook in one pass (one clean forward, the zero ablation shared per hook) give
    the CE, KL and loss score of an independent three-forward float64 computation to 1e-6 relative."""
    import torch

    from interp_tests.benchmarks.builtin import calibrate, hook_acts, random_sae
    from interp_tests.cases.schema import CorpusSpec
    from interp_tests.compute.corpus import Corpus
    from interp_tests.compute.corpus_pass import _windows_batches, run_pass
    from interp_tests.compute.engine import HookCache, ModelCache, SaeEngine

    shared = ModelCache(interp_model, 1024)
    engines = []
    for i, hook in enumerate(["blocks.1.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.0.attn.hook_z"]):
        acts = hook_acts(interp_model, hook, 256, seed=i)
        sae = random_sae(acts.flatten(1).shape[-1], 128, hook, seed=i, model_name="tiny-stdlib")
        calibrate(sae, acts, 16)
        engines.append(SaeEngine(HookCache(interp_model, hook, 1024, shared=shared), sae, hook))
    engines.append(SaeEngine(HookCache(interp_model, "blocks.1.hook_mlp_out", 1024, shared=shared), random_sae(128, 64, "blocks.1.hook_mlp_out", seed=9), "second at mlp_out"))
    corpus = Corpus(CorpusSpec(bundled="tiny-stdlib-heldout", tokens=1000, context=128), Path("."), "heldout")
    stats = run_pass(engines, corpus, with_loss={id(e) for e in engines}, progress=None)
    for engine, got in zip(engines, stats):
        want: dict[str, list[float]] = {"orig": [], "sae": [], "zero": [], "kl": []}
        with torch.inference_mode():
            for _, tokens, mask, keep in _windows_batches(engine, corpus):
                for k, v in three_full_forwards(interp_model, engine.sae, engine.hooks.hook, tokens, mask, keep).items():
                    want[k].extend(v)
        assert got.predictions == len(want["kl"]) > 500
        ce = {k: sum(want[k]) / len(want[k]) for k in ("orig", "sae", "zero")}
        expected = {
            "ce_orig": ce["orig"], "ce_sae": ce["sae"], "ce_zero": ce["zero"], "kl_div": sum(want["kl"]) / len(want["kl"]),
            "ce_loss_score": (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["orig"]), "delta_loss": ce["sae"] - ce["orig"],
        }
        observed = {"ce_orig": got.ce("orig"), "ce_sae": got.ce("sae"), "ce_zero": got.ce("zero"), "kl_div": got.kl_div, "ce_loss_score": got.ce_loss_score, "delta_loss": got.delta_loss}
        for name, value in expected.items():
            assert observed[name] == pytest.approx(value, rel=1e-6), (engine.label, name, observed[name], value)

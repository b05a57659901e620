"""The bundled transcoder (tiny-stdlib-tc / blocks.1.mlp) on the bundled model: every corpus value of a
transcoder against an independent float64 computation from TransformerLens's own hooks (the prediction
against the MLP's true output, the prediction spliced into the MLP's output in full forwards), its case
file, and its steering at the output hook."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

HOOK_IN, HOOK_OUT = "blocks.1.ln2.hook_normalized", "blocks.1.hook_mlp_out"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def transcoder(interp_registry: Any) -> Any:
    from interp_tests.cases.schema import SaeRef

    return interp_registry.sae(SaeRef(release="tiny-stdlib-tc", id="blocks.1.mlp"))


def test_the_bundled_transcoder_is_saelenss_own_jumprelu_transcoder(transcoder: Any) -> None:
    from sae_lens import SAE
    from sae_lens.saes.transcoder import JumpReLUTranscoder

    from interp_tests.compute.registry import BUNDLED_DIR

    plain = SAE.load_from_disk(str(BUNDLED_DIR / "tiny-stdlib-tc" / "blocks.1.mlp"))  # SAELens alone loads it
    assert isinstance(transcoder, JumpReLUTranscoder) and isinstance(plain, JumpReLUTranscoder)
    assert (plain.cfg.metadata.hook_name, plain.cfg.metadata.hook_name_out, plain.cfg.metadata.model_name) == (HOOK_IN, HOOK_OUT, "tiny-stdlib")


def test_transcoder_corpus_values_equal_an_independent_float64_computation(interp_model: Any, transcoder: Any) -> None:
    import torch

    from interp_tests.cases.schema import CorpusSpec
    from interp_tests.compute.corpus import Corpus
    from interp_tests.compute.corpus_pass import _windows_batches, run_pass
    from interp_tests.compute.engine import HookCache, ModelCache, SaeEngine

    engine = SaeEngine(HookCache(interp_model, HOOK_IN, 1024, shared=ModelCache(interp_model, 1024)), transcoder, "tc", out_hook=HOOK_OUT)
    engine.hooks.shared.register(HOOK_OUT)
    corpus = Corpus(CorpusSpec(bundled="tiny-stdlib-heldout", tokens=1500, context=128), Path("."), "heldout")
    got = run_pass([engine], corpus, with_loss={id(engine)}, progress=None)[0]

    ys, preds, l0s, ce = [], [], [], {"orig": [], "sae": [], "zero": []}
    kl: list[float] = []
    with torch.inference_mode():
        for _, tokens, mask, keep in _windows_batches(engine, corpus):
            _, cache = interp_model.run_with_cache(tokens, attention_mask=mask, names_filter=[HOOK_IN, HOOK_OUT])
            acts = transcoder.encode(cache[HOOK_IN])
            pred = transcoder.decode(acts)
            ys.append(cache[HOOK_OUT][keep].double())
            preds.append(pred[keep].double())
            l0s.append((acts[keep] > 0).sum(-1).double())

            def splice(zero: bool, keep: Any = keep, pred: Any = pred) -> Any:
                def edit(act: Any, hook: Any) -> Any:
                    return torch.where(keep.unsqueeze(-1), torch.zeros_like(act) if zero else pred, act)

                return edit

            logits = {
                "orig": interp_model(tokens, attention_mask=mask),
                "sae": interp_model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(HOOK_OUT, splice(False))]),
                "zero": interp_model.run_with_hooks(tokens, attention_mask=mask, fwd_hooks=[(HOOK_OUT, splice(True))]),
            }
            for row, n in enumerate(mask.sum(-1).tolist()):
                lp = {k: v[row, 1 : n - 1].double().log_softmax(-1) for k, v in logits.items()}
                for k in ce:
                    ce[k].extend((-lp[k].gather(-1, tokens[row, 2:n].unsqueeze(-1)).squeeze(-1)).tolist())
                kl.extend((lp["orig"].exp() * (lp["orig"] - lp["sae"])).sum(-1).tolist())
    y, p = torch.cat(ys), torch.cat(preds)
    mean = {k: sum(v) / len(v) for k, v in ce.items()}
    expected = {
        "explained_variance": float(1 - (y - p).pow(2).sum() / (y - y.mean(0)).pow(2).sum()),
        "mse": float((y - p).pow(2).mean()),
        "cosine": float(torch.nn.functional.cosine_similarity(y, p, dim=-1).mean()),
        "l0": float(torch.cat(l0s).mean()),
        "ce_loss_score": (mean["zero"] - mean["sae"]) / (mean["zero"] - mean["orig"]),
        "kl_div": sum(kl) / len(kl),
    }
    observed = {name: getattr(got, name) for name in expected}
    assert got.tokens > 1000
    for name, value in expected.items():
        assert observed[name] == pytest.approx(value, rel=1e-6, abs=1e-7), (name, observed[name], value)
    assert 0.7 < observed["explained_variance"] < 0.9 and observed["ce_loss_score"] > 0.85  # a transcoder that predicts


def test_the_transcoder_case_file_runs_on_the_bundled_model() -> None:
    import interp_tests

    results = interp_tests.evaluate(ROOT / "cases" / "tiny-stdlib-transcoder.yaml")
    assert results.ok, results.failures()
    by_check = {(c["case_id"], c["check"]): c for c in results.checks()}
    assert by_check[("predicts-the-mlp-output", "explained_variance")]["observed"] > 0.75
    assert by_check[("steer-toward-a-function-name", "logprob_shift")]["observed"] > 0.5


def test_steering_a_transcoder_adds_the_decoder_row_at_the_output_hook(interp_model: Any, transcoder: Any, tmp_path: Path) -> None:
    """The steered next-token distribution equals TransformerLens's own forward with the row added at the MLP's
    output (BOS kept), and differs from adding it at the input hook."""
    import torch

    import interp_tests

    prompt, feature, strength = "Return the", 141, 8.0
    case = (
        "target:\n  model: tiny-stdlib\n  sae: {release: tiny-stdlib-tc, id: blocks.1.mlp}\n"
        f"cases:\n  - id: s\n    steer: {{feature: {feature}, strength: {strength}}}\n    prompt: \"{prompt}\"\n"
        "    expect:\n      - kl: {min: 0}\n"
    )
    path = tmp_path / "steer.yaml"
    path.write_text(case)
    observed = interp_tests.evaluate(path).checks()[0]["observed"]
    tokens = interp_model.to_tokens(prompt)
    row = transcoder.W_dec[feature]

    def add(act: Any, hook: Any) -> Any:
        act = act.clone()
        act[:, 1:] += strength * row
        return act

    with torch.inference_mode():
        base = interp_model(tokens)[0, -1].double().log_softmax(-1)
        steered = interp_model.run_with_hooks(tokens, fwd_hooks=[(HOOK_OUT, add)])[0, -1].double().log_softmax(-1)
    expected = float((base.exp() * (base - steered)).sum())
    assert observed == pytest.approx(expected, rel=1e-5)

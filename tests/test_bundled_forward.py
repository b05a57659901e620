"""`bundled_forward`: the bundled pair on plain torch computes what TransformerLens and SAELens compute.

Expected values come from the libraries themselves, text by text: `run_with_cache` on one unpadded text and
the SAE's own `encode`, and the engine's batched pass. The forward is held equal on the bundled cases'
texts and 300 held-out documents; the encode on SAE configs with each option flipped, loaded by SAELens
from the same directory.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from interp_tests import bundled_forward
from interp_tests.casefile import load_case_file
from interp_tests.cli import main
from interp_tests.errors import CaseError
from interp_tests.explore import BundledTarget, Target, bundled_target, load_inspect_target, load_target, target_spec
from interp_tests.registry import BUNDLED_DIR, Registry
from interp_tests.schema import SaeRef

from .helpers import ROOT

HOOK = "blocks.1.hook_resid_pre"
MODEL_DIR = BUNDLED_DIR / "tiny-stdlib"
SAE_DIR = BUNDLED_DIR / "tiny-stdlib-res" / HOOK


@pytest.fixture(scope="module")
def pair() -> bundled_forward.BundledPair:
    return bundled_forward.load(MODEL_DIR, SAE_DIR, HOOK)


@pytest.fixture(scope="module")
def libraries() -> Any:
    reg = Registry(device="cpu", dtype="float32")
    return reg.model("tiny-stdlib"), reg.sae(SaeRef(release="tiny-stdlib-res", id=HOOK))


@pytest.fixture(scope="module")
def texts(pair: bundled_forward.BundledPair) -> list[str]:
    """The bundled cases' list texts, then held-out documents (cut to fit the context) up to 300 texts in all."""
    cf = load_case_file(ROOT / "cases" / "tiny-stdlib.yaml")
    out = [t for group in cf.model.texts.values() if isinstance(group, tuple) for t in group]
    for line in (BUNDLED_DIR / "heldout.jsonl").read_text().splitlines():
        doc = json.loads(line)["text"]
        ids = pair.token_ids(doc)
        text = doc if len(ids) <= pair.n_ctx else pair.tokenizer.decode(ids[1 : pair.n_ctx // 2])
        if text.strip() and text not in out:
            out.append(text)
        if len(out) >= 300:
            break
    return out


def reference(libraries: Any, text: str, hook: str = HOOK) -> tuple[list[int], list[str], Any, Any]:
    """(token ids with BOS, token strings without BOS, hook activations [n, d_in], features [n, d_sae]) of one
    text, from TransformerLens and SAELens alone."""
    import torch

    model, sae = libraries
    with torch.inference_mode():
        tokens = model.to_tokens(text, prepend_bos=True, truncate=False)
        _, cache = model.run_with_cache(tokens, names_filter=hook)
        x = cache[hook][0, 1:]
        feats = sae.encode(x) if hook == HOOK else None
    return tokens[0].tolist(), [str(t) for t in model.to_str_tokens(tokens[0, 1:])], x, feats


def test_tokens_activations_and_features_equal_the_libraries_text_by_text(pair: bundled_forward.BundledPair, libraries: Any, texts: list[str]) -> None:
    worst_x = worst_f = 0.0
    for text in texts:
        ids, strs, x, feats = reference(libraries, text)
        assert pair.token_ids(text) == ids, text
        tokens, got = pair.encoded(text)
        assert list(tokens) == strs, text
        worst_x = max(worst_x, float((pair.resid_pre(ids)[1:] - x).abs().max()))
        worst_f = max(worst_f, float((got - feats).abs().max()))
        assert ((got > 0) == (feats > 0)).all(), f"another set of active features on {text!r}"
    assert worst_x <= 1e-6 and worst_f <= 1e-6, (worst_x, worst_f)


def test_every_block_boundary_equals_the_libraries(pair: bundled_forward.BundledPair, libraries: Any, texts: list[str]) -> None:
    model, _ = libraries
    for layer in range(model.cfg.n_layers):
        at_layer = dataclasses.replace(pair, layer=layer)
        for text in texts[:20]:
            ids, _, x, _ = reference(libraries, text, f"blocks.{layer}.hook_resid_pre")
            assert float((at_layer.resid_pre(ids)[1:] - x).abs().max()) <= 1e-6, (layer, text)


def test_the_engines_batched_pass_gives_the_same_features(pair: bundled_forward.BundledPair, texts: list[str]) -> None:
    target = load_target(target_spec(), Registry())
    fast = bundled_target(target_spec(), Registry())
    assert isinstance(fast, BundledTarget)
    batched = target.encoded(texts)
    for (text, tokens, dense), (_, fast_tokens, fast_dense) in zip(batched, fast.encoded(texts)):
        assert tokens == fast_tokens, text
        assert float((dense - fast_dense).abs().max()) <= 1e-5, text  # padded batches vs one text: float rounding only


@pytest.mark.parametrize(
    "change",
    [{}, {"apply_b_dec_to_input": False}, {"rescale_acts_by_decoder_norm": False}, {"k": 7}, {"apply_b_dec_to_input": False, "rescale_acts_by_decoder_norm": False, "k": 100}],
    ids=["bundled-cfg", "no-b-dec-input", "no-rescale", "k-7", "all-flipped"],
)
def test_the_topk_encode_equals_saelens_with_each_option(change: dict[str, Any], tmp_path: Path, pair: bundled_forward.BundledPair, libraries: Any, texts: list[str]) -> None:
    """The bundled SAE's decoder rows have unit norm, which makes decoder-norm rescaling a no-op: here each
    row is scaled by a factor in [0.5, 2), so the rescaling changes which features are in the top k."""
    import torch
    from sae_lens import SAE
    from safetensors.torch import load_file, save_file

    sae_dir = tmp_path / "sae"
    shutil.copytree(SAE_DIR, sae_dir)
    weights = load_file(str(sae_dir / "sae_weights.safetensors"))
    scale = 0.5 + 1.5 * torch.rand(weights["W_dec"].shape[0], 1, generator=torch.Generator().manual_seed(0))
    save_file({**weights, "W_dec": (weights["W_dec"] * scale).contiguous()}, str(sae_dir / "sae_weights.safetensors"))
    cfg = json.loads((sae_dir / "cfg.json").read_text())
    (sae_dir / "cfg.json").write_text(json.dumps({**cfg, **change}))
    ours = bundled_forward.load(MODEL_DIR, sae_dir, HOOK)
    theirs = SAE.load_from_disk(str(sae_dir), device="cpu", dtype="float32")
    x = torch.cat([pair.resid_pre(pair.token_ids(t))[1:] for t in texts[:40]])
    with torch.inference_mode():
        expected = theirs.encode(x)
    got = ours.encode(x)
    assert int((got > 0).sum(-1).max()) <= int(change.get("k", cfg["k"]))
    assert torch.equal(got > 0, expected > 0)
    assert float((got - expected).abs().max()) <= 1e-6


@pytest.mark.parametrize(
    ("where", "key", "value", "reason"),
    [
        ("model", "act_fn", "gelu", "act_fn='gelu'"),
        ("model", "normalization_type", "RMS", "normalization_type='RMS'"),
        ("model", "positional_embedding_type", "rotary", "positional_embedding_type"),
        ("model", "attn_only", True, "model config keys ['attn_only']"),
        ("sae", "architecture", "standard", "architecture='standard'"),
        ("sae", "normalize_activations", "expected_average_only_in", "normalize_activations"),
        ("sae", "dtype", "float16", "dtype 'float16'"),
        ("sae", "use_error_term", True, "SAE config keys ['use_error_term']"),
    ],
)
def test_a_config_it_does_not_read_goes_through_the_libraries(where: str, key: str, value: Any, reason: str, tmp_path: Path) -> None:
    model_dir, sae_dir = tmp_path / "model", tmp_path / "sae"
    shutil.copytree(MODEL_DIR, model_dir)
    shutil.copytree(SAE_DIR, sae_dir)
    cfg_path = (model_dir / "config.json") if where == "model" else (sae_dir / "cfg.json")
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), key: value}))
    why = bundled_forward.unsupported(model_dir, sae_dir, HOOK)
    assert why is not None and reason in why, why
    with pytest.raises(ValueError, match="cannot run this pair"):
        bundled_forward.load(model_dir, sae_dir, HOOK)
    assert bundled_forward.unsupported(MODEL_DIR, SAE_DIR, HOOK) is None
    assert "hook" in (bundled_forward.unsupported(MODEL_DIR, SAE_DIR, "blocks.0.hook_resid_pre") or "")
    assert "hook" in (bundled_forward.unsupported(MODEL_DIR, SAE_DIR, "blocks.1.hook_mlp_out") or "")


def test_inspect_takes_the_bundled_forward_only_where_it_applies(tmp_path: Path) -> None:
    spec = target_spec()
    assert isinstance(load_inspect_target(spec, Registry()), BundledTarget)
    assert isinstance(load_inspect_target(target_spec(case=str(ROOT / "cases" / "tiny-stdlib.yaml")), Registry()), BundledTarget)
    assert isinstance(load_inspect_target(spec, Registry(dtype="float64")), Target)  # only float32 is the same computation
    assert isinstance(load_inspect_target(spec, Registry(dtype="bfloat16")), Target)
    local = tmp_path / "sae"
    shutil.copytree(SAE_DIR, local)
    assert isinstance(load_inspect_target(target_spec(sae=str(local), cwd=tmp_path), Registry()), Target)  # a local SAE: SAELens reads it


def test_too_long_and_empty_texts_get_the_engines_messages(pair: bundled_forward.BundledPair) -> None:
    long = "x = 1\n" * 200
    with pytest.raises(CaseError) as fast:
        pair.encoded(long)
    target = load_target(target_spec(), Registry())
    with pytest.raises(CaseError) as engine:
        target.encoded([long])
    assert str(fast.value) == str(engine.value) and "longer than the model's context of 128" in str(fast.value)
    with pytest.raises(CaseError, match="no tokens besides BOS"):
        pair.encoded("")


def test_inspect_json_is_the_same_through_transformer_lens(capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["def add(a, b):\n    return a + b", "class Foo(object):\n    def __init__(self):", "Return the number of items."]
    outputs = []
    for extra in ([], ["--transformer-lens"]):
        assert main(["inspect", "--json", "-k", "8", *extra, *texts]) == 0
        out, err = capsys.readouterr()
        assert err == ""
        outputs.append(json.loads(out))
    fast, full = outputs
    assert [t["text"] for t in fast["texts"]] == texts
    assert {k: v for k, v in fast.items() if k != "texts"} == {k: v for k, v in full.items() if k != "texts"}
    for a, b in zip(fast["texts"], full["texts"]):
        assert a["n_tokens"] == b["n_tokens"] and a["l0"] == b["l0"]
        for ta, tb in zip(a["tokens"], b["tokens"]):
            assert ta["token"] == tb["token"] and ta["position"] == tb["position"]
            assert [f["feature"] for f in ta["features"]] == [f["feature"] for f in tb["features"]]
            assert all(abs(fa["activation"] - fb["activation"]) <= 1e-6 for fa, fb in zip(ta["features"], tb["features"]))

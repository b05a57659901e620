"""`bundled_forward`: the bundled pair on plain torch computes what TransformerLens and SAELens compute.

Expected values come from the libraries themselves, text by text: `run_with_cache` on one unpadded text and
the SAE's own `encode`, and the engine's batched pass. The forward is held equal on the bundled cases'
texts and about 190 held-out documents; the encode on SAE configs with each option flipped, loaded by SAELens
from the same directory.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from interp_tests.cases.casefile import load_case_file
from interp_tests.cases.schema import SaeRef
from interp_tests.common.errors import CaseError, LoadError
from interp_tests.compute import bundled_forward
from interp_tests.compute.registry import BUNDLED_DIR, Registry
from interp_tests.explore.cli import main
from interp_tests.explore.inspection import BundledTarget, Target, bundled_target, load_quick_target, load_target, target_spec

from .helpers import ROOT

HOOK = "blocks.1.hook_resid_pre"
MODEL_DIR = BUNDLED_DIR / "tiny-stdlib"
SAE_DIR = BUNDLED_DIR / "tiny-stdlib-res" / HOOK
LABEL = f"tiny-stdlib-res/{HOOK}"


@pytest.fixture(scope="module")
def pair() -> bundled_forward.BundledPair:
    return bundled_forward.load(MODEL_DIR, SAE_DIR, HOOK, LABEL)


@pytest.fixture(scope="module")
def libraries() -> Any:
    reg = Registry(device="cpu", dtype="float32")
    return reg.model("tiny-stdlib"), reg.sae(SaeRef(release="tiny-stdlib-res", id=HOOK))


@pytest.fixture(scope="module")
def texts(pair: bundled_forward.BundledPair) -> list[str]:
    """The bundled cases' list texts, then held-out documents (cut to fit the context) up to 200 texts in all."""
    cf = load_case_file(ROOT / "cases" / "tiny-stdlib.yaml")
    out = [t for group in cf.model.texts.values() if isinstance(group, tuple) for t in group]
    for line in (BUNDLED_DIR / "heldout.jsonl").read_text().splitlines():
        doc = json.loads(line)["text"]
        ids = pair.token_ids(doc)
        text = doc if len(ids) <= pair.n_ctx else pair.tokenizer.decode(ids[1 : pair.n_ctx // 2])
        if text.strip() and text not in out:
            out.append(text)
        if len(out) >= 200:
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
    import torch

    awkward = ["  leading spaces", "a <|endoftext|> inside", "crlf\r\nline", "emoji \U0001f600 and \x00 nul", "\t\n"]
    for text in [*texts, *awkward]:
        ids, strs, x, feats = reference(libraries, text)
        assert pair.token_ids(text) == ids, text
        tokens, got = pair.encoded(text)
        assert list(tokens) == strs, text
        assert torch.equal(pair.resid_pre(ids)[1:], x), text  # the same ops in the same order: bit for bit
        assert torch.equal(got, feats), text


def test_every_block_boundary_equals_the_libraries(pair: bundled_forward.BundledPair, libraries: Any, texts: list[str]) -> None:
    import torch

    model, _ = libraries
    for layer in range(model.cfg.n_layers):
        at_layer = dataclasses.replace(pair, layer=layer)
        for text in texts[:60]:
            ids, _, x, _ = reference(libraries, text, f"blocks.{layer}.hook_resid_pre")
            assert torch.equal(at_layer.resid_pre(ids)[1:], x), (layer, text)


def test_the_engines_batched_pass_gives_the_same_features(pair: bundled_forward.BundledPair, texts: list[str]) -> None:
    target = load_target(target_spec(), Registry())
    fast = bundled_target(target_spec(), Registry())
    assert isinstance(fast, BundledTarget)
    batched = target.encoded(texts)
    for lib, ours in zip(batched, fast.encoded(texts)):
        assert lib.text == ours.text and lib.tokens == ours.tokens and lib.token_bytes == ours.token_bytes, lib.text
        assert float((lib.feats - ours.feats).abs().max()) <= 1e-5, lib.text  # padded batches vs one text: float rounding only


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
    ours = bundled_forward.load(MODEL_DIR, sae_dir, HOOK, "copy")
    theirs = SAE.load_from_disk(str(sae_dir), device="cpu", dtype="float32")
    x = torch.cat([pair.resid_pre(pair.token_ids(t))[1:] for t in texts[:40]])
    with torch.inference_mode():
        expected = theirs.encode(x)
    got = ours.encode(x)
    assert int((got > 0).sum(-1).max()) <= int(change.get("k", cfg["k"]))
    assert torch.equal(got, expected)


def copy_of_the_bundled_pair(root: Path) -> tuple[Path, Path]:
    """The bundled model and SAE copied under `root`, laid out as interp_tests/bundled/ is."""
    model_dir, sae_dir = root / "tiny-stdlib", root / "tiny-stdlib-res" / HOOK
    shutil.copytree(MODEL_DIR, model_dir)
    shutil.copytree(SAE_DIR, sae_dir)
    return model_dir, sae_dir


def edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def edit_weights(path: Path, name: str, change: Any) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(str(path))
    save_file({**weights, name: change(weights[name]).contiguous()}, str(path))


def test_the_bundled_pair_is_inside_and_other_hooks_are_not() -> None:
    assert bundled_forward.unsupported(MODEL_DIR, SAE_DIR, HOOK) is None
    assert bundled_forward.unsupported(MODEL_DIR, SAE_DIR, "blocks.0.hook_resid_pre") is None  # a target.hook override
    for hook in ("blocks.2.hook_resid_pre", "blocks.1.hook_mlp_out", "hook_embed", ""):
        assert "hook" in (bundled_forward.unsupported(MODEL_DIR, SAE_DIR, hook) or ""), hook


EDITS: list[tuple[str, Any, str]] = [
    ("model act_fn gelu", lambda m, s: edit_json(m / "config.json", act_fn="gelu"), "act_fn='gelu'"),
    ("model RMS norm", lambda m, s: edit_json(m / "config.json", normalization_type="RMS"), "normalization_type='RMS'"),
    ("model rotary", lambda m, s: edit_json(m / "config.json", positional_embedding_type="rotary"), "positional_embedding_type"),
    ("model attn_only", lambda m, s: edit_json(m / "config.json", attn_only=True), "model config keys ['attn_only']"),
    ("model without d_mlp", lambda m, s: edit_json(m / "config.json", d_mlp=None), "model config lacks ['d_mlp']"),
    ("model weight shape", lambda m, s: edit_weights(m / "model.safetensors", "blocks.0.mlp.b_in", lambda t: t[:-1]), "model weights"),
    ("model weight missing", lambda m, s: _drop(m / "model.safetensors", "unembed.b_U"), "model weights"),
    ("no tokenizer", lambda m, s: (m / "tokenizer" / "tokenizer.json").unlink(), "missing"),
    ("bos as a dict", lambda m, s: edit_json(m / "tokenizer" / "tokenizer_config.json", bos_token={"content": "<|endoftext|>"}), "bos_token"),
    ("SAE standard", lambda m, s: edit_json(s / "cfg.json", architecture="standard"), "architecture='standard'"),
    ("SAE normalized", lambda m, s: edit_json(s / "cfg.json", normalize_activations="expected_average_only_in"), "normalize_activations"),
    ("SAE reshaped", lambda m, s: edit_json(s / "cfg.json", reshape_activations="hook_z"), "reshape_activations"),
    ("SAE float16", lambda m, s: edit_json(s / "cfg.json", dtype="float16"), "dtype 'float16'"),
    ("SAE error term", lambda m, s: edit_json(s / "cfg.json", use_error_term=True), "SAE config keys ['use_error_term']"),
    ("SAE without k", lambda m, s: edit_json(s / "cfg.json", k=None), "SAE config lacks ['k']"),
    ("SAE k > d_sae", lambda m, s: edit_json(s / "cfg.json", k=5000), "k 5000 > d_sae"),
    ("SAE of SAELens 5", lambda m, s: edit_json(s / "cfg.json", metadata={**json.loads((s / "cfg.json").read_text())["metadata"], "sae_lens_version": "5.9.1"}), "SAELens 5.9.1"),
    ("SAE on a head", lambda m, s: edit_json(s / "cfg.json", metadata={**json.loads((s / "cfg.json").read_text())["metadata"], "hook_head_index": 2}), "one attention head"),
    ("SAE d_sae mismatch", lambda m, s: edit_json(s / "cfg.json", d_sae=512), "SAE weights"),
    ("SAE other width", lambda m, s: (edit_json(s / "cfg.json", d_in=64), edit_weights(s / "sae_weights.safetensors", "b_dec", lambda t: t[:64])), "SAE weights"),
    ("SAE without weights", lambda m, s: (s / "sae_weights.safetensors").unlink(), "missing"),
]


def _drop(path: Path, name: str) -> None:
    from safetensors.torch import load_file, save_file

    save_file({k: v for k, v in load_file(str(path)).items() if k != name}, str(path))


@pytest.mark.parametrize(("edit", "reason"), [(e, r) for _, e, r in EDITS], ids=[n for n, _, _ in EDITS])
def test_a_pair_it_does_not_read_goes_through_the_libraries(edit: Any, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import interp_tests.explore.inspection as explore

    model_dir, sae_dir = copy_of_the_bundled_pair(tmp_path)
    monkeypatch.setattr(explore, "BUNDLED_DIR", tmp_path)
    assert isinstance(bundled_target(target_spec(), Registry()), BundledTarget)  # the copy, unedited, is inside
    edit(model_dir, sae_dir)
    why = bundled_forward.unsupported(model_dir, sae_dir, HOOK)
    assert why is not None and reason in why, why
    with pytest.raises(LoadError, match="cannot run this pair"):
        bundled_forward.load(model_dir, sae_dir, HOOK, "copy")
    assert bundled_target(target_spec(), Registry()) is None


def test_non_finite_weights_go_through_the_libraries_which_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import interp_tests.explore.inspection as explore

    model_dir, sae_dir = copy_of_the_bundled_pair(tmp_path)
    edit_weights(sae_dir / "sae_weights.safetensors", "b_dec", lambda t: t * float("nan"))
    assert bundled_forward.unsupported(model_dir, sae_dir, HOOK) is None  # headers only: the values are read by load
    with pytest.raises(LoadError, match="not all finite"):
        bundled_forward.load(model_dir, sae_dir, HOOK, "copy")
    monkeypatch.setattr(explore, "BUNDLED_DIR", tmp_path)
    assert bundled_target(target_spec(), Registry()) is None


ONE_CASE = "texts:\n  fn: ['def f(x):']\ncases:\n  - id: one\n    expect:\n      - fires: {feature: 692, on: fn, token: def, min: 0.1}\n"


def test_inspect_takes_the_bundled_forward_only_where_it_applies(tmp_path: Path) -> None:
    spec = target_spec()
    assert isinstance(load_quick_target(spec, Registry()), BundledTarget)
    assert isinstance(load_quick_target(target_spec(case=str(ROOT / "cases" / "tiny-stdlib.yaml")), Registry()), BundledTarget)
    assert isinstance(load_quick_target(spec, Registry(dtype="float64")), Target)  # only float32 is the same computation
    assert isinstance(load_quick_target(spec, Registry(dtype="bfloat16")), Target)
    local = tmp_path / "sae"
    shutil.copytree(SAE_DIR, local)
    assert isinstance(load_quick_target(target_spec(sae=str(local), cwd=tmp_path), Registry()), Target)  # a local SAE: SAELens reads it
    kwargs = tmp_path / "kwargs.yaml"
    kwargs.write_text(f"target:\n  model: tiny-stdlib\n  model_kwargs: {{center_writing_weights: true}}\n  sae: {{release: tiny-stdlib-res, id: {HOOK}}}\n" + ONE_CASE)
    with pytest.raises(LoadError, match="takes no model_kwargs"):  # the libraries' path, and its message
        load_quick_target(target_spec(case=str(kwargs)), Registry())


def test_a_case_files_hook_override_reads_that_hook_on_both_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "override.yaml"
    case.write_text(f"target:\n  model: tiny-stdlib\n  hook: blocks.0.hook_resid_pre\n  sae: {{release: tiny-stdlib-res, id: {HOOK}}}\n" + ONE_CASE)
    target = load_quick_target(target_spec(case=str(case)), Registry())
    assert isinstance(target, BundledTarget) and target.hook == "blocks.0.hook_resid_pre" and target.pair.layer == 0
    outputs = []
    for extra in ([], ["--transformer-lens"]):
        assert main(["inspect", "--json", "--case", str(case), *extra, "def f(x):"]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0]["hook"] == outputs[1]["hook"] == "blocks.0.hook_resid_pre"
    assert outputs[0] == outputs[1]  # one text: bit for bit


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


def test_inspect_json_is_the_same_through_transformer_lens(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import interp_tests.explore.inspection as explore

    paths: list[str] = []
    monkeypatch.setattr(explore, "load_target", lambda *a: paths.append("libraries") or load_target(*a))
    monkeypatch.setattr(bundled_forward, "load", lambda *a: paths.append("bundled_forward") or LOAD(*a))
    texts = ["def add(a, b):\n    return a + b", "class Foo(object):\n    def __init__(self):", "Return the number of items.", "café ☕ 日本"]
    outputs = []
    for extra in ([], ["--transformer-lens"]):
        assert main(["inspect", "--json", "-k", "8", *extra, *texts]) == 0
        out, err = capsys.readouterr()
        assert err == ""
        outputs.append(json.loads(out))
    assert paths == ["bundled_forward", "libraries"]
    fast, full = outputs
    assert [t["text"] for t in fast["texts"]] == texts
    assert {k: v for k, v in fast.items() if k != "texts"} == {k: v for k, v in full.items() if k != "texts"}
    for a, b in zip(fast["texts"], full["texts"]):
        assert a["n_tokens"] == b["n_tokens"] and a["l0"] == b["l0"]
        for ta, tb in zip(a["tokens"], b["tokens"]):
            assert ta["token"] == tb["token"] and ta["position"] == tb["position"] and ta["bytes"] == tb["bytes"]
            assert [f["feature"] for f in ta["features"]] == [f["feature"] for f in tb["features"]]
            assert all(abs(fa["activation"] - fb["activation"]) <= 1e-5 for fa, fb in zip(ta["features"], tb["features"]))  # batched: float rounding


LOAD = bundled_forward.load


def test_draft_is_the_same_through_transformer_lens(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import interp_tests.explore.inspection as explore

    paths: list[str] = []
    monkeypatch.setattr(explore, "load_target", lambda *a: paths.append("libraries") or load_target(*a))
    monkeypatch.setattr(bundled_forward, "load", lambda *a: paths.append("bundled_forward") or LOAD(*a))
    argv = ["draft", "--json", "--n", "3", "--positive", "print(x)", "f(a, b)", "len(items)", "open(path)", "--negative", "Return the number of items.", "See the documentation."]
    outputs = []
    for extra in ([], ["--transformer-lens"]):
        assert main([*argv, *extra]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert paths == ["bundled_forward", "libraries"]
    fast, full = outputs
    assert [f["feature"] for f in fast["features"]] == [f["feature"] for f in full["features"]]
    for a, b in zip(fast["features"], full["features"]):
        assert a["auroc"] == b["auroc"] and a["selector"] == b["selector"]
        assert a["positive_max"] == pytest.approx(b["positive_max"], abs=1e-5) and a["negative_max"] == pytest.approx(b["negative_max"], abs=1e-5)
    assert fast["stub"] == full["stub"]  # bounds rounded with margins: the same case file


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_bundled_model_holds_its_files_weights_and_config_and_its_tokenizer_prepends_bos(dtype: str) -> None:
    """Loaded without random initialisation first and moved only where it is not already: every weight is the
    file's (in the dtype asked for), the config is the file's, and the tokenizer is the one TransformerLens
    would make (add_bos_token)."""
    import torch
    from safetensors.torch import load_file

    from interp_tests.compute.registry import load_bundled_model

    model = load_bundled_model("tiny-stdlib", "cpu", dtype)
    want = load_file(str(MODEL_DIR / "model.safetensors"))
    state = model.state_dict()
    for name, tensor in want.items():
        assert state[name].dtype == getattr(torch, dtype) and torch.equal(state[name], tensor.to(getattr(torch, dtype))), name
    assert all(t.dtype == getattr(torch, dtype) for t in model.parameters())
    written = json.loads((MODEL_DIR / "config.json").read_text())
    derived = ("dtype", "tokenizer_prepends_bos")  # the dtype asked for; what TransformerLens finds the tokenizer does
    assert {k: getattr(model.cfg, k) for k in written if k not in derived} == {k: v for k, v in written.items() if k not in derived}
    assert model.cfg.tokenizer_prepends_bos and model.tokenizer.add_bos_token and model.to_tokens("def").tolist()[0][0] == model.tokenizer.bos_token_id
    assert not model.training

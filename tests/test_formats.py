"""Checkpoints of every major SAE library, each written by the library's own saving code where it installs beside
this project (sparsify: `SparseCoder.save_to_disk`; dictionary_learning: its classes' `state_dict()` saved as
`trainSAE` saves it, ae.pt + config.json) or to the documented layout (Gemma Scope's params.npz: no library).
Each loads as a SAELens SAE whose encode and decode equal the library's own (or an independent numpy
implementation), a case file gives the same verdicts and values on the same weights in every format, and broken
checkpoints are one-line errors. dictionary_learning 0.1 imports nnsight (for its activation buffer, unused here):
the tests stub it; installing nnsight 0.3 would replace this project's torch."""

from __future__ import annotations

import json
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from .helpers import case_file


@pytest.fixture(scope="module")
def dictionary_learning() -> Any:
    sys.modules.setdefault("nnsight", types.SimpleNamespace(LanguageModel=object))  # type: ignore[arg-type]
    import dictionary_learning

    return dictionary_learning


def load(path: Path, fmt: str | None = None) -> Any:
    from interp_tests.cases.schema import SaeRef
    from interp_tests.compute.registry import Registry

    return Registry().sae(SaeRef(path=str(path), format=fmt))  # type: ignore[arg-type]


def x_of(d: int, n: int = 64, seed: int = 0) -> Any:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def close(a: Any, b: Any) -> None:
    torch.testing.assert_close(a.float(), b.float(), atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- each format against its library
# An SAE with a skip connection has no SAELens architecture: refused, tested below.
@pytest.mark.parametrize(("transcode", "skip"), [(False, False), (True, False), (True, True)], ids=["sae", "transcoder", "skip-transcoder"])
def test_sparsify_checkpoints_equal_sparsifys_own_forward(tmp_path: Path, transcode: bool, skip: bool) -> None:
    import sparsify
    torch.manual_seed(0)
    coder = sparsify.SparseCoder(16, sparsify.SparseCoderConfig(num_latents=48, k=5, transcode=transcode, skip_connection=skip))
    with torch.no_grad():
        for p in coder.parameters():
            p.normal_(0, 0.3)
    folder = tmp_path / "run" / ("layers.3.mlp" if transcode else "layers.3")
    coder.save_to_disk(folder)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"model": "EleutherAI/pythia-70m"}))
    sae = load(folder)
    x = x_of(16)
    with torch.no_grad():
        top_acts, top_indices, _ = coder.encode(x)
        expected = coder.decode(top_acts, top_indices) + (x @ coder.W_skip.mT if skip else 0)
        dense = torch.zeros(64, 48).scatter_(-1, top_indices, top_acts)
        close(sae.encode(x), dense)
        out = sae.decode(sae.encode(x)) + (x @ sae.W_skip.T if skip else 0)
        close(out, expected)
        close(sae(x), expected)  # the SAELens class's own forward (the skip included)
    assert sae.cfg.metadata.model_name == "EleutherAI/pythia-70m"
    if transcode:
        assert (sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out) == ("blocks.3.ln2.hook_normalized", "blocks.3.hook_mlp_out")
    else:
        assert sae.cfg.metadata.hook_name == "blocks.3.hook_resid_post" and sae.cfg.apply_b_dec_to_input


@pytest.mark.parametrize("cls", ["AutoEncoder", "AutoEncoderTopK", "GatedAutoEncoder", "JumpReluAutoEncoder", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"])
def test_dictionary_learning_checkpoints_equal_its_own_forward(tmp_path: Path, dictionary_learning: Any, cls: str) -> None:
    from dictionary_learning.dictionary import AutoEncoder, GatedAutoEncoder, JumpReluAutoEncoder
    from dictionary_learning.trainers.batch_top_k import BatchTopKSAE
    from dictionary_learning.trainers.matryoshka_batch_top_k import MatryoshkaBatchTopKSAE
    from dictionary_learning.trainers.top_k import AutoEncoderTopK

    torch.manual_seed(1)
    d, n = 16, 40
    ae = {
        "AutoEncoder": lambda: AutoEncoder(d, n),
        "AutoEncoderTopK": lambda: AutoEncoderTopK(d, n, k=6),
        "GatedAutoEncoder": lambda: GatedAutoEncoder(d, n),
        "JumpReluAutoEncoder": lambda: JumpReluAutoEncoder(d, n),
        "BatchTopKSAE": lambda: BatchTopKSAE(d, n, k=6),
        "MatryoshkaBatchTopKSAE": lambda: MatryoshkaBatchTopKSAE(d, n, k=6, group_sizes=[8, 32]),
    }[cls]()
    with torch.no_grad():
        for p in ae.parameters():
            p.normal_(0, 0.3)
        if hasattr(ae, "threshold"):
            ae.threshold.copy_(torch.full_like(ae.threshold, 0.2) if ae.threshold.ndim else torch.tensor(0.2))
    folder = tmp_path / "trainer_0"
    folder.mkdir()
    torch.save({k: v.cpu() for k, v in ae.state_dict().items()}, folder / "ae.pt")  # as trainSAE saves it
    trainer = {"dict_class": cls, "activation_dim": d, "dict_size": n, "layer": 2, "lm_name": "EleutherAI/pythia-70m-deduped", "submodule_name": "resid_post_layer_2", "k": 6}
    (folder / "config.json").write_text(json.dumps({"trainer": trainer, "buffer": {"ctx_len": 128}}))
    sae = load(folder)
    x = x_of(d)
    with torch.no_grad():
        f = ae.encode(x)
        close(sae.encode(x), f)
        close(sae.decode(sae.encode(x)), ae.decode(f))
    assert sae.cfg.metadata.hook_name == "blocks.2.hook_resid_post" and sae.cfg.metadata.model_name == "EleutherAI/pythia-70m-deduped"


def gemma_scope_params(d: int, n: int, seed: int = 0) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"W_enc": rng.normal(0, 0.3, (d, n)).astype("float32"), "W_dec": rng.normal(0, 0.3, (n, d)).astype("float32"),
            "b_enc": rng.normal(0, 0.1, n).astype("float32"), "b_dec": rng.normal(0, 0.1, d).astype("float32"), "threshold": np.abs(rng.normal(0.3, 0.1, n)).astype("float32")}


@pytest.mark.parametrize("architecture", ["standard", "topk", "batchtopk", "jumprelu", "gated"])
def test_saelens_training_checkpoints_load_as_the_inference_sae(tmp_path: Path, architecture: str) -> None:
    """A checkpoint folder as SAELens's trainer writes it (the training SAE's save_model, its feature sparsity
    and its trainer state): the training config's extra keys are read past, trainer_state.pt is never read."""
    from sae_lens.registry import get_sae_training_class

    training_class, config_class = get_sae_training_class(architecture)
    extra = {"k": 5} if "topk" in architecture else {}
    sae = training_class(config_class(d_in=16, d_sae=48, dtype="float32", device="cpu", **extra))
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3)
            if "threshold" in name:  # thresholds are positive in any trained JumpReLU
                p.copy_(p.abs() if name == "threshold" else torch.full_like(p, -2.0))
    sae.eval()
    if architecture == "batchtopk":  # a running threshold; at inference a JumpReLU (SAELens's own conversion)
        sae.topk_threshold.fill_(0.4)
    folder = tmp_path / "checkpoints" / "run1" / "204800"
    sae.save_model(folder)
    from safetensors.torch import save_file

    save_file({"sparsity": torch.zeros(48)}, str(folder / "sparsity.safetensors"))
    (folder / "trainer_state.pt").write_bytes(b"not read")
    (folder / "runner_cfg.json").write_text("{}")
    loaded = load(folder)
    sae.save_inference_model(tmp_path / "inference")
    from sae_lens import SAE

    expected = SAE.load_from_disk(str(tmp_path / "inference"))
    assert loaded.cfg.architecture() == expected.cfg.architecture() == ("jumprelu" if architecture == "batchtopk" else architecture)
    x = x_of(16)
    with torch.no_grad():
        close(loaded.encode(x), expected.encode(x))
        close(loaded.decode(loaded.encode(x)), expected.decode(expected.encode(x)))
        if architecture != "batchtopk":  # the same function as the training SAE itself
            close(loaded.encode(x), sae.encode(x))


@pytest.mark.parametrize("release", ["gemma-scope-2b-pt-res", "gemma-scope-9b-it-res", "gemma-scope-2b-pt-transcoders"])
def test_gemma_scope_params_equal_an_independent_numpy_jumprelu(tmp_path: Path, release: str) -> None:
    import numpy as np

    folder = tmp_path / release / "layer_12" / "width_16k" / "average_l0_82"
    folder.mkdir(parents=True)
    p = gemma_scope_params(16, 40)
    if "transcoders" in release:  # a transcoder of the MLP: the decoder writes another width
        rng = np.random.default_rng(1)
        p |= {"W_dec": rng.normal(0, 0.3, (40, 24)).astype("float32"), "b_dec": rng.normal(0, 0.1, 24).astype("float32")}
    np.savez(folder / "params.npz", **p)
    sae = load(folder)
    x = x_of(16).numpy()
    pre = x @ p["W_enc"] + p["b_enc"]  # the documented architecture: no b_dec subtracted
    acts = pre * (pre > p["threshold"])
    with torch.no_grad():
        close(sae.encode(torch.from_numpy(x)), torch.from_numpy(acts))
        close(sae.decode(sae.encode(torch.from_numpy(x))), torch.from_numpy(acts @ p["W_dec"] + p["b_dec"]))
    model = "gemma-2-9b-it" if "9b-it" in release else "gemma-2-2b"
    if "transcoders" in release:
        assert sae.cfg.architecture() == "jumprelu_transcoder"
        assert (sae.cfg.metadata.hook_name, sae.cfg.metadata.hook_name_out, sae.cfg.metadata.model_name) == ("blocks.12.ln2.hook_normalized", "blocks.12.hook_mlp_out", model)
    else:
        assert (sae.cfg.architecture(), sae.cfg.metadata.hook_name, sae.cfg.metadata.model_name) == ("jumprelu", "blocks.12.hook_resid_post", model)


# ----------------------------------------------------------------------------- nothing from a checkpoint runs code
class WritesAFile:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> Any:
        return (open, (self.target, "w"))


def test_a_malicious_pickle_is_refused_and_runs_nothing(pytester: pytest.Pytester) -> None:
    folder = pytester.path / "trainer_0"
    folder.mkdir()
    marker = pytester.path / "owned.txt"
    with open(folder / "ae.pt", "wb") as f:
        pickle.dump({"encoder.weight": WritesAFile(str(marker))}, f)
    (folder / "config.json").write_text(json.dumps({"trainer": {"dict_class": "AutoEncoder", "layer": 1, "submodule_name": "resid_pre"}}))
    case_file(pytester, "suite", 'texts:\n  t: ["x = 1"]\ncases:\n  - id: one\n    on: t\n    expect:\n      - l0: {max: 100}\n', target="target:\n  model: tiny-stdlib\n  sae: {path: ../trainer_0}\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert not marker.exists()  # the pickle's code never ran
    assert "torch.load(weights_only=True) only" in result.stdout.str() and "Traceback" not in result.stdout.str()


# ----------------------------------------------------------------------------- broken checkpoints: one line each
def test_broken_checkpoints_name_the_file_and_the_key(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from interp_tests.common.errors import LoadError

    folder = tmp_path / "layers.1"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"d_in": 16, "num_latents": 40, "k": 4}))
    good = {"encoder.weight": torch.zeros(40, 16), "encoder.bias": torch.zeros(40), "W_dec": torch.zeros(40, 16), "b_dec": torch.zeros(16)}
    save_file({**good, "W_dec": torch.zeros(16, 40)}, str(folder / "sae.safetensors"))  # transposed
    with pytest.raises(LoadError, match=r"sae.safetensors: 'W_dec' is \(16, 40\), expected \(40, 16\) from its config \(a transposed or truncated weight\?\)"):
        load(folder)
    save_file({**good, "encoder.weight": torch.zeros(30, 16)}, str(folder / "sae.safetensors"))  # truncated
    with pytest.raises(LoadError, match=r"'encoder.weight' is \(30, 16\), expected \(40, 16\)"):
        load(folder)
    (folder / "cfg.json").write_text(json.dumps({"num_latents": 40, "k": 4}))
    with pytest.raises(LoadError, match=r"cfg.json has no 'd_in'"):
        load(folder)
    both = tmp_path / "both"
    both.mkdir()
    for name in ("cfg.json", "sae.safetensors", "sae_weights.safetensors"):
        (both / name).write_text("{}")
    with pytest.raises(LoadError, match=r"looks like saelens and sparsify: name the format \(sae: \{path: DIR, format: saelens\}"):
        load(both)


# ----------------------------------------------------------------------------- one case file, every format
SUITE = """\
texts:
  functions: ["def add(a, b):\\n    return a + b", "def parse(text):\\n    return text.split()"]
  prose: ["Return the number of items in the list.", "See the documentation for more details."]
  heldout: {corpus: {bundled: tiny-stdlib-heldout, tokens: 400, context: 64}}
cases:
  - id: features
    expect:
      - fires:  {feature: 692, on: functions, token: "def", min: 1.0}
      - silent: {feature: 692, on: prose, max: 100}
      - separates: {feature: 692, positive: functions, negative: prose, min_auroc: 0.5}
  - id: reconstruction
    on: heldout
    expect:
      - explained_variance: {min: 0.3}
      - l0: {max: 100}
      - ce_loss_score: {min: 0.3}
      - kl_div: {max: 10}
"""


def plain_topk(sae: Any) -> dict[str, Any]:
    """The bundled TopK SAE's weights as a TopK SAE without decoder-norm rescaling, the same function: the norms
    folded into the encoder (scaled up) and the decoder (unit rows)."""
    norm = sae.W_dec.norm(dim=-1)
    return {"W_enc": (sae.W_enc * norm).detach().clone(), "b_enc": (sae.b_enc * norm).detach().clone(),
            "W_dec": (sae.W_dec / norm[:, None]).detach().clone(), "b_dec": sae.b_dec.detach().clone()}


@pytest.fixture(scope="module")
def same_weights(tmp_path_factory: pytest.TempPathFactory, dictionary_learning: Any) -> dict[str, Path]:
    """The same TopK SAE (the bundled one, made plain) as SAELens, sparsify and dictionary_learning checkpoints."""
    import sparsify
    from dictionary_learning.trainers.top_k import AutoEncoderTopK
    from sae_lens import TopKSAE, TopKSAEConfig

    from tests.checkpoints import bundled_sae

    root = tmp_path_factory.mktemp("formats")
    w = plain_topk(bundled_sae())
    d, n, k = 128, 1024, 24
    cfg = TopKSAEConfig(d_in=d, d_sae=n, k=k, dtype="float32", device="cpu", apply_b_dec_to_input=True)
    cfg.metadata.hook_name, cfg.metadata.model_name, cfg.metadata.prepend_bos = "blocks.1.hook_resid_pre", "tiny-stdlib", True
    original = TopKSAE(cfg)
    original.load_state_dict(w)
    original.save_model(str(root / "saelens"))
    coder = sparsify.SparseCoder(d, sparsify.SparseCoderConfig(num_latents=n, k=k))
    with torch.no_grad():
        coder.encoder.weight.copy_(w["W_enc"].T)
        coder.encoder.bias.copy_(w["b_enc"])
        coder.W_dec.copy_(w["W_dec"])
        coder.b_dec.copy_(w["b_dec"])
    coder.save_to_disk(root / "sparsify-run" / "layers.0")  # layer 0's output: the residual entering block 1
    (root / "sparsify-run" / "config.json").write_text(json.dumps({"model": "tiny-stdlib"}))
    ae = AutoEncoderTopK(d, n, k=k)
    with torch.no_grad():
        ae.encoder.weight.copy_(w["W_enc"].T)
        ae.encoder.bias.copy_(w["b_enc"])
        ae.decoder.weight.copy_(w["W_dec"].T)
        ae.b_dec.copy_(w["b_dec"])
    (root / "dl" / "trainer_0").mkdir(parents=True)
    torch.save({key: v.cpu() for key, v in ae.state_dict().items()}, root / "dl" / "trainer_0" / "ae.pt")
    trainer = {"dict_class": "AutoEncoderTopK", "activation_dim": d, "dict_size": n, "k": k, "layer": 1, "lm_name": "tiny-stdlib", "submodule_name": "resid_pre"}
    (root / "dl" / "trainer_0" / "config.json").write_text(json.dumps({"trainer": trainer}))
    return {"saelens": root / "saelens", "sparsify": root / "sparsify-run" / "layers.0", "dictionary_learning": root / "dl" / "trainer_0"}


def observed(document: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(c["case_id"], v["check"]): (v["ok"], v["observed"]) for c in document["cases"] for v in c["verdicts"]}


def test_a_case_file_gives_the_same_verdicts_and_values_in_every_format(same_weights: dict[str, Path], tmp_path: Path) -> None:
    import interp_tests

    found = {}
    for fmt, folder in same_weights.items():
        path = tmp_path / f"{fmt}.yaml"
        path.write_text(f"target:\n  model: tiny-stdlib\n  sae: {{path: {folder}}}\n" + SUITE)
        found[fmt] = observed(interp_tests.evaluate(path).document)
    reference = found.pop("saelens")
    assert all(ok for ok, _ in reference.values()), reference
    for fmt, values in found.items():
        assert values.keys() == reference.keys(), fmt
        for key, (ok, value) in values.items():
            assert ok == reference[key][0], (fmt, key)
            assert value == pytest.approx(reference[key][1], rel=1e-6, abs=1e-6), (fmt, key, value, reference[key][1])


def test_one_sweep_gates_checkpoints_of_every_format(pytester: pytest.Pytester, same_weights: dict[str, Path]) -> None:
    """One sweep directory holding a checkpoint of each format, gated in one command."""
    import shutil

    import numpy as np

    sweep = pytester.path / "sweep"
    shutil.copytree(same_weights["saelens"], sweep / "saelens")
    shutil.copytree(same_weights["sparsify"], sweep / "layers.0")
    shutil.copytree(same_weights["dictionary_learning"], sweep / "trainer_0")
    (sweep / "gemma").mkdir()
    np.savez(sweep / "gemma" / "params.npz", **gemma_scope_params(128, 256, seed=3))
    lenient = SUITE.replace("min: 1.0}", "min: -1.0}").replace("min_auroc: 0.5", "min_auroc: 0.0").replace("min: 0.3", "min: -1.0e6").replace("max: 100}", "max: 1000}")
    target = "target:\n  model: tiny-stdlib\n  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n  hook: blocks.1.hook_resid_pre\n"
    case_file(pytester, "claims", lenient, target=target)
    out_json = pytester.path / "run.json"
    result = pytester.runpytest("cases/", "--interp-sae", "sweep/*", f"--interp-json={out_json}", "-p", "no:cacheprovider", "-v")
    out = result.stdout.str()
    for label in ("[saelens]", "[sparsify:layers.0]", "[dictionary_learning:trainer_0]", "[gemma_scope:gemma]"):
        assert label in out, out
    result.assert_outcomes(passed=8)
    doc = json.loads(out_json.read_text())
    rows = {r["checkpoint"]: r for b in doc["leaderboard"] for r in b["rows"]}
    assert {"saelens", "sparsify:layers.0", "dictionary_learning:trainer_0", "gemma_scope:gemma"} <= set(rows)
    for label in ("sparsify:layers.0", "dictionary_learning:trainer_0"):  # the same weights: the same numbers
        assert rows[label]["explained_variance"] == pytest.approx(rows["saelens"]["explained_variance"], abs=1e-6)


def test_a_checkpoint_of_another_model_is_refused_before_any_forward(tmp_path: Path) -> None:
    import numpy as np

    import interp_tests

    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_1" / "width_16k" / "average_l0_10"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **gemma_scope_params(128, 64))
    path = tmp_path / "claims.yaml"
    path.write_text(f"target:\n  model: tiny-stdlib\n  sae: {{path: {folder}}}\n" + SUITE)
    results = interp_tests.evaluate(path)
    errors = {c["error"] for c in results.document["cases"]}
    assert len(errors) == 1 and "was trained on 'gemma-2-2b' (its config says), and the case file's model is 'tiny-stdlib'" in errors.pop()


def test_a_checkpoints_size_is_known_before_loading_in_every_format(same_weights: dict[str, Path], tmp_path: Path) -> None:
    """The memory budget's load groups need each checkpoint's size before it loads: within a few percent of
    what the loaded SAE's parameters take, in every format (Gemma Scope's params.npz included)."""
    import numpy as np

    from interp_tests.compute.memory import checkpoint_bytes

    for fmt, path in same_weights.items():
        loaded = sum(p.numel() * p.element_size() for p in load(path).parameters())
        told = checkpoint_bytes(path, "float32")
        assert told is not None and abs(told - loaded) <= 0.05 * loaded, (fmt, told, loaded)
        assert checkpoint_bytes(path, "bfloat16") == pytest.approx(told / 2, rel=0.05)
    gemma = tmp_path / "gemma"
    gemma.mkdir()
    np.savez(gemma / "params.npz", **gemma_scope_params(64, 256))
    told = checkpoint_bytes(gemma, "float32")
    assert told is not None and abs(told - (2 * 64 * 256 + 256 * 2 + 64) * 4) <= 0.05 * told

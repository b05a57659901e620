"""The `interp-tests` command line on the bundled pair: every subcommand, its --json, its errors.

Expected values are computed here independently of the package's engine: the hook activation from
`run_with_cache` on one unpadded text, then the SAE's own `encode`.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from interp_tests.cases.schema import SaeRef
from interp_tests.compute import metrics
from interp_tests.compute.registry import Registry
from interp_tests.explore.cli import main

from .helpers import ROOT, save_random_sae

HOOK = "blocks.1.hook_resid_pre"
FUNCTIONS = ["def add(a, b):\n    return a + b", "def parse(text):\n    return text.split()", "def close(self):\n    self._closed = True"]
PROSE = ["Return the number of items in the list.", "See the documentation for more details.", "import os\nimport sys"]


@pytest.fixture(scope="module")
def pair() -> Any:
    reg = Registry(device="cpu", dtype="float32")
    sae = reg.sae(SaeRef(release="tiny-stdlib-res", id=HOOK))
    return reg.model("tiny-stdlib"), sae


def reference(pair: Any, text: str) -> tuple[list[str], Any]:
    """(token strings without BOS, activations [n, d_sae]) of one text, computed without interp_tests' engine."""
    import torch

    model, sae = pair
    with torch.inference_mode():
        tokens = model.to_tokens(text, prepend_bos=True)
        _, cache = model.run_with_cache(tokens, names_filter=HOOK)
        feats = sae.encode(cache[HOOK][0, 1:])
    return [str(t) for t in model.to_str_tokens(tokens[0, 1:])], feats


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------------- inspect
def test_inspect_shows_each_token_by_repr_with_its_top_feature(pair: Any, capsys: pytest.CaptureFixture[str]) -> None:
    text = "class Foo(object):\n    def __init__(self):"
    code, out, err = run(capsys, "inspect", text)
    assert code == 0, err
    tokens, feats = reference(pair, text)
    lines = out.splitlines()
    for pos, tok in enumerate(tokens, start=1):
        top = int(feats[pos - 1].argmax())
        row = [ln for ln in lines if re.match(rf"\s+{pos}\s+{re.escape(repr(tok))}\s", ln)]
        assert len(row) == 1, (pos, tok, out)
        first = re.search(r"#(\d+) (\d+\.\d+)", row[0])
        assert first is not None and int(first.group(1)) == top, (row[0], top)
        assert float(first.group(2)) == pytest.approx(float(feats[pos - 1, top]), abs=1e-3)
    assert "'\\n   '" in out  # the newline token is shown escaped, as repr() writes it
    assert "#646" in out and "#362" in out  # `class` and `self` features of the bundled SAE
    assert out.count("Neuronpedia: no id for") == 1 and "https://" not in out
    assert max(len(ln) for ln in out.splitlines()) <= 100
    assert f"({len(tokens)} tokens, L0 24.0)" in out


def test_inspect_json_equals_an_independent_computation(pair: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    texts = ["def f(x):\n    return x", "Return the number of items."]
    code, out, err = run(capsys, "inspect", *texts, "-k", "3", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["command"], data["model"], data["sae"], data["hook"], data["d_sae"], data["k"]) == (
        "inspect", "tiny-stdlib", f"tiny-stdlib-res/{HOOK}", HOOK, 1024, 3,
    )
    assert data["neuronpedia_id"] is None
    for got, text in zip(data["texts"], texts):
        tokens, feats = reference(pair, text)
        assert got["text"] == text and got["n_tokens"] == len(tokens)
        assert got["l0"] == pytest.approx(float((feats > 0).sum(-1).double().mean()), abs=1e-5)
        for i, row in enumerate(got["tokens"]):
            assert row["position"] == i + 1 and row["token"] == tokens[i]
            values, index = torch.topk(feats[i], 3)
            assert [f["feature"] for f in row["features"]] == index.tolist()
            assert [f["activation"] for f in row["features"]] == pytest.approx(values.tolist(), abs=1e-5)
            assert all(f["url"] is None for f in row["features"])


def test_inspect_shows_neuronpedia_links_where_the_sae_has_an_id(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import interp_tests.explore.inspection as explore

    monkeypatch.setattr(explore, "neuronpedia_id", lambda release, sae_id: "tiny-stdlib/1-res")
    code, out, err = run(capsys, "inspect", "def f(x):")
    assert code == 0, err
    assert "https://neuronpedia.org/tiny-stdlib/1-res/692" in out and "Neuronpedia: no id" not in out
    code, out, err = run(capsys, "inspect", "def f(x):", "--json")
    row = json.loads(out)["texts"][0]["tokens"][0]
    assert row["features"][0] == {**row["features"][0], "feature": 692, "url": "https://neuronpedia.org/tiny-stdlib/1-res/692"}


def test_inspect_takes_the_target_of_a_case_file_with_a_local_sae_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_random_sae(tmp_path / "saes" / "random", d_sae=64)
    case = tmp_path / "my.yaml"
    case.write_text("target:\n  model: tiny-stdlib\n  sae: {path: saes/random}\ncases:\n  - {id: a, text: x, expect: [{l0: {min: 0}}]}\n")
    code, out, err = run(capsys, "inspect", "def f(x):", "--case", str(case), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["sae"] == str((tmp_path / "saes" / "random").resolve()) and data["d_sae"] == 64


# ----------------------------------------------------------------------------- feature
def test_feature_card_json_top_context_density_histogram_and_logits(pair: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    model, sae = pair
    texts = [*FUNCTIONS, *PROSE, "class A:\n    def f(self):\n        pass"]
    argv = ["feature", "692", "--json", "--top", "3"]
    for t in texts:
        argv += ["--text", t]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    card = json.loads(out)
    values = []
    best = (-1.0, "", 0)
    for t in texts:
        tokens, feats = reference(pair, t)
        col = feats[:, 692]
        values.append(col)
        if float(col.max()) > best[0]:
            best = (float(col.max()), t, int(col.argmax()))
    allv = torch.cat(values)
    assert card["feature"] == 692 and card["url"] is None and card["documents"] == len(texts)
    assert card["tokens"] == allv.numel()
    assert card["active_tokens"] == int((allv > 0).sum())
    assert card["density"] == pytest.approx(float((allv > 0).double().mean()), abs=1e-12)
    top = card["top_contexts"][0]
    assert top["activation"] == pytest.approx(best[0], abs=1e-5) == pytest.approx(card["max_activation"], abs=1e-5)
    assert "".join(top["tokens"][1:]) == best[1] and top["position"] == best[2] + 1 and top["tokens"][top["position"]] == "def"
    assert len(card["top_contexts"]) == 3
    assert [c["activation"] for c in card["top_contexts"]] == sorted((c["activation"] for c in card["top_contexts"]), reverse=True)
    edges, counts = card["histogram"]["edges"], card["histogram"]["counts"]
    assert len(edges) == len(counts) + 1 and 8 <= len(counts) <= 11 and edges[-1] > best[0]
    active = allv[allv > 0]
    assert counts == [int(((active >= lo) & (active < hi)).sum()) for lo, hi in zip(edges, edges[1:])]
    logits = sae.W_dec[692] @ model.W_U
    up = torch.topk(logits, 10)
    assert [p["logit"] for p in card["promoted"]] == pytest.approx(up.values.tolist(), abs=1e-5)
    assert [p["token"] for p in card["promoted"]] == [str(s) for s in model.to_str_tokens(up.indices)]
    assert [p["logit"] for p in card["suppressed"]] == pytest.approx(torch.topk(-logits, 10).values.neg().tolist(), abs=1e-5)
    assert card["tokens_per_s"] > 0 and card["seconds"] > 0


def test_feature_card_terminal_output_fits_100_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "\n\n".join(["def " + "x" * 200 + "(a):\n    return a", *FUNCTIONS, *PROSE])
    path = tmp_path / "docs.txt"
    path.write_text(text)
    code, out, err = run(capsys, "feature", "692", "--file", str(path))
    assert code == 0, err
    assert "[[def]]" in out and "[[def]] parse(text):\\n    return text.split()" in out  # newlines escaped
    assert "activation histogram" in out and "promotes" in out and "suppresses" in out
    assert re.search(r"read \d+ tokens in \d+\.\d+ s: [\d,]+ tokens/s", out)
    assert "7 documents" in out
    too_wide = [ln for ln in out.splitlines() if len(ln) > 100 and not ln.startswith("source: ")]  # the path is the user's
    assert not too_wide, too_wide


def test_feature_top_0_still_reports_the_max_and_the_histogram(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "feature", "692", "--top", "0", "--json", *[a for t in FUNCTIONS for a in ("--text", t)])
    card = json.loads(out)
    assert code == 0 and card["top_contexts"] == [] and card["max_activation"] > 5 and sum(card["histogram"]["counts"]) == card["active_tokens"] > 0


def test_feature_reads_one_document_per_line_with_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(PROSE) + "\n\n")
    code, out, _ = run(capsys, "feature", "692", "--file", str(path), "--lines", "--json")
    assert code == 0 and json.loads(out)["documents"] == 4  # PROSE[2] is two lines
    code, out, _ = run(capsys, "feature", "692", "--file", str(path), "--json")
    assert code == 0 and json.loads(out)["documents"] == 1


def test_feature_over_the_text_groups_of_a_case_file(pair: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from interp_tests.cases.casefile import load_case_file

    case = ROOT / "cases" / "tiny-stdlib.yaml"
    code, out, err = run(capsys, "feature", "871", "--case", str(case), "--json")
    assert code == 0, err
    model = load_case_file(case).model
    texts = list(dict.fromkeys(t for g in model.texts for t in model.text_list(g)))  # list groups (a corpus group is not read)
    card = json.loads(out)
    assert card["documents"] == len(texts)
    assert card["tokens"] == sum(len(reference(pair, t)[0]) for t in texts)


# ----------------------------------------------------------------------------- draft
def independent_auroc(pair: Any, pos: list[str], neg: list[str]) -> tuple[list[float], list[float], Any, Any]:
    import torch

    p = torch.stack([reference(pair, t)[1].max(0).values for t in pos])
    n = torch.stack([reference(pair, t)[1].max(0).values for t in neg])
    auroc = [metrics.auroc(p[:, f].tolist(), n[:, f].tolist()) for f in range(p.shape[1])]
    gap = (p.mean(0) - n.mean(0)).tolist()
    return auroc, gap, p, n


def test_draft_json_ranks_features_by_auroc_then_gap_and_selectors_resolve(pair: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "draft", "--positive", *FUNCTIONS, "--negative", *PROSE, "--n", "4", "--json")
    assert code == 0, err
    data = json.loads(out)
    auroc, gap, p, n = independent_auroc(pair, FUNCTIONS, PROSE)
    ranked = sorted(range(len(auroc)), key=lambda f: (-auroc[f], -gap[f], f))
    assert [f["feature"] for f in data["features"]] == ranked[:4]
    for f in data["features"]:
        i = f["feature"]
        assert f["auroc"] == pytest.approx(auroc[i], abs=1e-9) and f["gap"] == pytest.approx(gap[i], abs=1e-5)
        assert f["positive_max"] == pytest.approx(p[:, i].tolist(), abs=1e-5)
        assert f["fires_min"] < min(f["positive_max"]) and f["silent_max"] > max(f["negative_max"])
        assert f["min_auroc"] <= min(f["auroc"] - 0.05, 0.95)
        if f["selector"] is not None:  # resolve it the way docs/CASES.md defines it
            tokens, feats = reference(pair, f["selector"]["most_active_on"])
            rows = [k for k, t in enumerate(tokens) if f["selector"]["token"] in (None, t)]
            assert int(feats[rows].max(0).values.argmax()) == i
        else:
            assert f["note"]
    assert any(f["selector"] is not None for f in data["features"])
    assert "features:" in data["stub"]


def test_draft_stub_passes_under_pytest_and_a_tightened_bound_fails(tmp_path: Path, pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    code, stub, err = run(capsys, "draft", "--positive", *FUNCTIONS, "--negative", *PROSE)
    assert code == 0, err
    assert "AUROC" in err and "#871" in err  # the table goes to stderr
    assert "# Bounds are drafted" in stub and "0.8 x the smallest" in stub
    path = pytester.path / "drafted.yaml"
    path.write_text(stub)
    result = pytester.runpytest(str(path), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)

    # tighten one bound: demand more than the feature ever reaches on the positive texts
    m = re.search(r"(fires: +\{feature: (feat_\d+), on: \"positive\", min: )([\d.]+)(\})", stub)
    assert m is not None, stub
    broken = stub.replace(m.group(0), f"{m.group(1)}{float(m.group(3)) / 0.8 + 0.001:.4f}{m.group(4)}", 1)
    path.write_text(broken)
    result = pytester.runpytest(str(path), "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*fires*observed*"])


def test_draft_from_a_case_files_groups_passes_under_pytest(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> None:
    case = ROOT / "cases" / "tiny-stdlib.yaml"
    code, stub, err = run(capsys, "draft", "--case", str(case), "--positive", "functions", "--negative", "prose", "code", "--n", "2")
    assert code == 0, err
    assert 'negative: ["prose", "code"]' in stub and '"functions":' in stub
    path = pytester.path / "from_case.yaml"
    path.write_text(stub)
    pytester.runpytest(str(path), "-p", "no:cacheprovider", "-q").assert_outcomes(passed=2)


# ----------------------------------------------------------------------------- errors
def bad_case(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text("target:\n  model: tiny-stdlib\n  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n  colour: blue\ncases:\n  - {id: a, text: x, expect: [{l0: {min: 0}}]}\n")
    return str(path)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["inspect", "--model", "no-such-model", "--sae", f"tiny-stdlib-res:{HOOK}", "x"], "unknown model 'no-such-model'"),
        (["inspect", "--sae", "not-a-spec", "x"], "Could not parse value: 'not-a-spec'"),
        (["inspect", "--sae", "tiny-stdlib-res:blocks.9.hook_resid_pre", "x"], "has no SAE id 'blocks.9.hook_resid_pre'"),
        (["inspect", "--case", "{bad}", "x"], "bad.yaml:4"),
        (["inspect", ""], "empty text ''"),
        (["inspect", "x", "-k", "0"], "for -k"),
        (["feature", "1024", "--text", "x"], "outside [0, 1024): d_sae"),
        (["feature", "3", "--file", "{tmp}/missing.txt"], "cannot read --file"),
        (["feature", "3", "--file", "{tmp}", "--context", "7"], "cannot read --file"),
        (["feature", "3", "--text", "x", "--context", "500"], "for --context: give 2 to 128"),
        (["feature", "3"], "give the texts to read"),
        (["feature", "three", "--text", "x"], "invalid int value: 'three'"),
        (["draft", "--positive", "a"], "--negative"),
        (["draft", "--positive", "a", "--negative", "  "], "empty negative text"),
        (["draft", "--case", str(ROOT / "cases" / "tiny-stdlib.yaml"), "--positive", "functions", "--negative", "nope"], "no group 'nope'"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_errors_are_one_clear_line_and_exit_status_2(argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.replace("{bad}", bad_case(tmp_path)).replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert needle in err, err
    assert err.startswith("interp-tests") and "Traceback" not in err and out == ""
    assert len(err.strip().splitlines()) == 1, err


# ----------------------------------------------------------------------------- wiring, imports, wall time
@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_help_does_not_import_torch_and_the_console_script_is_declared() -> None:
    probe = (
        "import sys\n"
        "from interp_tests.explore.cli import main\n"
        "for argv in (['--help'], ['inspect', '--help'], ['feature', '--help'], ['draft', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'sae_lens', 'transformer_lens') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout[-500:]
    assert '"tokens_per_s"' in done.stdout and '"top_contexts"' in done.stdout and '"stub"' in done.stdout  # keys documented

    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"interp-tests": "interp_tests.explore.cli:main"}


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_python_m_interp_tests_inspect_end_to_end_imports_no_transformer_lens_or_saelens() -> None:
    """On the bundled pair `inspect` runs on plain torch (bundled_forward): importing TransformerLens and
    SAELens alone takes longer than its 5 s target. Its wall time is benchmarks/test_inspect.py's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "interp_tests", "inspect", "def add(a, b):\n    return a + b"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    wall = time.perf_counter() - began
    print(f"\n`python -X importtime -m interp_tests inspect` on one sentence: {wall:.2f} s wall, process start included")
    assert done.returncode == 0, done.stderr
    assert "'def'" in done.stdout and "#692" in done.stdout and "' return'" in done.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert {"torch", "tokenizers", "interp_tests.compute.bundled_forward"} <= imported
    assert not imported & {"transformer_lens", "sae_lens", "transformers", "datasets", "wandb"}
    others = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert others == []  # nothing warns
    assert wall < 60 and math.isfinite(wall)


@pytest.mark.parametrize("command", [[], ["inspect"], ["feature"], ["draft"]], ids=["top", "inspect", "feature", "draft"])
def test_help_fits_100_columns(command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "usage: interp-tests" in out
    assert [ln for ln in out.splitlines() if len(ln) > 100] == []


def test_inspect_shows_a_token_that_is_part_of_a_character_by_its_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    from interp_tests.explore.inspection import token_bytes

    text = "café ☕"  # é is two bytes, ☕ three: byte-level BPE may cut them
    code, out, err = run(capsys, "inspect", text, "-k", "1")
    assert code == 0, err
    assert "\ufffd" not in out and "b'\\xc3'" in out and "b'\\xe2'" in out, out
    code, out, err = run(capsys, "inspect", text, "--json")
    tokens = json.loads(out)["texts"][0]["tokens"]
    parts = [t for t in tokens if t["bytes"] is not None]
    assert parts and all(t["token"] == "\ufffd" for t in parts)
    assert b"".join(bytes.fromhex(t["bytes"]) if t["bytes"] else t["token"].encode() for t in tokens) == text.encode()
    assert token_bytes("def", "def") is None and token_bytes("\ufffd", "\u4e00") is None  # text, or not byte-level
    assert token_bytes("\ufffd", "Ã") == b"\xc3" and token_bytes("\ufffd", "<0xE2>") == b"\xe2"  # byte-level, SentencePiece
    assert token_bytes("\ufffd", "Ġ") is None and token_bytes("\ufffd", "<0x41>") is None  # ' ' and 'A' are text: not what the token decodes to

"""Sweeps: many candidates in one run (repeated --interp-sae, globs, labels), the leaderboard, the JSON document,
load groups under a memory budget, matching that sees both sides, and the Python API on the same code."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from . import checkpoints
from .helpers import case_file

DEF_FEATURE = 692
SWEEP = """\
texts:
  functions: ["def add(a, b):\\n    return a + b", "def parse(text):\\n    return text.split()"]
  prose: ["Return the number of items in the list.", "See the documentation for more details."]
  heldout: {corpus: {bundled: tiny-stdlib-heldout, tokens: 600, context: 64}}
features:
  def_keyword: {most_active_on: "def main():\\n    pass", token: "def"}
cases:
  - id: def-feature
    expect:
      - fires:   {feature: def_keyword, on: functions, token: "def", min: 3.0}
      - matched: {feature: 692, min_cosine: 0.7}
  - id: reconstruction
    on: heldout
    expect:
      - explained_variance: {min: 0.5}
      - l0: {max: 30}
      - ce_loss_score: {min: 0.5}
      - kl_div: {max: 5}
      - dead_fraction: {max: 1}
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/<name>/final: a copy, a permuted copy, a noisy copy and the def feature's encoder zeroed."""
    root = tmp_path_factory.mktemp("sweep") / "runs"
    for name, change in (("copy", checkpoints.identical), ("permuted", checkpoints.permuted), ("noisy", checkpoints.noisy), ("zeroed", checkpoints.zeroed(DEF_FEATURE))):
        checkpoints.save_variant(root / name / "final", change)
    return root


RECORDED: dict[str, bytes] = {}  # the reference's baseline, recorded once per module


def sweep_repo(pytester: pytest.Pytester, runs: Path) -> Path:
    """The sweep's checkpoints under runs/ and the case file with its reference baseline (recorded by the
    first test that asks, copied by the others)."""
    shutil.copytree(runs, pytester.path / "runs")
    path = case_file(pytester, "claims", SWEEP)
    baseline = Path(str(path) + ".baseline.json")
    if "claims" in RECORDED:
        baseline.write_bytes(RECORDED["claims"])
        return path
    pytester.runpytest("cases/", "--interp-update", "-p", "no:cacheprovider").assert_outcomes(passed=2)
    RECORDED["claims"] = baseline.read_bytes()
    return path


def test_every_case_runs_on_every_candidate_of_a_glob_in_one_run(pytester: pytest.Pytester, runs: Path) -> None:
    sweep_repo(pytester, runs)
    out_json = pytester.path / "run.json"
    result = pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "--interp-compare", f"--interp-json={out_json}", "-p", "no:cacheprovider", "-v", "-rA")
    out = result.stdout.str()
    for label in ("copy/final", "noisy/final", "permuted/final", "zeroed/final"):  # sorted, labelled by directory (made unique)
        assert f"cases/claims.yaml::def-feature[{label}]" in out and f"cases/claims.yaml::reconstruction[{label}]" in out, out
    assert out.count("corpus pass on") == 1 and "for 4 SAEs" in out  # one pass served the four
    doc = json.loads(out_json.read_text())
    assert doc["schema_version"] == 1 and doc["run"]["cases"] == 8 and doc["run"]["complete"] is True
    assert sorted(c["label"] for c in doc["checkpoints"]) == ["copy/final", "noisy/final", "permuted/final", "zeroed/final"]
    outcome = {(c["case_id"], c["checkpoint"]): c["ok"] for c in doc["cases"]}
    assert outcome[("def-feature", "copy/final")] and outcome[("def-feature", "permuted/final")]
    assert not outcome[("def-feature", "zeroed/final")]  # its encoder is gone: matched no longer passes on the decoder alone
    zeroed = next(c for c in doc["cases"] if c["case_id"] == "def-feature" and c["checkpoint"] == "zeroed/final")
    matched = next(v for v in zeroed["verdicts"] if v["check"] == "matched")
    assert not matched["ok"] and matched["observed"] == pytest.approx(1.0) and "encoder cos 0.0000" in " ".join(matched["notes"])
    board = doc["leaderboard"][0]
    rows = {r["checkpoint"]: r for r in board["rows"]}
    assert rows["tiny-stdlib-res/blocks.1.hook_resid_pre"]["recorded"] is True and board["rows"][0]["role"] == "reference"
    assert rows["noisy/final"]["explained_variance"] < rows["copy/final"]["explained_variance"]
    assert rows["zeroed/final"]["lowest_encoder_cos"] == pytest.approx(0.0) and rows["copy/final"]["lowest_encoder_cos"] == pytest.approx(1.0)
    assert "ev" in rows["copy/final"]["frontier"] and "ev" not in rows["noisy/final"]["frontier"]
    assert "interp-tests: leaderboard tiny-stdlib @ blocks.1.hook_resid_pre: 5 checkpoints" in out
    selected = pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "-k", "permuted", "-p", "no:cacheprovider")
    selected.assert_outcomes(passed=2)  # -k selects a checkpoint


def test_junit_names_the_checkpoint_of_every_test_case(pytester: pytest.Pytester, runs: Path) -> None:
    import xml.etree.ElementTree as ET

    sweep_repo(pytester, runs)
    xml = pytester.path / "j.xml"
    pytester.runpytest("cases/", "--interp-sae", "runs/copy/final", "--interp-sae", "runs/noisy/final", f"--junitxml={xml}", "-p", "no:cacheprovider")
    found = {}
    for tc in ET.parse(xml).getroot().iter("testcase"):
        props = {p.get("name"): p.get("value") for p in tc.iter("property")}
        found[tc.get("name")] = (props["interp.checkpoint"], props["interp.checkpoint_path"])
    assert found["def-feature[noisy/final]"] == ("noisy/final", str(pytester.path / "runs" / "noisy" / "final"))
    assert len(found) == 4


def test_labels_globs_and_bad_candidates(pytester: pytest.Pytester, runs: Path) -> None:
    sweep_repo(pytester, runs)
    shutil.copytree(runs / "copy" / "final", pytester.path / "lr=3e-4")  # a directory wins over the HOOK= reading
    ok = pytester.runpytest("cases/", "--interp-sae", "lr=3e-4", "-k", "def-feature", "-p", "no:cacheprovider", "-v")
    ok.assert_outcomes(passed=1)
    assert "def-feature[lr=3e-4]" in ok.stdout.str()
    nothing = pytester.runpytest("cases/", "--interp-sae", "runs/*/nope", "-p", "no:cacheprovider")
    assert nothing.ret == pytest.ExitCode.USAGE_ERROR and "the glob 'runs/*/nope' matches no directory" in nothing.stderr.str()
    twice = pytester.runpytest("cases/", "--interp-sae", "runs/copy/final", "--interp-sae", "runs/*/final", "-p", "no:cacheprovider")
    assert twice.ret == pytest.ExitCode.USAGE_ERROR and "is given twice" in twice.stderr.str()
    promote = pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "--interp-update", "--interp-promote", "-p", "no:cacheprovider")
    assert promote.ret == pytest.ExitCode.USAGE_ERROR and "give exactly one --interp-sae" in promote.stderr.str()


def test_a_broken_checkpoint_fails_its_own_items_and_the_sweep_goes_on(pytester: pytest.Pytester, runs: Path) -> None:
    path = sweep_repo(pytester, runs)
    broken = pytester.path / "runs" / "broken" / "final"
    broken.mkdir(parents=True)
    (broken / "cfg.json").write_text("{not json")
    (broken / "sae_weights.safetensors").write_bytes(b"junk")
    baseline = Path(str(path) + ".baseline.json")
    before = baseline.read_bytes()
    result = pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, failed=3)  # the broken one's 2 cases, and the zeroed one's matched claim
    assert "cannot load SAE: " in result.stdout.str() and "cfg.json is not a JSON object" in result.stdout.str() and "Traceback" not in result.stdout.str()
    stopped = pytester.runpytest("cases/", "--interp-sae", "runs/copy/final", "--interp-update", "--interp-promote", "-x", "-k", "nothing-matches")
    assert baseline.read_bytes() == before and stopped.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_checkpoint_whose_output_is_nan_fails_only_its_own_corpus_checks(pytester: pytest.Pytester, runs: Path) -> None:
    """A checkpoint that loads but reconstructs NaN (a zeroed decoder row under rescale_acts_by_decoder_norm,
    here a NaN weight) shares the corpus pass with the others: its own corpus case fails with the reason,
    every other checkpoint's values are the ones it gets without it, paired comparisons included."""
    path = sweep_repo(pytester, runs)

    def nan_decoder(sae: Any) -> None:
        sae.W_dec[5, 0] = float("nan")

    checkpoints.save_variant(pytester.path / "runs" / "nan" / "final", nan_decoder)
    with_nan = pytester.path / "with-nan.json"
    result = pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "--interp-compare", "--interp-tolerance", "auto",
                                f"--interp-json={with_nan}", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "Traceback" not in out and "non-finite values (NaN or inf) in the SAE " in out and "nan/final's output" in out, out[-3000:]
    passes = [line for line in out.splitlines() if "corpus pass on" in line]
    assert len(passes) == 1 and "non-finite output, left the pass: nan/final" in passes[0], passes  # not one more pass per loss check
    doc = json.loads(with_nan.read_text())
    ok = {(c["case_id"], c["checkpoint"]): c["ok"] for c in doc["cases"]}
    assert not ok[("reconstruction", "nan/final")]
    assert ok[("reconstruction", "copy/final")] and ok[("reconstruction", "permuted/final")], ok
    shutil.rmtree(pytester.path / "runs" / "nan")
    without = pytester.path / "without.json"
    pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "--interp-compare", "--interp-tolerance", "auto", f"--interp-json={without}", "-p", "no:cacheprovider")

    def observed(document: Any) -> dict[Any, Any]:
        return {(c["case_id"], c["checkpoint"], v["check"]): (v["observed"], v.get("interval"), v.get("paired"))
                for c in document["cases"] if c["checkpoint"] != "nan/final" for v in c["verdicts"]}

    assert observed(doc) == observed(json.loads(without.read_text()))
    assert Path(str(path) + ".baseline.json").exists()


def test_an_unquoted_glob_expanded_by_the_shell_is_one_usage_line(pytester: pytest.Pytester, runs: Path) -> None:
    """`--interp-sae runs/*/final` unquoted: the shell gives the option its first match and pytest the others as
    test paths, which collect nothing: a run that would pass having tested one checkpoint is refused."""
    sweep_repo(pytester, runs)
    expanded = sorted(str(p.relative_to(pytester.path)) for p in (pytester.path / "runs").glob("*/final"))
    result = pytester.runpytest("cases/", "--interp-sae", *expanded, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"{expanded[1]}, {expanded[2]}, {expanded[3]} are checkpoint directories, not test paths" in err and "quote the glob" in err, err
    alone = pytester.runpytest(expanded[0], "-p", "no:cacheprovider")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR and f"run case files on it with --interp-sae {expanded[0]}" in alone.stderr.str()
    quoted = pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "-p", "no:cacheprovider", "--collect-only", "-q")
    assert quoted.ret == pytest.ExitCode.OK


def test_load_groups_fit_the_budget_and_change_no_value(pytester: pytest.Pytester, runs: Path) -> None:
    sweep_repo(pytester, runs)
    whole, grouped = pytester.path / "whole.json", pytester.path / "grouped.json"
    pytester.runpytest("cases/", "--interp-sae", "runs/*/final", f"--interp-json={whole}", "-p", "no:cacheprovider")
    result = pytester.runpytest("cases/", "--interp-sae", "runs/*/final", f"--interp-json={grouped}", "--interp-memory", "0.0022", "-p", "no:cacheprovider")
    out = result.stdout.str()
    groups = [line for line in out.splitlines() if "load group" in line]
    assert len(groups) == 4 and all("budget 2.2 MB" in g for g in groups), groups  # a 1.06 MB reference + one 1.06 MB candidate per group
    assert out.count("corpus pass on") == 4
    from interp_tests.report.document import without_timings

    def values(path: Path) -> Any:
        doc = without_timings(json.loads(path.read_text()))
        doc["run"].pop("options")
        return doc

    assert values(whole) == values(grouped)


def test_the_python_api_gives_the_plugins_document(pytester: pytest.Pytester, runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import interp_tests
    from interp_tests.report.document import without_timings

    sweep_repo(pytester, runs)
    plugin_json = pytester.path / "plugin.json"
    pytester.runpytest("cases/claims.yaml", "--interp-sae", "runs/*/final", "--interp-compare", f"--interp-json={plugin_json}", "-p", "no:cacheprovider")
    monkeypatch.chdir(pytester.path)
    results = interp_tests.evaluate("cases/claims.yaml", saes="runs/*/final", compare=True)
    assert without_timings(results.document) == without_timings(json.loads(plugin_json.read_text()))
    assert not results.ok
    failures = results.failures()
    assert {f.checkpoint for f in failures} == {"noisy/final", "zeroed/final"}
    assert any(f.case_id == "def-feature" and f.check == "matched" and f.checkpoint == "zeroed/final" for f in failures)
    board = results.leaderboard()
    assert [r["checkpoint"] for r in board][0] == "tiny-stdlib-res/blocks.1.hook_resid_pre" and len(board) == 5
    frame = results.to_pandas()
    assert list(frame["checkpoint"])[1:] == [r["checkpoint"] for r in board][1:] and "explained_variance" in frame.columns
    assert "<table>" in results._repr_html_() and "zeroed/final" in results._repr_html_()
    assert json.loads(results.to_json()) == results.document


def test_the_python_api_takes_an_sae_and_a_model_in_memory(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A training loop's use: the SAE being trained and the model in memory, checked every N steps."""
    import copy

    import torch

    import interp_tests
    from interp_tests.cases.schema import SaeRef
    from interp_tests.compute.registry import Registry

    path = case_file(pytester, "claims", SWEEP)
    reg = Registry()
    model = reg.model("tiny-stdlib")
    sae = copy.deepcopy(reg.sae(SaeRef(release="tiny-stdlib-res", id="blocks.1.hook_resid_pre")))
    for p in sae.parameters():
        p.requires_grad_(True)  # as in training
    rows = []
    for step in range(2):
        results = interp_tests.evaluate(path, saes={f"step-{step}": sae}, model=model)
        rows.append(results.leaderboard()[-1])
        with torch.no_grad():  # "training": the next check sees the SAE as it is then
            sae.W_dec.add_(torch.randn(sae.W_dec.shape, generator=torch.Generator().manual_seed(step)) * 0.2)
    assert [r["checkpoint"] for r in rows] == ["step-0", "step-1"]
    assert rows[0]["explained_variance"] > rows[1]["explained_variance"]
    assert all(p.requires_grad for p in sae.parameters())  # the run read it and changed nothing
    with pytest.raises(Exception, match="unknown option 'comparee'"):
        interp_tests.evaluate(path, comparee=True)


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_importing_the_api_imports_no_pytest_and_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, interp_tests; from interp_tests.api import evaluate; print(sorted(m for m in ('pytest', 'torch', '_pytest') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**os.environ})
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_separated_absolute_candidate_path_that_moves_the_rootdir_is_named(pytester: pytest.Pytester, runs: Path) -> None:
    sweep_repo(pytester, runs)
    outside = str(runs / "copy" / "final")  # another temporary directory: outside the repository
    moved = pytester.runpytest("cases/", "--collect-only", "-q", "--interp-sae", outside, "-p", "no:cacheprovider")
    assert "pytest issue #8846" in moved.stdout.str() and f"--interp-sae={outside}" in moved.stdout.str()
    kept = pytester.runpytest("cases/", "--collect-only", "-q", f"--interp-sae={outside}", "-p", "no:cacheprovider")
    assert "8846" not in kept.stdout.str()
    kept.stdout.fnmatch_lines(["cases/claims.yaml::def-feature[final]"])  # node ids from the repository's root


@pytest.mark.slow  # starts a browser
def test_the_sweeps_html_report_in_a_browser(pytester: pytest.Pytester, runs: Path, tmp_path: Path) -> None:
    from .test_html_report import browser, chromium

    exe = chromium()
    sweep_repo(pytester, runs)
    report = pytester.path / "sweep.html"
    pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "--interp-compare", f"--interp-html={report}", "-p", "no:cacheprovider")
    dom = browser(exe, tmp_path / "profile", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert '<figure class="plot" id="sparsity-plot"><svg' in page and '<figure class="plot" id="ce-plot"><svg' in page
    legend = page[page.index('id="sparsity-plot"'):]
    for n, label in enumerate(["tiny-stdlib-res/blocks.1.hook_resid_pre"], start=1):
        assert f'<li value="{n}">{label}: L0 ' in legend
    assert legend.count("<li value=") >= 5  # the reference and the four checkpoints
    assert 'class="side-by-side"' in page and "<h4>reference</h4>" in page and "<h4>candidate</h4>" in page
    assert 'id="leaderboard-0"' in page and "zeroed/final" in page


@pytest.mark.slow  # writes and sweeps 50 checkpoints
def test_fifty_checkpoints_stay_within_the_memory_budget(pytester: pytest.Pytester) -> None:
    """50 checkpoints of 8 MB each (400 MB in all) under a 40 MB budget: groups of four, each released before the
    next loads; the resident memory grows by far less than the sweep's weights."""
    from interp_tests.compute.memory import reset_peak

    from .helpers import save_random_sae

    for i in range(50):
        save_random_sae(pytester.path / "runs" / f"ckpt-{i:02d}", d_in=128, d_sae=8192, seed=i)
    case_file(pytester, "claims", 'texts:\n  code: ["def add(a, b):\\n    return a + b"]\ncases:\n  - id: sparse\n    on: code\n    expect:\n      - l0: {max: 10000}\n')
    from interp_tests.compute.memory import peak_rss, rss

    reset_peak()
    before = rss()
    result = pytester.runpytest("cases/", "--interp-sae", "runs/ckpt-*", "--interp-memory", "0.04", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=50)
    groups = [line for line in result.stdout.str().splitlines() if "load group" in line]
    assert len(groups) >= 12, groups  # at most 4 of 8.4 MB (with a 1 MB reference) under 40 MB
    grew = (peak_rss() or 0) - (before or 0)
    assert grew < 200e6, f"peak resident memory grew by {grew / 1e6:.0f} MB for 420 MB of checkpoints"


def test_readmes_recipe_for_a_noisy_copy_of_the_bundled_sae_makes_a_candidate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """README's "Making checkpoints" snippet, run as written, writes a checkpoint a sweep reads."""
    import re
    import textwrap

    from .helpers import ROOT

    readme = (ROOT / "README.md").read_text()
    found = re.search(r"To try a sweep on the bundled SAE.*?```python\n(.*?)```", readme, re.S)
    assert found, "README no longer shows how to make a candidate from the bundled SAE"
    monkeypatch.chdir(pytester.path)
    exec(compile(textwrap.dedent(found.group(1)), "README.md", "exec"), {})
    case_file(pytester, "claims", "texts:\n  code: [\"def f(x):\\n    return x\"]\ncases:\n  - id: sparse\n    on: code\n    expect:\n      - l0: {max: 1000}\n")
    pytester.runpytest("cases/", "--interp-sae", "runs/*/final", "-p", "no:cacheprovider").assert_outcomes(passed=1)

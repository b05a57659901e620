"""README's "Gating CI on an SAE" recipe, literally, on the bundled pair: record on the reference, then compare
candidates: an identical copy, a noisy copy, a permuted copy and a copy with the def feature zeroed."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from . import checkpoints
from .helpers import ROOT, line_of

DEF_FEATURE = 692  # def_keyword on the bundled SAE (asserted below from the recorded baseline)

# A plain index (bound to the reference) beside the project's selector-named claims.
INDEX_BOUND = """\
target:
  model: tiny-stdlib
  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}
texts:
  functions: ["def add(a, b):\\n    return a + b", "def parse(text):\\n    return text.split()"]
  prose: ["Return the number of items in the list."]
cases:
  - id: def-by-index
    expect:
      - fires:   {feature: 692, on: functions, token: "def", min: 3.0}
      - silent:  {feature: 692, on: prose, max: 3.5}
      - matched: {feature: 692, min_cosine: 0.9}
"""


@pytest.fixture(scope="module")
def candidates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    return {
        "identical": checkpoints.save_variant(root / "identical", checkpoints.identical),
        "noisy": checkpoints.save_variant(root / "noisy", checkpoints.noisy),
        "permuted": checkpoints.save_variant(root / "permuted", checkpoints.permuted),
        "def-zeroed": checkpoints.save_variant(root / "def-zeroed", checkpoints.zeroed(DEF_FEATURE)),
    }


RECORDED: dict[str, bytes] = {}  # baseline file name -> bytes: the reference is recorded once per module


def recorded_repo(pytester: pytest.Pytester) -> Path:
    """A repository of case files with their reference baselines, recorded by README's first step (the run
    itself happens once per module; later tests get a copy of its files)."""
    cases = pytester.path / "cases"
    cases.mkdir()
    shutil.copy(ROOT / "cases" / "tiny-stdlib.yaml", cases / "tiny-stdlib.yaml")
    (cases / "index.yaml").write_text(INDEX_BOUND)
    if RECORDED:
        for name, data in RECORDED.items():
            (cases / name).write_bytes(data)
        return cases
    result = pytester.runpytest("cases/", "--interp-update", "-p", "no:cacheprovider")  # README: record on the reference
    result.assert_outcomes(passed=8)
    RECORDED.update({p.name: p.read_bytes() for p in cases.glob("*.baseline.json")})
    assert set(RECORDED) == {"tiny-stdlib.yaml.baseline.json", "index.yaml.baseline.json"}
    return cases


def compare(pytester: pytest.Pytester, candidate: Path) -> pytest.RunResult:
    return pytester.runpytest("cases/", "--interp-sae", str(candidate), "--interp-compare", "-p", "no:cacheprovider")  # README: gate


def test_readme_recipe_on_identical_noisy_permuted_and_zeroed_candidates(pytester: pytest.Pytester, candidates: dict[str, Path]) -> None:
    """Record on the reference, then gate the four candidates in one sweep run (README's sweep form): each
    (case, candidate) is its own item, the drift rows name their checkpoint."""
    cases = recorded_repo(pytester)
    data = json.loads((cases / "tiny-stdlib.yaml.baseline.json").read_text())
    entry = data["cases"]["def-keyword-feature"]["tiny-stdlib-res/blocks.1.hook_resid_pre"]
    assert entry["features"] == {"def_keyword": DEF_FEATURE}  # baselines record the index each name resolved to
    sweep = pytester.runpytest("cases/", *(f"--interp-sae={candidates[name]}" for name in ("identical", "noisy", "permuted", "def-zeroed")), "--interp-compare", "-p", "no:cacheprovider", "-rA")
    out = sweep.stdout.str()
    outcome = {(m.group(2), m.group(1)): m.group(0).split()[0] for m in re.finditer(r"^(?:PASSED|FAILED) cases/\S+::([^\[\s]+)(?:\[[^\]]*\])?\[([\w-]+)\]", out, re.M)}
    cases_per_candidate = 8

    # (a) an identical copy: every claim and every value holds, nothing lacks a baseline
    assert [outcome[("identical", c)] for (n, c) in outcome if n == "identical"] == ["PASSED"] * cases_per_candidate, outcome
    assert "no baseline" not in out
    assert "-> identical: MMCS 1.0000, 100.0% of 1024 reference features matched" in out, out

    # (b) a noisy copy: fails, with drift rows for explained variance, kl_div and a fires value
    assert "FAILED" in {outcome[k] for k in outcome if k[0] == "noisy"}
    drift = out[out.index("drift from the reference baselines"):]
    suite = ROOT / "cases" / "tiny-stdlib.yaml"
    for needle, check in (("- explained_variance:", "explained_variance"), ("- kl_div:", "kl_div")):
        where = f"cases/tiny-stdlib.yaml:{line_of(suite, needle)}"
        row = next(line for line in drift.splitlines() if f"{where} " in line and f" {check} " in line and line.rstrip().endswith("noisy"))
        assert row.lstrip().startswith("FAIL"), row
    assert any(line.lstrip().startswith("FAIL") and " fires " in line and line.rstrip().endswith("noisy") for line in drift.splitlines()), drift

    # (c) features shuffled: selectors and plain indices follow the matching, everything passes, the mapping is shown
    perm = checkpoints.permutation(1024)
    moved_to = int((perm == DEF_FEATURE).nonzero()[0, 0])  # the copy's index of feature 692
    assert [outcome[k] for k in outcome if k[0] == "permuted"] == ["PASSED"] * cases_per_candidate, outcome
    assert f"[permuted] def_keyword: reference #{DEF_FEATURE} -> candidate #{moved_to}" in out, out
    assert f"reference #{DEF_FEATURE} runs as candidate #{moved_to} (decoder cos 1.000)" in out, out

    # (d) the def feature zeroed: def_keyword rebinds to another feature; reported, and it fails under --interp-compare
    assert outcome[("def-zeroed", "def-keyword-feature")] == "FAILED"
    assert f"def_keyword: #{DEF_FEATURE} on the reference, #" in out and f"best match of #{DEF_FEATURE} is #{DEF_FEATURE} at cos 1.00" in out, out
    assert f"FAIL cases/tiny-stdlib.yaml:{line_of(ROOT / 'cases' / 'tiny-stdlib.yaml', '  def_keyword:')}  feature_identity [def_keyword = #" in out, out
    assert out.count("corpus pass on") == 1  # one pass for the four candidates


def test_recording_never_lands_on_a_candidate_and_promotion_is_explicit(pytester: pytest.Pytester, candidates: dict[str, Path]) -> None:
    cases = recorded_repo(pytester)
    saved = cases / "index.yaml.baseline.json"
    before = saved.read_bytes()
    refused = pytester.runpytest("cases/index.yaml", "--interp-sae", str(candidates["noisy"]), "--interp-update")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    assert "add --interp-promote to make the candidate the new reference" in refused.stderr.str()
    assert saved.read_bytes() == before
    promoted = pytester.runpytest("cases/index.yaml", "--interp-sae", str(candidates["noisy"]), "--interp-update", "--interp-promote", "-p", "no:cacheprovider")
    assert "promoted the candidate's values in" in promoted.stdout.str()
    entry = json.loads(saved.read_text())["cases"]["def-by-index"]["tiny-stdlib-res/blocks.1.hook_resid_pre"]
    assert entry["sae"] == os.path.relpath(candidates["noisy"], cases)  # a local SAE: relative to the case file
    assert entry["checks"]["expect[2].matched"] == 1.0  # as the reference, it matches itself
    after = pytester.runpytest("cases/index.yaml", "--interp-sae", str(candidates["noisy"]), "--interp-compare", "-p", "no:cacheprovider")
    after.stdout.fnmatch_lines(["*drift from the reference baselines: 1 of 3 compared values out of tolerance*", "*FAIL*matched*1.0000*0.89*"])
    # the documented last step: point the case file's sae: at the promoted SAE (here by a relative path)
    case = cases / "index.yaml"
    relative = os.path.relpath(candidates["noisy"], cases)
    case.write_text(case.read_text().replace("sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}", f"sae: {{path: {relative}}}"))
    assert relative in case.read_text()
    pointed = pytester.runpytest("cases/index.yaml", "--interp-compare", "-p", "no:cacheprovider")
    pointed.stdout.fnmatch_lines(["*drift from the reference baselines: 0 of 3 compared values out of tolerance*"])
    assert pointed.ret == 0


def test_a_promoted_local_sae_is_found_after_the_repository_moves(pytester: pytest.Pytester, candidates: dict[str, Path]) -> None:
    cases = recorded_repo(pytester)
    shutil.copytree(candidates["identical"], pytester.path / "new-sae")
    promoted = pytester.runpytest("cases/index.yaml", "--interp-sae", "new-sae", "--interp-update", "--interp-promote", "-p", "no:cacheprovider")
    assert promoted.ret == 0, promoted.stdout.str()
    entry = json.loads((cases / "index.yaml.baseline.json").read_text())["cases"]["def-by-index"]["tiny-stdlib-res/blocks.1.hook_resid_pre"]
    assert entry["sae"] == "../new-sae"  # relative to the case file: true in any checkout
    case = cases / "index.yaml"
    case.write_text(case.read_text().replace("sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}", "sae: {path: ../new-sae}"))
    moved = pytester.path / "elsewhere"
    for part in ("cases", "new-sae"):
        shutil.copytree(pytester.path / part, moved / part)
    shutil.rmtree(pytester.path / "new-sae")
    ran = pytester.runpytest(str(moved / "cases" / "index.yaml"), "--interp-compare", "-p", "no:cacheprovider")
    ran.stdout.fnmatch_lines(["*drift from the reference baselines: 0 of 3 compared values out of tolerance*"])
    assert ran.ret == 0


def test_compare_fails_on_a_missing_or_unreadable_baseline_and_names_the_command(pytester: pytest.Pytester) -> None:
    cases = pytester.path / "cases"
    cases.mkdir()
    (cases / "index.yaml").write_text(INDEX_BOUND)
    missing = pytester.runpytest("cases/", "--interp-compare", "-p", "no:cacheprovider")
    missing.assert_outcomes(failed=1)
    assert "no baseline for expect[0].fires of case 'def-by-index'" in missing.stdout.str()
    assert "record it on the reference with `pytest cases/index.yaml --interp-update`" in missing.stdout.str()
    (cases / "index.yaml.baseline.json").write_text("oops")
    broken = pytester.runpytest("cases/", "--interp-compare", "-p", "no:cacheprovider")
    broken.assert_outcomes(failed=1)
    assert "unreadable baseline" in broken.stdout.str() and "Traceback" not in broken.stdout.str()


def test_markdown_summary_holds_the_drift_table(pytester: pytest.Pytester, candidates: dict[str, Path]) -> None:
    recorded_repo(pytester)
    md = pytester.path / "drift.md"
    pytester.runpytest("cases/index.yaml", "--interp-sae", str(candidates["noisy"]), "--interp-compare", "--interp-md", str(md), "-p", "no:cacheprovider")
    text = md.read_text()
    assert text.startswith("## interp-tests") and "### Drift from the reference baselines" in text
    assert "| ❌ | `cases/index.yaml:" in text and "| fires |" in text, text


def test_prefetch_loads_every_target_and_runs_no_case(pytester: pytest.Pytester, candidates: dict[str, Path]) -> None:
    cases = pytester.path / "cases"
    cases.mkdir()
    (cases / "index.yaml").write_text(INDEX_BOUND)
    result = pytester.runpytest("cases/", "--interp-prefetch", "--interp-sae", str(candidates["identical"]), "-p", "no:cacheprovider")
    assert result.ret == 0
    out = result.stdout.str()
    assert f"prefetched tiny-stdlib + {candidates['identical']} at blocks.1.hook_resid_pre (reference tiny-stdlib-res/blocks.1.hook_resid_pre too)" in out
    assert "1 deselected" in out
    (cases / "index.yaml").write_text(INDEX_BOUND.replace("release: tiny-stdlib-res", "release: no-such-release"))
    failed = pytester.runpytest("cases/", "--interp-prefetch", "-p", "no:cacheprovider")
    assert failed.ret == 1 and "unknown SAE release 'no-such-release'" in failed.stdout.str() + failed.stderr.str()


def test_markdown_cells_keep_a_pipe_inside_their_column() -> None:
    """A case id, a location, a value or a tolerance with `|` must not split a table row into more columns."""
    from interp_tests.baselines.protocol import DriftRow
    from interp_tests.report.markdown import render_markdown

    verdict = {"ok": False, "check": "l0", "where": "a|b.yaml:3", "observed": "x|y", "expected": "<= 1 | or so", "error": None}
    drift = [DriftRow("a|b.yaml:3", "id|1", "l0", 1.0, 2.0, 1.0, "abs 0.1 | rel 0", False)]
    text = render_markdown([{"case_id": "id|1", "sae": "s|ae", "verdicts": [verdict]}], drift, [])

    def columns(line: str) -> int:
        return len(re.split(r"(?<!\\)\|", line)) - 2  # cells between the outer pipes; `\|` stays in its cell

    failed = [line for line in text.splitlines() if line.startswith("| `id\\|1`")]
    drifted = [line for line in text.splitlines() if line.startswith("| ❌ | `a\\|b.yaml:3`")]
    assert len(failed) == 1 and columns(failed[0]) == 6, text
    assert len(drifted) == 1 and columns(drifted[0]) == 7 and "abs 0.1 \\| rel 0" in drifted[0], text


def test_a_hook_override_that_replaces_no_sae_fails_the_run(pytester: pytest.Pytester, candidates: dict[str, Path]) -> None:
    """`--interp-sae HOOK=SPEC` with a hook no case reads would run only the references: a gate must not go
    green on that."""
    cases = recorded_repo(pytester)
    typo = pytester.runpytest("cases/index.yaml", "--interp-sae", f"blocks.0.hook_resid_pre={candidates['identical']}", "--interp-compare", "-p", "no:cacheprovider")
    assert typo.ret == pytest.ExitCode.TESTS_FAILED
    typo.stdout.fnmatch_lines([f"*--interp-sae blocks.0.hook_resid_pre={candidates['identical']} replaced no SAE: no selected case that ran reads hook 'blocks.0.hook_resid_pre'*"])
    saved = cases / "index.yaml.baseline.json"
    before = saved.read_bytes()
    promoted = pytester.runpytest("cases/index.yaml", "--interp-sae", f"blocks.0.hook_resid_pre={candidates['noisy']}", "--interp-update", "--interp-promote", "-p", "no:cacheprovider")
    assert promoted.ret == pytest.ExitCode.TESTS_FAILED and "replaced no SAE" in promoted.stdout.str()
    assert "NOT updated" in promoted.stdout.str() and saved.read_bytes() == before  # no promotion of the references
    right = pytester.runpytest("cases/index.yaml", "--interp-sae", f"blocks.1.hook_resid_pre={candidates['identical']}", "--interp-compare", "-p", "no:cacheprovider")
    assert right.ret == pytest.ExitCode.OK and "replaced no SAE" not in right.stdout.str()
    assert cases.is_dir()


def test_junit_writes_a_matched_candidate_index_as_a_whole_number(pytester: pytest.Pytester, candidates: dict[str, Path]) -> None:
    import xml.etree.ElementTree as ET

    recorded_repo(pytester)
    xml = pytester.path / "j.xml"
    pytester.runpytest("cases/index.yaml", "--interp-sae", str(candidates["permuted"]), f"--junitxml={xml}", "-p", "no:cacheprovider")
    props = {p.get("name"): p.get("value") for p in ET.parse(xml).iter("property")}
    assert props["matched.candidate_index"].isdigit(), props  # `692`, not `692.0`
    assert float(props["matched.encoder_cos"]) > 0.5

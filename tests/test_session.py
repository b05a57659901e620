"""Session behaviour: load once, JUnit properties, SAE override, baselines, xdist."""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .helpers import BUNDLED_TARGET, case_file, save_random_sae

MANY = """\
texts:
  code: ["def add(a, b):\\n    return a + b", "for i in range(3):\\n    print(i)"]
  prose: ["Return the number of items in the list.", "This module provides functions for parsing dates."]
features:
  first: {most_active_on: "def main():\\n    pass"}
  plain: 7
cases:
""" + "".join(
    f"""  - id: case-{i}
    on: [code, prose]
    expect:
      - l0: {{min: 0}}
      - explained_variance: {{min: -100}}
      - fires: {{feature: first, on: code, min: -1}}
      - silent: {{feature: plain, on: prose, max: 1000}}
"""
    for i in range(6)
)


def _props(xml: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for tc in ET.parse(xml).getroot().iter("testcase"):
        out[tc.get("name", "")] = {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
    return out


def test_model_and_sae_load_once_and_texts_are_batched(pytester: pytest.Pytester) -> None:
    case_file(pytester, "a", MANY)
    case_file(pytester, "b", MANY)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["interp-tests: loaded model:tiny-stdlib x1, sae:tiny-stdlib-res/blocks.1.hook_resid_pre x1 on cpu/float32; 5 texts in 1 batched forward passes"])


def test_every_observed_value_is_a_junit_property(pytester: pytest.Pytester) -> None:
    case_file(pytester, "a", MANY)
    xml = pytester.path / "j.xml"
    pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={xml}")
    props = _props(xml)["case-0"]
    assert sorted(props) == [  # nothing internal; the dataset-level values' 95% intervals over the texts beside them
        "explained_variance.ci_high", "explained_variance.ci_low", "explained_variance.observed", "fires.observed", "interp.checkpoint",
        "interp.checkpoint_path", "l0.ci_high", "l0.ci_low", "l0.observed", "silent.observed",
    ]
    for name in ("explained_variance", "l0"):
        assert float(props[f"{name}.ci_low"]) <= float(props[f"{name}.observed"]) <= float(props[f"{name}.ci_high"])
    assert props["interp.checkpoint"] == props["interp.checkpoint_path"] == "tiny-stdlib-res/blocks.1.hook_resid_pre"  # which checkpoint ran
    # each value is the one an independent computation gives (tests/test_metrics.py checks every check kind so)
    import torch

    from interp_tests.cases.schema import SaeRef
    from interp_tests.compute.registry import Registry

    reg = Registry()
    model, sae = reg.model("tiny-stdlib"), reg.sae(SaeRef(release="tiny-stdlib-res", id="blocks.1.hook_resid_pre"))
    texts = ["def add(a, b):\n    return a + b", "for i in range(3):\n    print(i)", "Return the number of items in the list.", "This module provides functions for parsing dates."]
    with torch.inference_mode():
        feats = [sae.encode(model.run_with_cache(t, names_filter="blocks.1.hook_resid_pre")[1]["blocks.1.hook_resid_pre"][0, 1:]) for t in texts]
    l0 = float(torch.cat([(f > 0).sum(-1).double() for f in feats]).mean())
    assert float(props["l0.observed"]) == pytest.approx(l0, abs=1e-6)
    assert float(props["silent.observed"]) == pytest.approx(max(float(f[:, 7].max()) for f in feats[2:]), abs=1e-5)


def test_interp_sae_override_runs_the_same_cases_on_another_checkpoint(pytester: pytest.Pytester) -> None:
    save_random_sae(pytester.path / "new-ckpt")
    case_file(pytester, "a", MANY)
    result = pytester.runpytest("-p", "no:cacheprovider", "--interp-sae", "new-ckpt", "-k", "case-0")
    out = result.stdout.str()
    result.assert_outcomes(passed=1)
    loaded = out.split("interp-tests: loaded")[1].splitlines()[0]
    assert "sae:" + str((pytester.path / "new-ckpt").resolve()) + " x1" in loaded and "sae:tiny-stdlib-res/blocks.1.hook_resid_pre x1" in loaded  # the reference too: for the matching
    # the plain index 7 names a reference feature: the case runs on its best match in the candidate, and says so
    assert "notes on candidate SAEs" in out and "reference #7 runs as candidate #" in out, out
    assert "first: #" in out and "on the reference" in out, out  # the named feature is checked against the matching


def test_interp_sae_with_a_hook_replaces_only_targets_at_that_hook(pytester: pytest.Pytester) -> None:
    save_random_sae(pytester.path / "other-hook", hook="blocks.0.hook_resid_pre")
    case_file(pytester, "a", MANY)
    result = pytester.runpytest("-p", "no:cacheprovider", "--interp-sae", "blocks.0.hook_resid_pre=other-hook", "-k", "case-0")
    result.assert_outcomes(passed=1)
    assert "index-bound" not in result.stdout.str()  # blocks.1 target untouched


def test_interp_sae_bad_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--interp-sae", "not-a-dir-or-release")
    assert "--interp-sae: Could not parse value: 'not-a-dir-or-release'" in result.stderr.str()


REFERENCE = "tiny-stdlib-res/blocks.1.hook_resid_pre"


def test_baseline_update_then_compare_detects_drift(pytester: pytest.Pytester) -> None:
    path = case_file(pytester, "a", MANY)
    pytester.runpytest("-p", "no:cacheprovider", "--interp-update").assert_outcomes(passed=6)
    saved = pytester.path / "cases" / "a.yaml.baseline.json"
    data = json.loads(saved.read_text())
    entry = data["cases"]["case-0"][REFERENCE]
    assert set(entry["checks"]) == {"expect[0].l0", "expect[1].explained_variance", "expect[2].fires", "expect[3].silent"}
    assert entry["features"]["plain"] == 7 and set(entry["features"]) == {"first", "plain"}  # the index each name resolved to
    assert path.read_text() == case_file(pytester, "a", MANY).read_text()  # the YAML is untouched
    pytester.runpytest("-p", "no:cacheprovider", "--interp-compare").assert_outcomes(passed=6)
    # the recorded l0 moves beyond its default tolerance (relative 5%): the comparison fails and shows both values
    old = entry["checks"]["expect[0].l0"]
    entry["checks"]["expect[0].l0"] = old * 1.5
    saved.write_text(json.dumps(data))
    result = pytester.runpytest("-p", "no:cacheprovider", "--interp-compare", "-k", "case-0")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "l0.baseline" in out and f"delta {old - old * 1.5:+.4f}" in out and "accept it with --interp-update" in out, out
    assert "tolerance abs 0.0001 + rel 0.05" in out, out
    assert "drift from the reference baselines: 1 of 4 compared values out of tolerance" in out, out


def test_per_check_baseline_tolerance_and_stale_entries(pytester: pytest.Pytester) -> None:
    case_file(pytester, "a", MANY)
    pytester.runpytest("-p", "no:cacheprovider", "--interp-update").assert_outcomes(passed=6)
    saved = pytester.path / "cases" / "a.yaml.baseline.json"
    data = json.loads(saved.read_text())
    data["cases"]["removed-case"] = {"x": {"sae": "x", "checks": {"expect[0].l0": 1.0}, "features": {}}}
    data["cases"]["case-0"][REFERENCE]["checks"]["expect[0].l0"] += 0.5
    saved.write_text(json.dumps(data))
    case_file(pytester, "a", MANY.replace("- l0: {min: 0}", "- l0: {min: 0, baseline: {abs: 1.0}}", 1))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)  # within its own tolerance of 1.0
    assert "has 1 stale entries" in result.stdout.str() and "removed-case [x]" in result.stdout.str()
    case_file(pytester, "a", MANY.replace("- l0: {min: 0}", "- l0: {min: 0, baseline: {tolerance: 0.1}}", 1))
    pytester.runpytest("-p", "no:cacheprovider", "-k", "case-0").assert_outcomes(failed=1)
    pytester.runpytest("-p", "no:cacheprovider", "--interp-update")
    assert "removed-case" not in json.loads(saved.read_text())["cases"]


def test_an_interrupted_write_leaves_the_old_baseline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from interp_tests.baselines import protocol as baseline

    path = tmp_path / "a.yaml.baseline.json"
    entry = baseline.Entry("sae", {"expect[0].l0": 1.0}, {})
    baseline.write_atomic(path, "a.yaml", {"k": {"sae": entry}})
    before = path.read_text()

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    from interp_tests.common import files

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        baseline.write_atomic(path, "a.yaml", {"k": {"sae": baseline.Entry("sae", {"expect[0].l0": 2.0}, {})}})
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.yaml.baseline.json"]  # no temporary file left


@pytest.mark.slow
def test_xdist_parallel_run_gives_the_same_outcomes_and_values_as_serial(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    case_file(pytester, "a", MANY)
    case_file(pytester, "b", MANY.replace("case-", "other-"))
    serial, parallel = pytester.path / "s.xml", pytester.path / "p.xml"
    pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--junitxml={serial}").assert_outcomes(passed=12)  # the parallel half needs its own process
    ran = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-v", f"--junitxml={parallel}", "--interp-update")
    ran.assert_outcomes(passed=12)
    workers = {m.group(1) for m in re.finditer(r"\[(gw\d+)\] .*PASSED cases/[ab]\.yaml::", ran.stdout.str())}
    assert len(workers) == 1, ran.stdout.str()  # one model: its 12 cases on one worker, which loads it once
    strip = lambda props: {k: v for k, v in props.items() if k.endswith(".observed")}  # noqa: E731
    assert {k: strip(v) for k, v in _props(serial).items()} == {k: strip(v) for k, v in _props(parallel).items()}
    assert len(json.loads((pytester.path / "cases" / "b.yaml.baseline.json").read_text())["cases"]) == 6  # written by the controller


def test_workers_spread_over_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from interp_tests.run.session import spread

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [spread("cuda", k) for k in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert spread("cuda:2", 5) == "cuda:2" and spread("cpu", 1) == "cpu" and spread("cuda", None) == "cuda"


def test_target_hook_overrides_where_activations_are_read(pytester: pytest.Pytester) -> None:
    """`hook:` reads another hook: the same residual under another name gives the same values, another place does not."""
    body = 'texts:\n  code: ["def add(a, b):\\n    return a + b"]\ncases:\n  - id: ev\n    on: code\n    expect:\n      - explained_variance: {min: -1000}\n      - l0: {min: 0}\n'
    sae = "  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n"
    values = {}
    for hook in ("", "blocks.0.hook_resid_post", "blocks.0.hook_resid_pre"):
        target = "target:\n  model: tiny-stdlib\n" + sae + (f"  hook: {hook}\n" if hook else "")
        case_file(pytester, "hooked", body, target=target)
        xml = pytester.path / f"{hook or 'default'}.xml"
        pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={xml}").assert_outcomes(passed=1)
        props = _props(xml)["ev"]
        values[hook] = (float(props["explained_variance.observed"]), float(props["l0.observed"]))
    assert values["blocks.0.hook_resid_post"] == pytest.approx(values[""], abs=1e-6)  # resid_post of 0 is resid_pre of 1
    assert values["blocks.0.hook_resid_pre"][0] != pytest.approx(values[""][0], abs=1e-3)


@pytest.mark.installed_plugins
def test_loadgroup_groups_a_case_by_its_model_whatever_its_id_or_path(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """A case id with `@` (xdist's own group separator) and a case file outside the rootdir (named from where
    pytest ran) still group by model; other tests keep xdist's rule."""
    pytest.importorskip("xdist")
    from interp_tests.pytest_plugin.scheduling import CaseModelScheduling

    case_file(pytester, "a", MANY)
    outside = tmp_path / "other" / "c.yaml"
    outside.parent.mkdir()
    outside.write_text(BUNDLED_TARGET + MANY)
    (pytester.path / "deep").mkdir()
    config = pytester.parseconfig("--tx", "2*popen", "--dist", "loadgroup", "--rootdir", str(pytester.path / "deep"))
    scheduler = CaseModelScheduling(config)
    assert scheduler._split_scope("../cases/a.yaml::fires@v2") == "interp-tiny-stdlib"  # from the rootdir
    assert scheduler._split_scope(f"{os.path.relpath(outside, pytester.path)}::case-1") == "interp-tiny-stdlib"  # from where pytest ran
    assert scheduler._split_scope("tests/test_x.py::test_y@g") == "g"
    assert scheduler._split_scope("tests/test_x.py::test_y") == "tests/test_x.py::test_y"
    assert scheduler._split_scope("missing.yaml::x") == "missing.yaml::x"


def test_a_remembered_failure_holds_none_of_its_callers_locals() -> None:
    """A model or SAE that fails to load fails every case that needs it, from one remembered error. Re-raising
    one exception object would chain each caller's frames onto its traceback, and with them their locals: a
    sweep whose reference does not load kept every candidate's weights alive (a load group's budget then held
    nothing back). Each caller gets a copy, without the frames of the others."""
    import gc
    import weakref

    from interp_tests.common.errors import LoadError
    from interp_tests.common.memo import Memo

    memo: Memo[int] = Memo()

    def fail() -> int:
        raise LoadError("cannot load SAE: gone")

    class Weights:
        pass

    def caller() -> weakref.ref[Weights]:
        weights = Weights()  # a candidate's SAE, local to the frame that asks for the reference
        try:
            memo.get("reference", fail)
        except LoadError as exc:
            assert str(exc) == "cannot load SAE: gone"
        return weakref.ref(weights)

    refs = [caller() for _ in range(3)]
    gc.collect()
    assert [r() for r in refs] == [None, None, None]


def test_a_remembered_failure_is_given_as_the_same_error_whatever_its_constructor() -> None:
    """Each caller gets an error of the same class, message and attributes, also for errors whose constructor
    takes other arguments than their message (a case file's list of problems)."""
    from interp_tests.common.errors import CaseFileError
    from interp_tests.common.memo import Memo

    memo: Memo[int] = Memo()

    def fail() -> int:
        raise CaseFileError(["a.yaml:3: target: missing", "a.yaml:9: cases[0]: unknown key"])

    seen = []
    for _ in range(2):
        with pytest.raises(CaseFileError) as info:
            memo.get("file", fail)
        seen.append(info.value)
    assert seen[0] is not seen[1]
    assert all(str(e) == "a.yaml:3: target: missing\na.yaml:9: cases[0]: unknown key" and e.problems == ["a.yaml:3: target: missing", "a.yaml:9: cases[0]: unknown key"] for e in seen)

"""What an SAE's registry entry publishes, with entries built in the test (no hub): the values a `registry: true`
check compares with, and the Neuronpedia links of feature checks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from .helpers import BUNDLED_TARGET

HOOK = "blocks.1.hook_resid_pre"
CASES = """\
texts:
  heldout: {corpus: {bundled: tiny-stdlib-heldout, tokens: 10000}}
  functions: ["def add(a, b):\\n    return a + b"]
cases:
  - id: registry
    on: heldout
    expect:
      - l0: {registry: true, tolerance: 1}
      - explained_variance: {registry: true, tolerance: 0.9}
      - cosine: {min: 0}
  - id: feature
    on: functions
    expect:
      - fires: {feature: 692, token: "def", min: 1}
"""


def run(tmp_path: Path, release: str, cases: tuple[int, ...] = (0, 1)) -> list[Any]:
    """The results of the cases of CASES at `cases` (0: the registry checks on 10,000 tokens, 1: a feature check)."""
    from interp_tests.cases.casefile import load_case_file
    from interp_tests.cases.plan import CasePlan, TargetKey
    from interp_tests.cases.schema import SaeRef, Target
    from interp_tests.checks.runner import run_case
    from interp_tests.compute.engine import HookCache, SaeEngine
    from interp_tests.compute.registry import Registry

    path = tmp_path / "c.yaml"
    path.write_text(BUNDLED_TARGET + CASES)
    case_file = load_case_file(path)
    reg = Registry()
    ref = SaeRef(release=release, id=HOOK)  # a registry entry of the test's own, served by the bundled SAE's weights
    engine = SaeEngine(HookCache(reg.model("tiny-stdlib"), HOOK, 4096), reg.sae(SaeRef(release="tiny-stdlib-res", id=HOOK)), ref.label, ref=ref)
    key = TargetKey.of(Target(model="tiny-stdlib", sae=ref), ref)
    return [run_case(CasePlan(case_file, i, key, path, ref.label), engine) for i in cases]


def test_an_entry_without_l0_errors_that_check_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from interp_tests.compute import registry

    # as in SAELens's pretrained_saes.yaml: this entry publishes variance_explained and no l0
    monkeypatch.setattr(registry, "raw_sae_registry", lambda: {"test-release": {"saes": [{"id": HOOK, "path": "x", "variance_explained": 0.5}]}})
    result = run(tmp_path, "test-release", cases=(0,))[0]
    l0, ev, cosine = result.verdicts
    assert not l0.ok and "publishes no l0 (it has: explained_variance): give explicit bounds instead" in l0.error
    assert ev.ok and ev.notes == ("registry value 0.5000, tolerance 0.9000",) and ev.expected == ">= -0.4000"
    assert cosine.ok and not cosine.error  # the case's other checks still ran


def test_saelens_defaults_are_not_published_values() -> None:
    from interp_tests.cases.schema import SaeRef
    from interp_tests.compute.registry import published

    # SAELens's own loader fills a missing l0 with 0.0 and variance_explained with 1.0: read the entry itself
    entry = {"rel": {"saes": [{"id": "a", "path": "a"}, {"id": "b", "path": "b", "l0": 60, "variance_explained": 0.9}]}}
    assert published(SaeRef(release="rel", id="a"), entry) == {}
    assert published(SaeRef(release="rel", id="b"), entry) == {"l0": 60.0, "explained_variance": 0.9}
    assert published(SaeRef(release="missing", id="b"), entry) == {}


def test_feature_checks_link_to_neuronpedia_where_the_entry_has_an_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from interp_tests.compute import neuronpedia, registry
    from interp_tests.report.text import render

    monkeypatch.setattr(registry, "raw_sae_registry", lambda: {})
    monkeypatch.setattr(neuronpedia, "_directory", lambda: {"np-release": SimpleNamespace(neuronpedia_id={HOOK: "tiny-stdlib/1-res"})})
    fires = run(tmp_path, "np-release", cases=(1,))[0].verdicts[0]
    assert fires.feature_index == 692 and fires.feature_url == "https://neuronpedia.org/tiny-stdlib/1-res/692"
    assert "fires [#692 https://neuronpedia.org/tiny-stdlib/1-res/692]" in render(run(tmp_path, "np-release", cases=(1,))[0])
    monkeypatch.setattr(neuronpedia, "_directory", lambda: {})
    assert run(tmp_path, "np-release", cases=(1,))[0].verdicts[0].feature_url == ""

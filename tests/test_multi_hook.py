"""One forward for every hook: the activations each hook gets from a shared pass are exactly those of a
single-hook pass, a session reads several hooks of a model in one batched forward, and a corpus is read once
for every SAE on the model."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from .helpers import case_file, save_random_sae

HOOKS = ["blocks.0.hook_resid_pre", "blocks.0.attn.hook_z", "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre", "blocks.1.hook_mlp_out"]


@pytest.mark.parametrize("hooks", [HOOKS, HOOKS[:4], ["blocks.1.hook_resid_pre", "blocks.0.hook_resid_pre"]], ids=["to-mlp_out", "to-resid_pre", "two-resid_pre"])
def test_a_shared_pass_gives_each_hook_exactly_its_single_hook_activations(interp_model: Any, hooks: list[str]) -> None:
    import torch

    from interp_tests.compute.engine import hook_activations, hooks_activations, padded

    ids = [interp_model.to_tokens(t, prepend_bos=True)[0] for t in ("def add(a, b):\n    return a + b", "Return the number.")]
    tokens, mask = padded(interp_model, ids)
    shared = hooks_activations(interp_model, hooks, tokens, mask)
    assert list(shared) == hooks
    for hook in hooks:
        assert torch.equal(shared[hook], hook_activations(interp_model, hook, tokens, mask)), hook


TWO_SAES = """\
texts:
  prose: ["Return the number of items in the list.", "See the documentation for more details."]
  heldout: {corpus: {bundled: tiny-stdlib-heldout, tokens: 2000}}
cases:
  - id: texts
    on: prose
    expect:
      - l0: {min: 0}
  - id: corpus
    on: heldout
    expect:
      - explained_variance: {min: -1000}
      - l0: {min: 0}
"""


def test_a_session_reads_every_hook_of_a_model_in_one_forward_and_a_corpus_once(pytester: pytest.Pytester) -> None:
    save_random_sae(pytester.path / "cases" / "layer0", hook="blocks.0.hook_resid_pre")
    target = "target:\n  model: tiny-stdlib\n  saes:\n    - {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n    - {path: layer0}\n"
    case_file(pytester, "two", TWO_SAES, target=target)
    xml = pytester.path / "j.xml"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={xml}")
    result.assert_outcomes(passed=4)
    out = result.stdout.str()
    assert "2 texts in 1 batched forward passes (at 2 hooks)" in out, out
    passes = [line for line in out.splitlines() if "corpus pass on" in line]
    assert len(passes) == 1 and "for 2 SAEs" in passes[0], passes  # one pass served both SAEs, and says so once
    # the shared corpus pass gives each SAE what a pass of its own gives
    shared = {tc.get("name"): {p.get("name"): p.get("value") for p in tc.iter("property")} for tc in ET.parse(xml).getroot().iter("testcase")}
    for label in ("tiny-stdlib-res/blocks.1.hook_resid_pre", str((pytester.path / "cases" / "layer0").resolve())):
        alone = "target:\n  model: tiny-stdlib\n  " + ("sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n" if "tiny" in label else "sae: {path: layer0}\n")
        case_file(pytester, "two", TWO_SAES, target=alone)
        single = pytester.path / "single.xml"
        pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={single}", "-k", "corpus").assert_outcomes(passed=1)
        values = {p.get("name"): p.get("value") for p in ET.parse(single).getroot().iter("property")}
        name = f"corpus[{label}]" if "tiny" in label else "corpus[layer0]"
        for prop in ("explained_variance.observed", "l0.observed"):
            assert float(shared[name][prop]) == pytest.approx(float(values[prop]), abs=1e-9), (name, prop)

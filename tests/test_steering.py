"""Steering: every generated token is steered (with and without KV cache), hooks never leak, sampling is seeded."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from .helpers import case_file

HOOK = "blocks.1.hook_resid_pre"
PROMPT = "I went to the store to buy"


def _prompt(model: Any) -> Any:
    return model.to_tokens(PROMPT)


@pytest.mark.parametrize("mode", ["add", "clamp"])
def test_kv_cache_and_full_recompute_give_identical_steered_tokens(interp_model: Any, interp_sae: Any, mode: str) -> None:
    from interp_tests.compute.steering import Steerer, generate

    tokens = _prompt(interp_model)
    n, new = tokens.shape[1], 12
    with_cache = Steerer(interp_sae, feature=3, strength=8.0, mode=mode)
    without = Steerer(interp_sae, feature=3, strength=8.0, mode=mode)
    a = generate(interp_model, tokens, new, hook=HOOK, steerer=with_cache, use_kv_cache=True)
    b = generate(interp_model, tokens, new, hook=HOOK, steerer=without, use_kv_cache=False)
    assert a.tolist() == b.tolist()
    base = generate(interp_model, tokens, new, hook=HOOK, steerer=None)
    assert base.tolist() != a.tolist(), "strength 8 on this feature should change the continuation"
    # with the cache the hook sees each position once: the prompt (BOS excluded) and every new token fed back
    fed = n + len(a) - 1
    assert with_cache.seen == list(range(1, fed))


def test_positions_prompt_steers_the_prompt_only(interp_model: Any, interp_sae: Any) -> None:
    from interp_tests.compute.steering import Steerer, generate

    tokens = _prompt(interp_model)
    n = tokens.shape[1]
    steerer = Steerer(interp_sae, feature=3, strength=8.0, until=n)
    generate(interp_model, tokens, 8, hook=HOOK, steerer=steerer)
    assert steerer.seen == list(range(1, n))


def test_steering_context_leaves_no_hook_even_on_error(interp_model: Any, interp_sae: Any) -> None:
    from interp_tests.compute.steering import Steerer, steering
    from interp_tests.run.session import hooks_left

    with pytest.raises(RuntimeError):
        with steering(interp_model, HOOK, Steerer(interp_sae, 0, 1.0)):
            assert hooks_left(interp_model) == 1
            raise RuntimeError("boom")
    assert hooks_left(interp_model) == 0


STEER_CASES = """\
features:
  defword: {most_active_on: "def main():\\n    pass", token: "def"}
cases:
  - id: steer
    steer: {feature: defword, strength: STRENGTH}
    prompt: "I went to the store to buy"
    expect:
      - kl: {min: 0.01}
      - logprob_shift: {tokens: ["def"], min: 0.5}
  - id: multi-token-target
    steer: {feature: defword, strength: 1.0}
    prompt: "I went to the store to buy"
    expect:
      - logprob_shift: {tokens: ["Golden Gate Bridge"], min: 0.5}
"""

LEAK_PROBE = """
from interp_tests.pytest_plugin.items import STATE
from interp_tests.run.session import hooks_left

def pytest_runtest_teardown(item):
    reg = item.config.stash[STATE]._registry
    models = [] if reg is None else reg.models.built()
    print("HOOKS-LEFT", item.name, sum(hooks_left(m) for m in models))
"""


def test_hooks_never_leak_after_pass_fail_or_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(LEAK_PROBE)
    case_file(pytester, "steer", STEER_CASES.replace("STRENGTH", "40.0"))
    case_file(pytester, "steer0", STEER_CASES.replace("STRENGTH", "0.0"))
    result = pytester.runpytest("-s", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert out.count("HOOKS-LEFT") == 4, out
    assert "HOOKS-LEFT steer 0" in out and "HOOKS-LEFT multi-token-target 0" in out
    assert all(line.endswith(" 0") for line in out.splitlines() if line.startswith("HOOKS-LEFT")), out
    result.assert_outcomes(passed=1, failed=3)  # steer passes at 40, fails at 0 (its verdict comes from the steering)
    assert "kl [defword = #" in out and "observed 0.0000" in out  # at strength 0 nothing moves


def test_a_multi_token_target_is_an_error_that_shows_the_split(pytester: pytest.Pytester) -> None:
    case_file(pytester, "steer", STEER_CASES.replace("STRENGTH", "1.0"))
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "multi")
    out = result.stdout.str()
    assert "'Golden Gate Bridge' is not a single token: the tokenizer splits it into [" in out, out
    assert "Traceback" not in out


SAMPLED = """\
features:
  defword: {most_active_on: "def main():\\n    pass", token: "def"}
cases:
  - id: sampled
    steer: {feature: defword, strength: 4.0, temperature: 1.0, seed: 7}
    prompt: "I went to the store to buy"
    expect:
      - generates: {any_of: ["zzzz-never"], max_new_tokens: 16}
"""


@pytest.mark.slow  # starts a fresh interpreter
def test_sampling_with_a_seed_is_reproducible_in_process_and_in_a_fresh_process(pytester: pytest.Pytester, interp_model: Any, interp_sae: Any) -> None:
    from interp_tests.compute.steering import Steerer, generate

    tokens = interp_model.to_tokens("I went to the store to buy")

    def sample(seed: int) -> list[int]:
        steerer = Steerer(interp_sae, 692, 4.0)
        return generate(interp_model, tokens, 16, hook="blocks.1.hook_resid_pre", steerer=steerer, temperature=1.0, seed=seed).tolist()

    assert sample(7) == sample(7) and sample(7) != sample(8)
    case_file(pytester, "sampled", SAMPLED)
    here, fresh = pytester.path / "here.xml", pytester.path / "fresh.xml"
    pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={here}")
    pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={fresh}")

    def generated(xml: Path) -> str:
        return str({p.get("name"): p.get("value") for p in ET.parse(xml).getroot().iter("property")}["generates.observed"])

    assert generated(here) == generated(fresh) and len(generated(here)) > 0

"""Valid files that cannot run against their target: one clear message each, never a traceback."""

from __future__ import annotations

import re

import pytest

from .helpers import case_file, line_of, save_random_sae

TEXT = """\
texts:
  prose: ["Return the number of items in the list."]
"""


def run(pytester: pytest.Pytester, *args: str) -> str:
    out = pytester.runpytest("-p", "no:cacheprovider", *args).stdout.str()
    assert "Traceback" not in out and "internal error" not in out, out
    return out


def test_feature_index_out_of_range_names_file_line_and_d_sae(pytester: pytest.Pytester) -> None:
    path = case_file(pytester, "idx", TEXT + "cases:\n  - id: a\n    on: prose\n    expect:\n      - fires: {feature: 5000}\n")
    out = run(pytester)
    assert f"cases/idx.yaml:{line_of(path, 'feature: 5000')}: feature index 5000 is outside [0, 1024) (d_sae of SAE tiny-stdlib-res/blocks.1.hook_resid_pre is 1024)" in out, out


def test_named_feature_out_of_range_points_at_its_definition(pytester: pytest.Pytester) -> None:
    path = case_file(pytester, "idx", TEXT + "features: {big: -3}\ncases:\n  - id: a\n    on: prose\n    expect:\n      - silent: {feature: big}\n")
    out = run(pytester)
    assert f"cases/idx.yaml:{line_of(path, 'big: -3')}: feature index -3 is outside [0, 1024)" in out, out


def test_a_token_missing_from_a_text_fails_and_lists_the_tokens(pytester: pytest.Pytester) -> None:
    case_file(pytester, "tok", TEXT + "cases:\n  - id: a\n    on: prose\n    expect:\n      - fires: {feature: 1, token: ' Bridge'}\n")
    out = run(pytester)
    assert "token ' Bridge' does not occur in prose 'Return the number of items in the list.'; its tokens: ['Return', ' the'" in out, out
    assert "1 failed" in out


def test_a_text_longer_than_the_context(pytester: pytest.Pytester) -> None:
    long = "x = 1\n" * 200
    case_file(pytester, "long", f"texts:\n  big: [{long!r}]\ncases:\n  - id: a\n    on: big\n    expect:\n      - l0: {{max: 100}}\n".replace("'", '"'))
    out = run(pytester)
    assert "longer than the model's context of 128: shorten it or split it" in out, out


def test_a_hook_the_model_does_not_have(pytester: pytest.Pytester) -> None:
    target = "target:\n  model: tiny-stdlib\n  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n  hook: blocks.7.hook_resid_pre\n"
    case_file(pytester, "hook", TEXT + "cases:\n  - id: a\n    on: prose\n    expect:\n      - l0: {max: 100}\n", target=target)
    out = run(pytester)
    assert "the model has no hook 'blocks.7.hook_resid_pre' (close: " in out, out


def test_model_and_sae_width_mismatch(pytester: pytest.Pytester) -> None:
    save_random_sae(pytester.path / "narrow", d_in=64)
    target = "target:\n  model: tiny-stdlib\n  sae: {path: ../narrow}\n"
    case_file(pytester, "width", TEXT + "cases:\n  - id: a\n    on: prose\n    expect:\n      - l0: {max: 100}\n", target=target)
    out = run(pytester)
    assert "width mismatch: the SAE" in out and "takes d_in=64, but hook 'blocks.1.hook_resid_pre' of the model gives 128" in out, out


def test_nan_in_activations(pytester: pytest.Pytester) -> None:
    save_random_sae(pytester.path / "nan", nan=True)
    target = "target:\n  model: tiny-stdlib\n  sae: {path: ../nan}\n"
    case_file(pytester, "nan", TEXT + "cases:\n  - id: a\n    on: prose\n    expect:\n      - l0: {max: 100}\n", target=target)
    out = run(pytester)
    assert "non-finite values (NaN or inf) in the SAE activations on text 'Return the number" in out, out


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("target:\n  model: no-such-model-xyz\n  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n", "unknown model 'no-such-model-xyz'"),
        ("target:\n  model: tiny-stdlib\n  sae: {release: no-such-release, id: x}\n", "unknown SAE release 'no-such-release'"),
        ("target:\n  model: tiny-stdlib\n  sae: {release: tiny-stdlib-res, id: blocks.9.hook_resid_pre}\n", "bundled release 'tiny-stdlib-res' has no SAE id 'blocks.9.hook_resid_pre'; ids: blocks.1.hook_resid_pre"),
        ("target:\n  model: tiny-stdlib\n  sae: {path: ../nowhere}\n", "cannot load SAE: SAE directory"),
    ],
    ids=["unknown-model", "unknown-release", "unknown-bundled-id", "path-without-cfg"],
)
def test_unloadable_targets_fail_every_case_with_one_clear_message(pytester: pytest.Pytester, target: str, message: str) -> None:
    body = TEXT + "cases:\n" + "".join(f"  - id: c{i}\n    on: prose\n    expect:\n      - l0: {{max: 100}}\n" for i in range(3))
    case_file(pytester, "load", body, target=target)
    out = run(pytester, "--interp-offline", "-rN")  # -rN: no short summary, so each message shows once
    assert out.count(message) == 3, out
    assert "3 failed" in out


HELDOUT = "texts:\n  heldout: {corpus: {bundled: tiny-stdlib-heldout, tokens: 10000}}\n"


def test_registry_shorthand_without_a_registry_entry_is_a_clear_error(pytester: pytest.Pytester) -> None:
    save_random_sae(pytester.path / "local")
    target = "target:\n  model: tiny-stdlib\n  sae: {path: ../local}\n"
    case_file(pytester, "reg", HELDOUT + "cases:\n  - id: a\n    on: heldout\n    expect:\n      - l0: {registry: true, tolerance: 5}\n", target=target)
    out = run(pytester)
    assert "l0: registry: true, but the registry entry of SAE" in out and "publishes no l0 (it has: nothing): give explicit bounds instead" in out, out


def test_registry_shorthand_on_the_bundled_sae_uses_its_published_values(pytester: pytest.Pytester) -> None:
    case_file(pytester, "reg", HELDOUT + "cases:\n  - id: a\n    on: heldout\n    expect:\n      - l0: {registry: true, tolerance: 0.5}\n      - explained_variance: {registry: true, tolerance: 0.02}\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    # the bounds are the bundled metadata's held-out values (shown on the ok lines of a failing case)
    case_file(pytester, "reg", HELDOUT + "cases:\n  - id: a\n    on: heldout\n    expect:\n      - explained_variance: {registry: true, tolerance: 0.0}\n      - l0: {registry: true, tolerance: 0.0}\n      - mse: {max: -1}\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert re.search(r"explained_variance: observed 0\.8133 \[95% CI 0\.81\d\d, 0\.81\d\d\], expected >= 0\.8129", out), out
    assert "l0: observed 24.0000 [95% CI 24.0000, 24.0000], expected in [24.0000, 24.0000]" in out, out


@pytest.mark.parametrize(("check", "needs"), [("explained_variance: {min: 0}", "explained_variance needs at least 2 tokens"), ("ce_loss_score: {min: 0}", "ce_loss_score needs texts of at least 2 tokens")])
def test_statistics_undefined_on_one_token_say_so(pytester: pytest.Pytester, check: str, needs: str) -> None:
    path = case_file(pytester, "one", f"cases:\n  - id: a\n    text: x\n    expect:\n      - {check}\n")
    out = run(pytester)
    assert f"cases/one.yaml:{line_of(path, check)}: {needs}" in out and "1 failed" in out, out


def test_nan_in_activations_over_a_corpus(pytester: pytest.Pytester) -> None:
    save_random_sae(pytester.path / "nan", nan=True)
    target = "target:\n  model: tiny-stdlib\n  sae: {path: ../nan}\n"
    body = "texts:\n  held: {corpus: {bundled: tiny-stdlib-heldout, tokens: 300, context: 64}}\ncases:\n  - id: a\n    on: held\n    expect:\n      - l0: {max: 100}\n"
    case_file(pytester, "nan", body, target=target)
    out = run(pytester)
    assert "non-finite values (NaN or inf) in the SAE" in out and "output on corpus 'held'" in out and "check its weights" in out, out

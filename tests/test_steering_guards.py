"""Steering gets the runtime guards of the other checks: a width mismatch, NaN weights, an infinite strength
are each a clear failure of that case, never a pass and never a traceback; bad values stop at collection."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import BUNDLED_TARGET, case_file, save_random_sae

STEER = """\
cases:
  - id: steer
    steer: {{feature: 3, strength: {strength}, mode: {mode}, temperature: {temperature}}}
    prompt: "def main():"
    expect:
      - generates: {{none_of: ["zzzz"], max_new_tokens: 4}}
"""


@pytest.mark.parametrize(
    ("name", "sae", "strength", "mode", "temperature", "message"),
    [
        ("width", "narrow", "1.0", "add", "0.0", "takes d_in=64, but hook 'blocks.1.hook_resid_pre' of the model gives 128"),
        ("nan-weights", "nan", "1.0", "clamp", "0.0", "non-finite values (NaN or inf)"),
        ("inf-clamp", None, ".inf", "clamp", "0.0", "non-finite values (NaN or inf) in the steered next-token logits"),
        ("inf-add", None, ".inf", "add", "1.0", "non-finite values (NaN or inf) in the steering vector"),
    ],
)
def test_a_broken_steering_case_fails_clearly(pytester: pytest.Pytester, name: str, sae: str | None, strength: str, mode: str, temperature: str, message: str) -> None:
    target = BUNDLED_TARGET
    if sae == "narrow":
        save_random_sae(pytester.path / "cases" / "narrow", d_in=64)
        target = "target:\n  model: tiny-stdlib\n  sae: {path: narrow}\n  hook: blocks.1.hook_resid_pre\n"
    elif sae == "nan":
        save_random_sae(pytester.path / "cases" / "nan", nan=True)
        target = "target:\n  model: tiny-stdlib\n  sae: {path: nan}\n"
    case_file(pytester, name, STEER.format(strength=strength, mode=mode, temperature=temperature), target=target)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert message in out and "Traceback" not in out and "internal error" not in out, out


@pytest.mark.parametrize(
    ("snippet", "location", "message"),
    [
        ('generates: {any_of: [""]}', "generates.any_of", "entries must not be empty strings"),
        ('logprob_shift: {tokens: [""], min: 0}', "logprob_shift.tokens", "entries must not be empty strings"),
    ],
)
def test_empty_strings_are_rejected_at_collection(tmp_path: Path, snippet: str, location: str, message: str) -> None:
    from interp_tests.cases.casefile import load_case_file
    from interp_tests.common.errors import CaseFileError

    path = tmp_path / "c.yaml"
    path.write_text(BUNDLED_TARGET + f"cases:\n  - id: a\n    steer: {{feature: 1, strength: 1}}\n    prompt: x\n    expect:\n      - {snippet}\n")
    with pytest.raises(CaseFileError) as err:
        load_case_file(path)
    assert f"{path}:9: cases[0].expect[0].{location}: {message}" in str(err.value), str(err.value)


def test_an_out_of_range_seed_is_rejected_at_collection(tmp_path: Path) -> None:
    from interp_tests.cases.casefile import load_case_file
    from interp_tests.common.errors import CaseFileError

    path = tmp_path / "c.yaml"
    path.write_text(BUNDLED_TARGET + "cases:\n  - id: a\n    steer: {feature: 1, strength: 1, temperature: 1, seed: 100000000000000000000000}\n    prompt: x\n    expect:\n      - kl: {max: 1}\n")
    with pytest.raises(CaseFileError) as err:
        load_case_file(path)
    assert f"{path}:6: cases[0].steer.seed: must be <= 9223372036854775807" in str(err.value), str(err.value)

"""Malformed case files: a clean `path:line: location: message` collection error of that file alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import BUNDLED_TARGET, case_file

GOOD = """\
texts:
  prose: ["Return the number of items in the list."]
cases:
  - id: fine
    on: prose
    expect:
      - l0: {min: 0, max: 100000}
"""

# (name, file text, expected line, expected fragment of "location: message")
MALFORMED = [
    ("not-yaml", BUNDLED_TARGET + "cases: [\n", 5, "<file>: invalid YAML"),
    ("duplicate-key", "target:\n  model: a\n  model: b\n", 3, "<file>: invalid YAML: duplicate key 'model' (each key may appear once per mapping"),
    ("not-a-mapping", "- just\n- a list\n", 1, "a case file is a mapping"),
    ("unknown-key", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    colour: red\n    expect: [{l0: {max: 1}}]\n", 7, "cases[0].colour: unknown key 'colour'"),
    ("wrong-type", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - l0: {max: lots}\n", 8, "cases[0].expect[0].l0.max: expected a number (got 'lots')"),
    ("min-above-max", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - l0: {min: 50, max: 5}\n", 8, "cases[0].expect[0].l0: min 50.0 is greater than max 5.0: no value can pass"),
    ("empty-token", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - top_k: {feature: 1, token: '', k: 3}\n", 8, "cases[0].expect[0].top_k.token: must not be empty (got '')"),
    ("out-of-range", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - top_k: {feature: 1, token: x, k: 0}\n", 8, "cases[0].expect[0].top_k.k: must be >= 1 (got 0)"),
    ("check-not-a-mapping", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - mse: 0.5\n", 8, "cases[0].expect[0].mse: expected a mapping of max, on, baseline (got 0.5)"),
    ("expect-not-a-list", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect: mse\n", 7, "cases[0].expect: expected a list (got 'mse')"),
    ("python-tag", BUNDLED_TARGET + "cases:\n  - id: !!python/object/apply:os.system [ls]\n    text: x\n    expect: [{l0: {max: 1}}]\n", 5, "cases[0].id: a value tagged !!python/object/apply:os.system is not supported"),
    ("missing-field", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - separates: {feature: 1, positive: x, negative: x}\n", 8, "separates.min_auroc: missing required key 'min_auroc'"),
    ("unknown-check", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - firez: {feature: 1}\n", 8, "cases[0].expect[0]: unknown check 'firez' (did you mean 'fires'?"),
    ("duplicate-id", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect: [{l0: {max: 1}}]\n  - id: a\n    text: y\n    expect: [{l0: {max: 1}}]\n", 8, "cases[1].id: duplicate case id 'a'"),
    ("unknown-group", BUNDLED_TARGET + "texts: {code: [x]}\ncases:\n  - id: a\n    on: cod\n    expect: [{l0: {max: 1}}]\n", 7, "cases[0].on: unknown text group 'cod' (did you mean 'code'?)"),
    ("unknown-feature", BUNDLED_TARGET + "features: {gg: 3}\ncases:\n  - id: a\n    text: x\n    expect:\n      - fires: {feature: g}\n", 9, "fires.feature: unknown feature 'g'"),
    ("no-texts", BUNDLED_TARGET + "cases:\n  - id: a\n    expect:\n      - mse: {max: 1}\n", 7, "cases[0].expect[0].mse: mse needs texts"),
    ("bool-is-not-an-index", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - fires: {feature: true}\n", 8, "fires.feature: expected a feature name"),
    ("sae-and-saes", "target:\n  model: m\n  sae: {path: a}\n  saes: [{path: b}]\ncases:\n  - {id: a, text: x, expect: [{l0: {max: 1}}]}\n", 1, "target: give exactly one of sae"),
    ("steering-check-without-steer", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - kl: {max: 1}\n", 8, "kl is a steering check"),
    ("empty-file", "", 1, "<file>: a case file is a mapping"),
    ("nan-bound", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - l0: {min: .nan}\n", 8, "cases[0].expect[0].l0: min is NaN"),
    ("tab-indent", "target:\n\tmodel: x\n", 2, "<file>: invalid YAML: found character '\\t'"),
    ("check-without-value", BUNDLED_TARGET + "cases:\n  - id: a\n    text: x\n    expect:\n      - l0:\n", 8, "cases[0].expect[0].l0: expected a mapping of registry, tolerance, min, max, on, baseline (got None)"),
    ("same-sae-twice", "target:\n  model: m\n  saes: [{path: a}, {path: b}, {path: a}]\ncases:\n  - {id: a, text: x, expect: [{l0: {max: 1}}]}\n", 3, "target.saes: lists 'a' twice: name each SAE once"),
    ("two-text-sources", BUNDLED_TARGET + "texts: {g: [x]}\ncases:\n  - id: a\n    on: g\n    text: x\n    expect: [{l0: {max: 1}}]\n", 6, "give at most one of on, text, texts"),
]


@pytest.mark.parametrize(("name", "text", "line", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_file_is_a_clean_path_line_error(tmp_path: Path, name: str, text: str, line: int, fragment: str) -> None:
    from interp_tests.cases.casefile import load_case_file
    from interp_tests.common.errors import CaseFileError

    bad = tmp_path / f"{name}.yaml"
    bad.write_text(text)
    with pytest.raises(CaseFileError) as err:
        load_case_file(bad, Path("cases") / f"{name}.yaml")
    message = str(err.value)
    assert f"cases/{name}.yaml:{line}: " in message and fragment in message, message
    assert all(problem.startswith(f"cases/{name}.yaml:") for problem in err.value.problems), message
    assert "Traceback" not in message and "pydantic" not in message.lower(), message


def test_a_malformed_file_is_an_error_of_that_file_and_the_others_still_run(pytester: pytest.Pytester) -> None:
    """The wiring, once: the bad file is an error (not a crash, not an interrupted session) beside a good file."""
    for name, text, _, _ in (MALFORMED[0], MALFORMED[4]):
        bad = pytester.path / "cases" / f"{name}.yaml"
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_text(text)
    case_file(pytester, "good", GOOD)
    result = pytester.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "cases/not-yaml.yaml:5: <file>: invalid YAML" in out and "cases/wrong-type.yaml:8: cases[0].expect[0].l0.max: expected a number (got 'lots')" in out, out
    assert "Traceback" not in out and "Interrupted" not in out, out
    result.assert_outcomes(passed=1, errors=2)


def test_yaml_1_2_keeps_on_yes_no_as_strings(pytester: pytest.Pytester) -> None:
    case_file(
        pytester,
        "yaml12",
        """\
        texts:
          yes: ["Return the number of items in the list."]
          no: ["This module provides functions for parsing dates."]
        cases:
          - id: on-is-a-key
            on: [yes, no]
            expect:
              - l0: {min: 0}
        """,
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)

"""Which files are collected, and that collection stays light (no torch, transformer_lens, sae_lens)."""

from __future__ import annotations

import pytest

from .helpers import case_file

SIMPLE = """\
texts:
  prose: ["Return the number of items in the list."]
cases:
  - id: l0-bounds
    on: prose
    expect:
      - l0: {min: 0, max: 100000}
"""


def test_case_files_under_cases_become_one_test_per_case(pytester: pytest.Pytester) -> None:
    case_file(pytester, "one", SIMPLE)
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["cases/one.yaml::l0-bounds", "*1 test collected*"])


def test_a_case_file_named_on_the_command_line_is_collected_wherever_it_lives(pytester: pytest.Pytester) -> None:
    elsewhere = pytester.path / "elsewhere" / "my_cases.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text((pytester.path / case_file(pytester, "tmp", SIMPLE)).read_text())
    (pytester.path / "cases" / "tmp.yaml").unlink()
    assert "no tests" in pytester.runpytest("--collect-only", "-q").stdout.str()  # not under cases/
    result = pytester.runpytest("--collect-only", "-q", str(elsewhere))
    result.stdout.fnmatch_lines(["elsewhere/my_cases.yaml::l0-bounds", "*1 test collected*"])


def test_interp_cases_ini_option_chooses_the_directories(pytester: pytest.Pytester) -> None:
    path = pytester.path / "suites" / "a.yaml"
    path.parent.mkdir()
    path.write_text("target:\n  model: tiny-stdlib\n  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n" + SIMPLE)
    pytester.makeini("[pytest]\ninterp_cases = suites\n")
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(["suites/a.yaml::l0-bounds"])


def test_saes_list_gives_one_test_per_case_and_sae(pytester: pytest.Pytester) -> None:
    target = """\
target:
  model: tiny-stdlib
  saes:
    - {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}
    - {path: ../local-sae}
"""
    case_file(pytester, "multi", SIMPLE, target=target)
    result = pytester.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        ["cases/multi.yaml::l0-bounds[[]tiny-stdlib-res/blocks.1.hook_resid_pre[]]", "cases/multi.yaml::l0-bounds[[]../local-sae[]]"]
    )


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_collect_only_imports_no_torch_transformer_lens_or_sae_lens(pytester: pytest.Pytester) -> None:
    case_file(pytester, "one", SIMPLE)
    pytester.makeconftest(
        """
        import sys
        def pytest_collection_finish(session):
            heavy = sorted(m for m in ("torch", "transformer_lens", "sae_lens") if m in sys.modules)
            print("HEAVY-MODULES:", heavy)
        """
    )
    result = pytester.runpytest_subprocess("--collect-only", "-q")
    result.stdout.fnmatch_lines(["HEAVY-MODULES: []", "*1 test collected*"])
    help_result = pytester.runpytest_subprocess("--help")
    help_result.stdout.fnmatch_lines(["*interp-tests*", "*--interp-device*"])


def test_k_selects_cases_by_their_id_only(pytester: pytest.Pytester) -> None:
    """A case's keywords are its id and its file's, not marks the plugin adds (`-k group` once selected every
    case through an `xdist_group` mark)."""
    case_file(pytester, "k", 'texts:\n  a: ["def f(x):"]\ncases:\n  - id: x1\n    on: a\n    expect: [{l0: {min: 0}}]\n  - id: group-case\n    on: a\n    expect: [{l0: {min: 0}}]\n')
    for expr, selected in (("group", 1), ("x1", 1), ("xdist", 0)):
        result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q", "-k", expr)
        assert sum("k.yaml::" in line for line in result.stdout.lines) == selected, (expr, result.stdout.str())

"""Which YAML files are case files: a directory named on the command line collects its case files (and says
why when it has none), other YAML files are left alone, and every failure line names its file."""

from __future__ import annotations

import os

import pytest

from .helpers import BUNDLED_TARGET

FAILING = BUNDLED_TARGET + "texts:\n  prose: [\"Return the number of items in the list.\"]\ncases:\n  - id: class-keyword\n    on: prose\n    expect:\n      - l0: {max: 1}\n"


def test_a_named_directory_collects_its_case_files_and_leaves_other_yaml_alone(pytester: pytest.Pytester) -> None:
    claims = pytester.path / "my_claims"
    (claims / "nested").mkdir(parents=True)
    (claims / "nested" / "claims.yaml").write_text(FAILING)
    (claims / "docker-compose.yml").write_text("services:\n  web: {image: x}\n")
    result = pytester.runpytest("my_claims/", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED my_claims/nested/claims.yaml::class-keyword - *"])


def test_a_named_directory_without_case_files_says_why(pytester: pytest.Pytester) -> None:
    (pytester.path / "configs").mkdir()
    (pytester.path / "configs" / "workflow.yml").write_text("on: push\njobs: {}\n")
    result = pytester.runpytest("configs/", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "none of the 1 YAML files under" in result.stdout.str() and "top-level target: and cases: keys" in result.stdout.str()


def test_a_directory_of_broken_or_deselected_case_files_does_not_say_it_has_none(pytester: pytest.Pytester) -> None:
    claims = pytester.path / "claims"
    claims.mkdir()
    (claims / "broken.yaml").write_text(BUNDLED_TARGET + "cases: [\n")  # invalid YAML, but a case file
    (claims / "ok.yaml").write_text(FAILING)
    broken = pytester.runpytest("claims/broken.yaml", "claims/", "-p", "no:cacheprovider")
    assert "invalid YAML" in broken.stdout.str() and "none of the" not in broken.stdout.str()
    deselected = pytester.runpytest("claims/", "-k", "no-such-case", "-p", "no:cacheprovider")
    assert "none of the" not in deselected.stdout.str()


def test_a_file_outside_the_rootdir_is_named_in_its_failure_line(pytester: pytest.Pytester) -> None:
    (pytester.path / "proj" / "cases").mkdir(parents=True)
    (pytester.path / "proj" / "cases" / "a.yaml").write_text(FAILING)
    (pytester.path / "else").mkdir()
    (pytester.path / "else" / "b.yaml").write_text(FAILING)
    (pytester.path / "proj" / "pytest.ini").write_text("[pytest]\n")
    os.chdir(pytester.path / "proj")  # pytester restores the working directory afterwards
    result = pytester.runpytest("cases/", "../else/b.yaml", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["FAILED cases/a.yaml::class-keyword - *", "FAILED ../else/b.yaml::class-keyword - *"])

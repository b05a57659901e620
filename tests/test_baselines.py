"""Baselines that never lie or get lost: one file per case file, keys that survive any id, reads that fail
loudly, writes only after a complete run, file modes kept, unique JUnit names."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from .helpers import BUNDLED_TARGET, case_file

REFERENCE = "tiny-stdlib-res/blocks.1.hook_resid_pre"
TWO_CASES = """\
texts:
  prose: ["Return the number of items in the list.", "See the documentation for more details."]
cases:
  - id: "odd [id] with::colons"
    on: prose
    expect:
      - l0: {min: 0}
      - l0: {max: 100000}
      - mse: {max: 1000}
  - id: plain
    on: prose
    expect:
      - cosine: {min: -1}
"""


def test_yaml_and_yml_of_one_name_keep_separate_baselines(pytester: pytest.Pytester) -> None:
    case_file(pytester, "suite", TWO_CASES)
    (pytester.path / "cases" / "suite.yml").write_text(BUNDLED_TARGET + TWO_CASES.replace("id: plain", "id: other"))
    pytester.runpytest("--interp-update").assert_outcomes(passed=4)
    yaml_ids = set(json.loads((pytester.path / "cases" / "suite.yaml.baseline.json").read_text())["cases"])
    yml_ids = set(json.loads((pytester.path / "cases" / "suite.yml.baseline.json").read_text())["cases"])
    assert yaml_ids == {"odd [id] with::colons", "plain"} and yml_ids == {"odd [id] with::colons", "other"}


def test_an_id_with_brackets_and_colons_survives_updates_and_can_be_selected(pytester: pytest.Pytester) -> None:
    case_file(pytester, "suite", TWO_CASES)
    first = pytester.runpytest("--interp-update")
    first.assert_outcomes(passed=2)
    assert "stale" not in first.stdout.str()
    second = pytester.runpytest("--interp-update")
    assert "stale" not in second.stdout.str()
    assert "odd [id] with::colons" in json.loads((pytester.path / "cases" / "suite.yaml.baseline.json").read_text())["cases"]
    selected = pytester.runpytest("cases/suite.yaml::odd [id] with:_:colons")  # `::` in an id is written `:_:`
    selected.assert_outcomes(passed=1)


def test_an_update_records_checks_with_their_own_baseline_and_compares_nothing(pytester: pytest.Pytester) -> None:
    """The first `--interp-update` of a file whose checks carry `baseline:` is green (it records them); a
    later plain run compares with what it recorded; an update after the values moved records them again."""
    path = case_file(pytester, "own", TWO_CASES.replace("l0: {min: 0}", "l0: {min: 0, baseline: {abs: 0.001}}"))
    pytester.runpytest("--interp-update").assert_outcomes(passed=2)
    recorded = json.loads((pytester.path / "cases" / "own.yaml.baseline.json").read_text())
    pytester.runpytest().assert_outcomes(passed=2)  # compares l0 with the recorded value: the same
    data = json.loads((pytester.path / "cases" / "own.yaml.baseline.json").read_text())
    data["cases"]["odd [id] with::colons"][REFERENCE]["checks"]["expect[0].l0"] = 1.0  # the reference moved
    (pytester.path / "cases" / "own.yaml.baseline.json").write_text(json.dumps(data))
    moved = pytester.runpytest()
    moved.assert_outcomes(passed=1, failed=1)
    assert "l0.baseline" in moved.stdout.str()
    pytester.runpytest("--interp-update").assert_outcomes(passed=2)  # an update records, it does not compare
    assert json.loads((pytester.path / "cases" / "own.yaml.baseline.json").read_text()) == recorded
    assert path.is_file()


def test_two_checks_of_one_kind_get_unique_junit_names(pytester: pytest.Pytester) -> None:
    case_file(pytester, "suite", TWO_CASES)
    xml = pytester.path / "j.xml"
    pytester.runpytest(f"--junitxml={xml}").assert_outcomes(passed=2)
    case = next(tc for tc in ET.parse(xml).getroot().iter("testcase") if tc.get("name", "").startswith("odd"))
    names = [p.get("name") for p in case.iter("property")]
    assert names == [
        "l0[0].observed", "l0[0].ci_low", "l0[0].ci_high", "l0[1].observed", "l0[1].ci_low", "l0[1].ci_high",
        "mse.observed", "mse.ci_low", "mse.ci_high", "interp.checkpoint", "interp.checkpoint_path",
    ], names
    assert len({p.get("value") for p in case.iter("property") if p.get("name", "").startswith("l0")}) == 1  # the same l0, twice


@pytest.mark.parametrize("content", ['"oops"', "{\"version\": 2, \"case_file\": \"suite.yaml\", \"cases\": {\"plain\": \"oops\"}}", "not json"])
def test_a_broken_baseline_fails_compare_and_update_replaces_what_it_records(pytester: pytest.Pytester, content: str) -> None:
    case_file(pytester, "suite", TWO_CASES)
    saved = pytester.path / "cases" / "suite.yaml.baseline.json"
    saved.write_text(content)
    compared = pytester.runpytest("--interp-compare")
    compared.assert_outcomes(failed=2)
    out = compared.stdout.str()
    assert "Traceback" not in out and ("unreadable baseline" in out or "not a version-2 baseline" in out or "no baseline for" in out), out
    updated = pytester.runpytest("--interp-update")
    out = updated.stdout.str()
    if content == "not json" or content == '"oops"':  # a file that cannot be parsed is never overwritten blindly
        assert "not handled" in out and saved.read_text() == content, out
        assert updated.ret == 1
    else:
        assert "malformed entries replaced or dropped" in out, out
        assert set(json.loads(saved.read_text())["cases"]) == {"odd [id] with::colons", "plain"}


def test_malformed_values_are_named_not_crashed_on(tmp_path: Path) -> None:
    from interp_tests.baselines import protocol as baseline

    path = tmp_path / "a.yaml.baseline.json"
    path.write_text('{"version": 2, "case_file": "a.yaml", "cases": {"c": {"s": {"sae": "s", "checks": {"expect[0].l0": {"x": 1}}}},'
                    ' "d": {"s": {"sae": "s", "checks": {"expect[0].l0": 1' + "0" * 400 + '}}}, "e": {"s": {"sae": "s", "checks": {"expect[0].l0": 2.5}}}}}')
    read = baseline.read(path)
    assert set(read.entries) == {"e"} and read.entries["e"]["s"].checks == {"expect[0].l0": 2.5}
    assert any("expected a number or a string" in p for p in read.problems) and any("out of range" in p for p in read.problems)


def test_update_keeps_the_file_mode_and_reports_an_unwritable_baseline(pytester: pytest.Pytester) -> None:
    case_file(pytester, "suite", TWO_CASES)
    pytester.runpytest("--interp-update").assert_outcomes(passed=2)
    saved = pytester.path / "cases" / "suite.yaml.baseline.json"
    os.chmod(saved, 0o644)
    pytester.runpytest("--interp-update")
    assert stat.S_IMODE(saved.stat().st_mode) == 0o644
    saved.unlink()
    saved.mkdir()  # cannot be replaced by a file (root ignores permission bits, so a directory stands in)
    blocked = pytester.runpytest("--interp-update")
    assert blocked.ret == 1 and "Traceback" not in blocked.stdout.str()
    assert f"baseline of {pytester.path / 'cases' / 'suite.yaml'} not handled" in blocked.stdout.str()


SLOW_TEST = """\
import pathlib, time
def test_zz_slow():
    pathlib.Path("started").write_text("x")
    time.sleep(120)
"""


# `python -m pytest ARGS`, with SIGINT raising KeyboardInterrupt even when this test runs in a background job
# (a non-interactive shell starts those with SIGINT ignored, and Python then installs no handler for it).
PYTEST_WITH_SIGINT = "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv[0] = 'pytest'; runpy.run_module('pytest', run_name='__main__')"


@pytest.mark.slow
def test_an_interrupted_update_leaves_the_baseline_byte_identical(pytester: pytest.Pytester) -> None:
    """SIGINT (pytest's KeyboardInterrupt path) and SIGKILL (no cleanup at all), each in its own copy of the
    suite, run side by side."""
    signals = {"sigint": signal.SIGINT, "sigkill": signal.SIGKILL}
    runs = {}
    for name, sig in signals.items():
        repo = pytester.mkdir(name)
        (repo / "cases").mkdir()
        path = repo / "cases" / "suite.yaml"
        path.write_text((case_file(pytester, "suite", TWO_CASES)).read_text())
        pytester.runpytest(str(path), "--interp-update", "-p", "no:cacheprovider").assert_outcomes(passed=2)
        saved = repo / "cases" / "suite.yaml.baseline.json"
        before = saved.read_bytes()
        path.write_text(path.read_text().replace("cosine: {min: -1}", "cosine: {min: -1}\n      - mse: {max: 1000}"))  # values to record
        (repo / "test_zz.py").write_text(SLOW_TEST)
        proc = subprocess.Popen(
            [sys.executable, "-c", PYTEST_WITH_SIGINT, "cases/suite.yaml", "test_zz.py", "--interp-update", "-p", "no:cacheprovider"],
            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        runs[name] = (repo, saved, before, proc, sig)
    deadline = time.monotonic() + 300
    for repo, _, _, proc, sig in runs.values():
        while not (repo / "started").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.2)
        proc.send_signal(sig)
    for name, (_, saved, before, proc, sig) in runs.items():
        out, _ = proc.communicate(timeout=120)
        assert saved.read_bytes() == before, (name, out)
        if sig == signal.SIGINT:
            assert "NOT updated: the run did not complete" in out, out
        assert [p.name for p in saved.parent.iterdir() if p.name.endswith(".tmp")] == [], name


def test_an_entry_is_found_by_the_sae_it_was_recorded_from_only_when_one_matches(tmp_path: Path) -> None:
    from interp_tests.baselines.protocol import Entry, entry_for, recorded_sae

    new = tmp_path / "new-sae"
    case_dir = tmp_path / "cases"
    assert recorded_sae(str(new), True, case_dir) == "../new-sae" and recorded_sae(str(new), False, case_dir) == str(new)
    assert recorded_sae("release/id", True, case_dir) == "release/id"
    one = Entry("../new-sae", {"expect[0].l0": 1.0}, {})
    other = Entry("release/id", {"expect[0].l0": 2.0}, {})
    assert entry_for({"old": one, "x": other}, "../new-sae", str(new), case_dir) is one  # by the SAE it came from
    assert entry_for({"old": one, "x": other}, "x", str(new), case_dir) is other  # its own label first
    assert entry_for({"a": one, "b": Entry("../new-sae", {}, {})}, "n", str(new), case_dir) is None  # two: neither
    assert entry_for({"old": one}, "n", str(tmp_path / "elsewhere"), case_dir) is None

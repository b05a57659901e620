"""The CI scripts of ci/user/ in a throwaway "user repo" that holds only case files, baselines and checkpoints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import checkpoints
from .helpers import ROOT

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def run(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    outer = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # nothing of this run (xdist's worker id) leaks
    environment = {**outer, "PYTEST": str(BIN / "pytest"), "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(args, cwd=repo, env=environment, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("user-repo")
    (repo / "cases").mkdir()
    shutil.copy(ROOT / "cases" / "tiny-stdlib.yaml", repo / "cases" / "claims.yaml")
    (repo / "ci").mkdir()
    for script in ("interp-gate.sh", "interp-prefetch.sh", "interp-bench.sh"):
        shutil.copy(ROOT / "ci" / "user" / script, repo / "ci" / script)
    checkpoints.save_variant(repo / "ckpts" / "identical", checkpoints.identical)
    checkpoints.save_variant(repo / "ckpts" / "noisy", checkpoints.noisy)
    recorded = run(repo, str(BIN / "pytest"), "cases/", "--interp-update", "-p", "no:cacheprovider")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert (repo / "cases" / "claims.yaml.baseline.json").is_file()
    return repo


def test_gate_is_green_on_an_identical_checkpoint(repo: Path, tmp_path: Path) -> None:
    summary = tmp_path / "step-summary.md"
    prefetch = run(repo, "bash", "ci/interp-prefetch.sh", "ckpts/identical", "cases/")
    assert prefetch.returncode == 0 and "prefetched tiny-stdlib + " in prefetch.stdout, prefetch.stdout + prefetch.stderr
    gate = run(repo, "bash", "ci/interp-gate.sh", "ckpts/identical", "cases/", GITHUB_STEP_SUMMARY=str(summary), OUT="out-identical")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "7 passed" in gate.stdout and re.search(r"drift from the reference baselines: 0 of \d+ compared values out of tolerance", gate.stdout)
    assert (repo / "out-identical" / "junit.xml").is_file()
    assert "**7 of 7 cases passed**" in summary.read_text()


def test_gate_is_red_with_the_drift_table_on_a_noisy_checkpoint(repo: Path) -> None:
    gate = run(repo, "bash", "ci/interp-gate.sh", "ckpts/noisy", "cases/", OUT="out-noisy")
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "drift from the reference baselines:" in gate.stdout and "FAIL  cases/claims.yaml:" in gate.stdout
    markdown = (repo / "out-noisy" / "drift.md").read_text()
    assert "### Drift from the reference baselines" in markdown and "| ❌ | `cases/claims.yaml:" in markdown
    assert "explained_variance" in markdown and "kl_div" in markdown


def test_gate_usage_error(repo: Path) -> None:
    gate = run(repo, "bash", "ci/interp-gate.sh")
    assert gate.returncode == 2 and "usage: ci/interp-gate.sh CANDIDATE" in gate.stderr


def test_bench_saves_on_its_first_run_then_compares(repo: Path) -> None:
    """The packaged benchmarks, outside any checkout of this project, on the --interp-sae candidate."""
    args = "-k 'tiny-stdlib and test_encode' --interp-bench-tokens 512 --interp-bench-rounds 1 --interp-sae ckpts/identical"
    first = run(repo, "bash", "ci/interp-bench.sh", INTERP_BENCH_ARGS=args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no saved run in .benchmarks yet: this run is saved as the baseline" in first.stderr
    assert f"test_encode[tiny-stdlib@{repo / 'ckpts' / 'identical'}-512tok]" in first.stdout, first.stdout
    saved = list((repo / ".benchmarks").rglob("*.json"))
    assert saved and str(repo / "ckpts" / "identical") in saved[0].read_text()
    second = run(repo, "bash", "ci/interp-bench.sh", "1000%", INTERP_BENCH_ARGS=args)  # a generous gate: noise must not fail it here
    assert second.returncode == 0, second.stdout + second.stderr
    assert "no saved run" not in second.stderr and "test_encode" in second.stdout

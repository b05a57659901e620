"""ci/gpu-check.sh and ci/gpu-wheels.txt: what can be checked without a GPU or a package index."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import ROOT


def _pins(path: Path) -> dict[str, str]:
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    lines = [l.strip() for l in path.read_text().splitlines()]
    return {norm(l.split("==")[0]): l.split("==")[1] for l in lines if l and not l.startswith("#") and "==" in l}


def test_gpu_wheels_pin_the_versions_ci_runs() -> None:
    wheels, ci = _pins(ROOT / "ci" / "gpu-wheels.txt"), _pins(ROOT / "ci" / "constraints.txt")
    assert {"sae-lens", "transformer-lens", "pydantic", "ruamel-yaml"} <= wheels.keys()
    drift = {name: (v, ci[name]) for name, v in wheels.items() if name in ci and ci[name] != v}
    assert not drift, f"ci/gpu-wheels.txt differs from ci/constraints.txt (wheel, CI): {drift}"


def _gpu_check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "ci" / "gpu-check.sh"), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_gpu_check_without_an_out_dir_is_a_usage_error() -> None:
    r = _gpu_check(OUT="")
    assert r.returncode == 2 and "usage: ci/gpu-check.sh OUT_DIR" in r.stderr, r.stderr


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_gpu_check_on_a_python_without_the_dependencies_or_wheels_says_what_to_do(tmp_path: Path) -> None:
    bare = tmp_path / "bare"  # a Python that has none of the dependencies
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    r = _gpu_check(str(tmp_path / "out"), PYTHON=str(bare / "bin" / "python"), WHEELHOUSE=str(tmp_path / "none"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "lacks interp-tests or its dependencies" in r.stderr and "ci/gpu-wheels.sh" in r.stderr, r.stderr
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_bench_sh_rejects_a_jemalloc_path_that_is_not_a_file(tmp_path: Path) -> None:
    r = subprocess.run(["bash", str(ROOT / "ci" / "bench.sh"), "smoke"], capture_output=True, text=True, timeout=60, env={**os.environ, "JEMALLOC": str(tmp_path / "nope.so")})
    assert r.returncode == 2 and f"JEMALLOC={tmp_path / 'nope.so'} is not a file" in r.stderr, r.stderr


def test_benchmarks_record_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    from interp_tests.benchmarks import timing

    class Maps:
        def __init__(self, text: str) -> None:
            self.text = text

        def read_text(self) -> str:
            return self.text

    monkeypatch.setenv("MALLOC_CONF", "dirty_decay_ms:-1")
    monkeypatch.setattr(timing, "Path", lambda _: Maps("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libjemalloc.so.2\n"))
    assert timing.allocator() == "jemalloc (dirty_decay_ms:-1)"
    monkeypatch.setattr(timing, "Path", lambda _: Maps("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n"))
    assert timing.allocator() == "libc"


_MODULES_AFTER = "import sys, pytest; rc = pytest.main(sys.argv[1:]); print('IMPORTED', sorted(m for m in ('torch', 'interp_tests.benchmarks') if m in sys.modules)); sys.exit(rc)"


def _pytest_in(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess from `cwd`, with this checkout's interp_tests first on the path; prints which of
    torch and interp_tests.benchmarks it imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", _MODULES_AFTER, "-p", "no:cacheprovider", *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_the_plugin_never_imports_the_benchmarks_package() -> None:
    r = _pytest_in(ROOT, "--collect-only", "-q", "cases/tiny-stdlib.yaml")
    assert r.returncode == 0 and "IMPORTED []" in r.stdout, r.stdout[-2000:] + r.stderr


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_the_packaged_benchmarks_collect_with_pyargs_outside_a_checkout_against_the_interp_sae_candidate(tmp_path: Path) -> None:
    # a user's project: its own case file, and a candidate SAE (a copy of the bundled one) given by --interp-sae
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "tiny.yaml").write_text((ROOT / "cases" / "tiny-stdlib.yaml").read_text())
    (tmp_path / "pytest.ini").write_text("[pytest]\ninterp_cases = cases\n")
    shutil.copytree(ROOT / "interp_tests" / "bundled" / "tiny-stdlib-res" / "blocks.1.hook_resid_pre", tmp_path / "candidate")
    pyargs = ("-p", "interp_tests.benchmarks.plugin", "--pyargs", "interp_tests.benchmarks", "--interp-sae", "candidate", "--interp-bench-tokens", "256")

    listed = _pytest_in(tmp_path, *pyargs, "--collect-only", "-q")
    assert listed.returncode == 0, listed.stdout[-2000:] + listed.stderr
    target = f"tiny-stdlib@{tmp_path / 'candidate'}"
    assert f"test_encode.py::test_encode[{target}-256tok]" in listed.stdout, listed.stdout
    assert "tiny-stdlib-res" not in listed.stdout, listed.stdout  # the case file's SAE was replaced
    assert "IMPORTED ['interp_tests.benchmarks']" in listed.stdout, listed.stdout[-500:]  # and no torch
    # running them on the candidate, through the user's CI script: tests/test_user_repo.py (the bench test)

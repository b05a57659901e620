"""Collecting named case files: `pytest --collect-only a.yaml b.yaml ...` over 50, 200 and 1,000 case files of one
directory, in process (a nested pytest session in a temporary directory). Target: the time per file flat (it
grew with the square and the cube of the count before the command line was resolved once per session and
each directory collected once). With --benchmark-disable (CI's smoke run): 1, 4 and 20 files, once.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from .timing import BenchEnv, benchmark_median

CASE_FILE = """\
target:
  model: tiny-stdlib
  sae: {{release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}}
texts:
  code: ["x = {i}"]
cases:
  - id: case-{i}
    on: code
    expect:
      - l0: {{max: 100}}
"""


def case_files(root: Path, n: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        path = root / f"claims_{i:04d}.yaml"
        path.write_text(CASE_FILE.format(i=i))
        names.append(str(path))
    return names


def collect(rootdir: Path, files: list[str]) -> int:
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--rootdir", str(rootdir), *files])
    return int(code)


@pytest.mark.parametrize("files", [50, 200, 1000])
def test_collecting_named_case_files(benchmark: Any, bench_env: BenchEnv, pytestconfig: Any, tmp_path: Path, files: int) -> None:
    smoke = bool(pytestconfig.getoption("benchmark_disable", False))
    n = files // 50 if smoke else files
    names = case_files(tmp_path / "cases", n)
    codes: list[int] = []
    benchmark.pedantic(lambda: codes.append(collect(tmp_path, names)), rounds=1 if smoke else bench_env.rounds, warmup_rounds=0 if smoke else 1)
    assert set(codes) == {0}, codes
    info: dict[str, Any] = {"files": n, "what": "pytest --collect-only over named case files of one directory"}
    median = benchmark_median(benchmark)
    if median is not None:
        info |= {"median_s": median, "ms_per_file": 1000 * median / n}
    benchmark.extra_info.update(info)

"""scripts/bench_table.py: pytest-benchmark JSON runs become one markdown table for the docs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .helpers import ROOT


def _run(name: str, device: str, dtype: str, **info: object) -> dict[str, object]:
    return {"benchmarks": [{"name": name, "stats": {"median": 0.5}, "extra_info": {"device_name": device, "dtype": dtype, **info}}]}


def test_each_benchmark_of_each_run_is_a_row_with_its_device_and_ceiling_fraction(tmp_path: Path) -> None:
    a = tmp_path / "f32.json"
    b = tmp_path / "bf16.json"
    a.write_text(json.dumps(_run("test_encode[x-16384tok]", "NVIDIA H100 80GB HBM3", "float32", median_s=0.0123, tokens_per_s=1332000.4, gflops=50321.0, fraction_of_ceiling=0.8712, note="a | b")))
    b.write_text(json.dumps(_run("test_steer[x]", "NVIDIA H100 80GB HBM3", "bfloat16", tokens_per_s=41.26)))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_table.py"), str(a), str(b)], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0] == "| benchmark | device | dtype | median | tokens/s | GFLOP/s | of ceiling | notes |"
    assert lines[2] == "| `test_encode[x-16384tok]` | NVIDIA H100 80GB HBM3 | float32 | 12.3 ms | 1,332,000 | 50,321.0 | 0.87 | a / b |"
    assert lines[3] == "| `test_steer[x]` | NVIDIA H100 80GB HBM3 | bfloat16 | 500.0 ms | 41.3 | - | - |  |", lines[3]
    assert len(lines) == 4


def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_table.py"), str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith(f"bench_table: cannot read {bad}: "), r.stderr
    assert "Traceback" not in r.stderr

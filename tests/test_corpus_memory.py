"""A corpus pass streams: peak memory at 4x the token budget stays within 10% of the peak at 1x."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import BUNDLED_TARGET

pytestmark = pytest.mark.slow

CASE = """\
texts:
  heldout: {{corpus: {{bundled: tiny-stdlib-heldout, tokens: {tokens}, context: 128}}}}
cases:
  - id: streamed
    on: heldout
    expect:
      - explained_variance: {{min: -1000}}
      - dead_fraction: {{max: 1}}
      - kl_div: {{max: 1000}}
"""


def peak_rss_kib(tmp_path: Path, tokens: int) -> tuple[int, str]:
    case = tmp_path / f"c{tokens}.yaml"
    case.write_text(BUNDLED_TARGET + CASE.format(tokens=tokens))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(case), "-q", "-p", "no:cacheprovider", "--interp-batch-tokens", "2048"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return usage.ru_maxrss, out


def test_peak_memory_does_not_grow_with_the_token_budget(tmp_path: Path) -> None:
    small, out_small = peak_rss_kib(tmp_path, 6000)
    large, out_large = peak_rss_kib(tmp_path, 24000)
    assert "tokens in" in out_small and "tokens in" in out_large
    assert large <= small * 1.10, f"peak RSS {small} KiB at 6,000 tokens, {large} KiB at 24,000"

"""--interp-keep-memory: freed tensors are reused without page faults; the cases run the same."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from .helpers import case_file

FAULTS = """
import resource, sys
import torch
if sys.argv[1] == "keep":
    from interp_tests.memory import keep_freed_memory
    why = keep_freed_memory()
    assert why is None, why
t = torch.empty(50_000_000).fill_(1.0)  # 200 MB, freed below
del t
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = torch.empty(50_000_000).fill_(2.0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
def test_a_freed_large_tensor_is_reused_without_page_faults() -> None:
    faults = {mode: int(subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True).stdout) for mode in ("default", "keep")}
    assert faults["default"] > 20_000, faults  # 200 MB of fresh pages: ~49k faults of 4 KiB
    assert faults["keep"] < 2_000, faults


def test_the_option_shows_in_the_header_and_changes_no_observed_value(pytester: pytest.Pytester) -> None:
    case_file(pytester, "m", 'texts:\n  t: ["def add(a, b):\\n    return a + b"]\ncases:\n  - id: a\n    on: t\n    expect:\n      - explained_variance: {min: -100}\n      - l0: {min: 0}\n')
    values = []
    for args in ((), ("--interp-keep-memory",)):
        xml = pytester.path / f"j{len(values)}.xml"
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={xml}", *args)
        result.assert_outcomes(passed=1)
        header = [line for line in result.stdout.str().splitlines() if line.startswith("interp-tests: device=")]
        assert header and header[0].endswith(" keep-memory") == bool(args), result.stdout.str()
        values.append({p.get("name"): p.get("value") for p in ET.parse(xml).getroot().iter("property") if p.get("name", "").endswith(".observed")})
    assert values[0] == values[1] and len(values[0]) == 2

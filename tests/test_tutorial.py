"""README's tutorial "Finding a feature and pinning it as a test", run command by command as written."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.slow


def tutorial_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- tutorial:begin -->\n```bash\n(.*?)```\n<!-- tutorial:end -->", readme, re.S)
    assert block, "README.md has no tutorial block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["HF_HUB_OFFLINE"] = "1"
    outputs = []
    for command in tutorial_commands():
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    inspect, feature, _draft, passed, _sed, failed, report = outputs
    assert "'('" in inspect and "#871" in inspect
    assert "871" in feature and "density" in feature.lower() and "[[(]]" in feature, feature  # the max token highlighted
    assert "feat_871" in (tmp_path / "brackets.yaml").read_text()
    assert "1 passed" in passed
    assert "1 failed" in failed and "silent [feat_871 = #871]: observed 0.0000, expected max activation <= -1.0000 on every text" in failed
    assert "### Failed cases" in report and "silent" in report
    html = (tmp_path / "report.html").read_text()
    assert "feat_871" in html and "FAIL" in html

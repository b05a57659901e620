"""README's tutorial "Finding a feature and pinning it as a test", run command by command as written.

The commands run in this process (the `interp-tests` ones through the console script's own `main`, the
`pytest` ones through pytester's in-process run, anything else (sed, cat) as a plain subprocess) so that the tutorial costs
seconds, not a fresh interpreter per step; the installed console script itself is run once, as a user
would.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from interp_tests.explore.cli import main as interp_tests_main

from .helpers import ROOT

VENV_BIN = ".venv/bin/"


def tutorial_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- tutorial:begin -->\n```bash\n(.*?)```\n<!-- tutorial:end -->", readme, re.S)
    assert block, "README.md has no tutorial block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


@dataclass
class Step:
    """One tutorial line split the way bash would: argv, an optional `> FILE`, an optional `|| true`."""

    argv: list[str]
    stdout_to: str | None
    may_fail: bool

    @classmethod
    def parse(cls, command: str) -> Step:
        words = shlex.split(command)
        may_fail = words[-2:] == ["||", "true"]
        if may_fail:
            words = words[:-2]
        stdout_to = None
        if len(words) >= 2 and words[-2] == ">":
            stdout_to, words = words[-1], words[:-2]
        assert not any(w in ("|", "&&", ";", ">", "<", "||") for w in words), f"the tutorial runner does not handle: {command}"
        return cls(words, stdout_to, may_fail)


def run_step(command: str, pytester: pytest.Pytester) -> tuple[int, str]:
    step = Step.parse(command)
    program, args = step.argv[0], step.argv[1:]
    if program == VENV_BIN + "interp-tests":
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = interp_tests_main(args)
            except SystemExit as exc:
                code = int(exc.code or 0)
        stdout, stderr = out.getvalue(), err.getvalue()
    elif program == VENV_BIN + "pytest":
        result = pytester.runpytest_inprocess(*args)
        code, stdout, stderr = int(result.ret), result.stdout.str(), result.stderr.str()
    else:
        assert not program.startswith(VENV_BIN), f"the tutorial runner does not know {program}"
        done = subprocess.run(step.argv, cwd=pytester.path, capture_output=True, text=True, timeout=60)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    if step.stdout_to is not None:
        (pytester.path / step.stdout_to).write_text(stdout)
    assert code == 0 or step.may_fail, f"{command}\nexit {code}\n{stdout}\n{stderr}"
    return code, stdout


def test_the_tutorial_runs_as_written(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import, already done here
    outputs = [run_step(command, pytester)[1] for command in tutorial_commands()]
    inspect, feature, _draft, passed, _sed, failed, report = outputs
    assert "'('" in inspect and "#871" in inspect
    assert "871" in feature and "density" in feature.lower() and "[[(]]" in feature, feature  # the max token highlighted
    assert "feat_871" in (pytester.path / "brackets.yaml").read_text()
    assert "1 passed" in passed
    assert "1 failed" in failed and "silent [feat_871 = #871]: observed 0.0000, expected max activation <= -1.0000 on every text" in failed
    quoted = re.search(r"The failure names the line of the broken claim \(`([^`]*)`", (ROOT / "README.md").read_text())
    assert quoted, "README no longer quotes the failure after the tutorial"
    assert " ".join(quoted.group(1).split()) in " ".join(failed.split()), (quoted.group(1), failed)  # README quotes it as printed
    assert "### Failed cases" in report and "silent" in report
    html = (pytester.path / "report.html").read_text()
    assert "feat_871" in html and "FAIL" in html


def test_the_step_parser_reads_redirections_and_or_true() -> None:
    step = Step.parse('.venv/bin/interp-tests draft --positive "a b" --negative c > out.yaml')
    assert step == Step([".venv/bin/interp-tests", "draft", "--positive", "a b", "--negative", "c"], "out.yaml", False)
    assert Step.parse(".venv/bin/pytest x.yaml --interp-md r.md || true") == Step([".venv/bin/pytest", "x.yaml", "--interp-md", "r.md"], None, True)
    with pytest.raises(AssertionError, match="does not handle"):
        Step.parse("cat a | head")


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "interp-tests"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run([str(script), "inspect", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: interp-tests inspect"), done.stdout[:200]

"""The rooms' import direction holds (import-linter's contracts in pyproject.toml), and an upward import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

ROOMS = ("common", "cases", "compute", "checks", "baselines", "report", "run", "explore", "pytest_plugin", "benchmarks")


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    script = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='pyproject.toml'))"
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120)


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "interp_tests", tmp_path / "interp_tests", ignore=shutil.ignore_patterns("bundled", "data", "__pycache__"))
    return tmp_path


def test_every_room_has_a_docstring_that_says_what_it_may_import() -> None:
    for room in ROOMS:
        init = ROOT / "interp_tests" / room / "__init__.py"
        doc = init.read_text()
        assert doc.startswith('"""') and ("May import" in doc or "may import" in doc), f"{init}: its docstring must say what the room may import"


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_the_layers_hold(tmp_path: Path) -> None:
    done = lint_imports(copy_of_the_package(tmp_path), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path)
    schema = root / "interp_tests" / "cases" / "schema.py"
    schema.write_text(schema.read_text() + "\nfrom ..run import session  # noqa: E402,F401  (upward: cases -> run)\n")
    done = lint_imports(root, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "interp_tests.cases is not allowed to import interp_tests.run" in done.stdout


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_pytest_stays_in_the_pytest_layer(tmp_path: Path) -> None:
    root = copy_of_the_package(tmp_path)
    engine = root / "interp_tests" / "compute" / "engine.py"
    engine.write_text(engine.read_text() + "\nimport pytest  # noqa: E402,F401\n")
    done = lint_imports(root, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "interp_tests.compute.engine -> pytest" in done.stdout

"""pytest hooks, options and fixtures of interp-tests (the pytest11 entry point). Declares and wires only."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from .items import STATE, BaselineRecorder, CaseFile
from .session import Options, Override, Session, parse_override

DTYPE_CHOICES = ("float32", "float16", "bfloat16", "float64")


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r} (expected a positive integer)") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r} (expected a positive integer)")
    return n


def _non_negative_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r} (expected a number >= 0)") from None
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r} (expected a number >= 0)")
    return x


def _dtype(value: str) -> str:
    if value not in DTYPE_CHOICES:
        raise argparse.ArgumentTypeError(f"Could not parse value: {value!r} (expected one of {', '.join(DTYPE_CHOICES)})")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("interp", "interp-tests: SAE interpretability claims as tests")
    group.addoption("--interp-device", default=None, help="torch device for models and SAEs: auto (CUDA when available, else CPU), cpu, cuda, cuda:N. ini: interp_device")
    group.addoption("--interp-dtype", default=None, type=_dtype, help=f"dtype for models and SAEs: {', '.join(DTYPE_CHOICES)} (default float32). ini: interp_dtype")
    group.addoption("--interp-offline", action="store_true", default=None, help="never contact the model hub: use the local HF cache only (sets HF_HUB_OFFLINE=1), so a missing model fails at once")
    group.addoption("--interp-batch-tokens", type=positive_int, default=None, help="padded tokens per forward batch (default: 4096 on CPU, 65536 on CUDA)")
    group.addoption("--interp-sae", action="append", default=[], metavar="[HOOK=]SPEC", help="run every case against this SAE instead (PATH to a SAELens-format directory, or RELEASE:ID); with HOOK=, only the targets at that hook. Repeatable")
    group.addoption("--interp-update", action="store_true", default=False, help="record every observed value into <case file>.baseline.json next to each case file (written atomically at the end of the run)")
    group.addoption("--interp-compare", action="store_true", default=False, help="fail a check whose observed value drifts from its baseline by more than --interp-tolerance")
    group.addoption("--interp-tolerance", type=_non_negative_float, default=1e-3, help="absolute drift allowed by --interp-compare (default 1e-3); a check's own baseline: {tolerance} wins")
    parser.addini("interp_cases", type="args", default=["cases"], help="directories whose *.yaml / *.yml files are case files (relative to the rootdir)")
    parser.addini("interp_device", default="auto", help="default for --interp-device")
    parser.addini("interp_dtype", default="float32", help="default for --interp-dtype")
    parser.addini("interp_offline", type="bool", default=False, help="default for --interp-offline")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interp: a case collected from an interp-tests YAML case file")
    offline = config.getoption("interp_offline") or config.getini("interp_offline")
    if offline:
        from .registry import go_offline  # imports nothing heavy

        go_offline()
    config.stash[STATE] = Session(
        Options(
            device=config.getoption("interp_device") or config.getini("interp_device"),
            dtype=config.getoption("interp_dtype") or _dtype_ini(config),
            batch_tokens=config.getoption("interp_batch_tokens"),
            offline=bool(offline),
            overrides=tuple(_override(v, config.invocation_params.dir) for v in config.getoption("interp_sae")),
            update=config.getoption("interp_update"),
            compare=config.getoption("interp_compare"),
            tolerance=config.getoption("interp_tolerance"),
            worker=_worker_index(config),
        )
    )
    if not hasattr(config, "workerinput"):  # the controller (or a plain run) owns the baseline files
        config.pluginmanager.register(BaselineRecorder(config.getoption("interp_update")), "interp-baselines")


def _worker_index(config: pytest.Config) -> int | None:
    workerinput = getattr(config, "workerinput", None)  # set by pytest-xdist on its workers
    if workerinput is None:
        return None
    digits = "".join(c for c in str(workerinput.get("workerid", "")) if c.isdigit())
    return int(digits) if digits else None


def _override(value: str, cwd: Path) -> Override:
    try:
        return parse_override(value, cwd)
    except ValueError as exc:
        raise pytest.UsageError(f"--interp-sae: {exc}") from None


def _dtype_ini(config: pytest.Config) -> str:
    value = str(config.getini("interp_dtype"))
    if value not in DTYPE_CHOICES:
        raise pytest.UsageError(f"interp_dtype: Could not parse value: {value!r} (expected one of {', '.join(DTYPE_CHOICES)})")
    return value


def _explicit(config: pytest.Config) -> set[Path]:
    base = config.invocation_params.dir
    return {(base / str(a).split("::")[0]).resolve() for a in config.args}


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CaseFile | None:
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    config = parent.config
    resolved = file_path.resolve()
    dirs = [(config.rootpath / d).resolve() for d in config.getini("interp_cases")]
    if resolved in _explicit(config) or any(resolved.is_relative_to(d) for d in dirs):
        return CaseFile.from_parent(parent, path=file_path)
    return None


def pytest_report_header(config: pytest.Config) -> str:
    opts = config.stash[STATE].options
    return f"interp-tests: device={opts.device} dtype={opts.dtype}" + (" offline" if opts.offline else "")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[STATE]
    for line in state.summary():
        terminalreporter.write_line(line)
    reports = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, []) if getattr(r, "when", "") == "call"]
    recorder = config.pluginmanager.get_plugin("interp-baselines")
    for line in recorder.summary() if recorder is not None else []:
        terminalreporter.write_line(line)
    missing = [v for r in reports for k, v in r.user_properties if k == "interp.baseline_missing"]
    if missing:
        terminalreporter.write_line(f"interp-tests: {len(missing)} checks have no baseline yet (record them with --interp-update):", yellow=True)
        for line in missing[:10]:
            terminalreporter.write_line(f"  {line}", yellow=True)
    bound = [v for r in reports for k, v in r.user_properties if k == "interp.index_bound"]
    if bound:
        terminalreporter.write_line(f"interp-tests: WARNING {len(bound)} checks are index-bound: plain feature indices do not survive retraining (use most_active_on selectors):", yellow=True)
        for line in bound[:20]:
            terminalreporter.write_line(f"  {line}", yellow=True)
        if len(bound) > 20:
            terminalreporter.write_line(f"  ... {len(bound) - 20} more", yellow=True)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def interp_session(pytestconfig: pytest.Config) -> Session:
    """The session's interp-tests state: `.registry` loads models/SAEs once, `.engine(key)` serves checks."""
    return pytestconfig.stash[STATE]


@pytest.fixture(scope="session")
def interp_registry(interp_session: Session) -> Any:
    """The process-wide Registry: `.model(name)`, `.sae(SaeRef(...))`, on --interp-device/--interp-dtype."""
    return interp_session.registry


@pytest.fixture(scope="session")
def interp_sae(interp_registry: Any) -> Any:
    """The bundled SAE (tiny-stdlib-res / blocks.1.hook_resid_pre), loaded once per session."""
    from .schema import SaeRef

    return interp_registry.sae(SaeRef(release="tiny-stdlib-res", id="blocks.1.hook_resid_pre"))


@pytest.fixture(scope="session")
def interp_model(interp_registry: Any) -> Any:
    """The bundled model (tiny-stdlib), loaded once per session."""
    return interp_registry.model("tiny-stdlib")

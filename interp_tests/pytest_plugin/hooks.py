"""pytest hooks, options and fixtures of interp-tests (the pytest11 entry point). Declares and wires only."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from ..common.echo import visible
from ..common.errors import InterpTestsError
from ..run import options as opts
from ..run.session import Session
from .items import STATE, CaseFile, CaseItem

if TYPE_CHECKING:
    from ..cases.discovery import NamedPaths
    from ..run.candidates import Candidate

T = TypeVar("T")


def argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An option parser for argparse: our ValueError's message becomes the usage error's."""

    def parse_argument(value: str) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse_argument.__name__ = parse.__name__
    return parse_argument


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("interp", "interp-tests: SAE interpretability claims as tests")
    group.addoption("--interp-device", default=None, help="torch device for models and SAEs: auto (CUDA when available, else CPU), cpu, cuda, cuda:N. ini: interp_device")
    group.addoption("--interp-dtype", default=None, type=argument(opts.dtype_name), help=f"dtype for models and SAEs: {', '.join(opts.DTYPES)} (default float32). ini: interp_dtype")
    group.addoption("--interp-offline", action="store_true", default=None, help="never contact the model hub: use the local HF cache only (sets HF_HUB_OFFLINE=1), so a missing model fails at once")
    group.addoption("--interp-batch-tokens", type=argument(opts.positive_int), default=None, help="padded tokens per forward batch (default: 4096 on CPU, 65536 on CUDA)")
    group.addoption("--interp-sae", action="append", default=[], metavar="[HOOK=]SPEC", help="run every case on this candidate SAE instead of the case file's: a directory, a quoted glob of directories ('runs/*/final', sorted), or RELEASE:ID; with HOOK=, only where the case file's SAE reads HOOK. Repeat it for a sweep: each (case, candidate) is a test named case[LABEL]")
    group.addoption("--interp-update", action="store_true", default=False, help="record every observed value of the case files' own (reference) SAEs into <case file>.baseline.json (written atomically after a complete run)")
    group.addoption("--interp-promote", action="store_true", default=False, help="with --interp-sae and --interp-update: record the candidate's values as the new reference baseline")
    group.addoption("--interp-compare", action="store_true", default=False, help="compare every check with the reference's baseline: fail on drift beyond its tolerance, and on a missing baseline")
    group.addoption("--interp-tolerance", type=argument(opts.tolerance), default=None, help="one absolute drift tolerance for every compared number (default: per kind of check, see docs/CASES.md), or auto: a drift is a difference beyond the measurements' 95%% intervals (paired bootstrap when the reference runs too); a check's own baseline: wins")
    group.addoption("--interp-memory", type=argument(opts.gigabytes), default=None, metavar="GB", help="SAE weights held at once: a sweep's checkpoints load in groups that fit (their cases run together, one corpus pass per group) and are released after their group (default: half the memory free at the start, of the GPU on CUDA)")
    group.addoption("--interp-prefetch", action="store_true", default=False, help="load every model and SAE the selected cases need (downloading them into the local HF cache), run no case, and exit 0; for a CI step that warms the cache")
    group.addoption("--interp-md", default=None, metavar="FILE", help="write the run's summary as Markdown to FILE at the end (failed cases, the drift table): for a pull-request comment or $GITHUB_STEP_SUMMARY")
    group.addoption("--interp-json", default=None, metavar="FILE", help="write the whole run as one JSON document to FILE at the end (every case, check, observed value, verdict, checkpoint, corpus hash, drift row and the leaderboard; schema in docs/JSON.md), atomically; - for standard output")
    group.addoption("--interp-html", default=None, metavar="FILE", help="write the run as one self-contained HTML file to FILE at the end (cases, checks, per-token heatmaps, steering, drift, the sparsity-vs-reconstruction plot)")
    group.addoption("--interp-ray", default=None, type=argument(opts.ray_address), metavar="ADDRESS", help="run the cases on a Ray cluster, one task per load group: local (start Ray here), auto (the cluster Ray finds), HOST:PORT or ray://HOST:PORT; collection, baselines and reports stay here. Needs pip install \"interp-tests[ray]\"")
    group.addoption("--interp-ray-cpus", type=argument(opts.positive_int), default=1, metavar="N", help="with --interp-ray on CPUs: CPUs (and torch threads) per task (default 1); on CUDA each task takes one GPU")
    group.addoption("--interp-ray-retries", type=argument(opts.non_negative_int), default=3, metavar="N", help="with --interp-ray: times Ray retries a task whose node or worker was lost (default 3)")
    group.addoption("--interp-ray-ship", type=argument(opts.megabytes), default=1024.0, metavar="MB", help="with --interp-ray: local checkpoints and corpus files sent to the workers, at most MB in all (default 1024); beyond it the workers read them in place (a shared filesystem)")
    parser.addini("interp_cases", type="args", default=["cases"], help="directories whose *.yaml / *.yml files are case files (relative to the rootdir)")
    parser.addini("interp_device", default="auto", help="default for --interp-device")
    parser.addini("interp_dtype", default="float32", help="default for --interp-dtype")
    parser.addini("interp_offline", type="bool", default=False, help="default for --interp-offline")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "interp: a case collected from an interp-tests YAML case file")
    offline = config.getoption("interp_offline") or config.getini("interp_offline")
    if offline:
        from ..compute.registry import go_offline  # imports nothing heavy

        go_offline()
    candidates = _candidates(config.getoption("interp_sae"), config.invocation_params.dir)
    update, promote = config.getoption("interp_update"), config.getoption("interp_promote")
    if promote and len(candidates) > 1:
        raise pytest.UsageError(
            f"--interp-promote makes one candidate the new reference, and this run has {len(candidates)} "
            f"({', '.join(c.label for c in candidates[:6])}{', ...' if len(candidates) > 6 else ''}): give exactly one --interp-sae"
        )
    if update and candidates and not promote:
        raise pytest.UsageError(
            "--interp-update records the reference's values (the SAE each case file names), not a candidate's: "
            "drop --interp-sae to record the reference, or add --interp-promote to make the candidate the new reference"
        )
    if promote and not (update and candidates):
        raise pytest.UsageError("--interp-promote goes with --interp-sae CANDIDATE and --interp-update")
    from ..run.candidates import checkpoints_among_test_paths

    stray = checkpoints_among_test_paths(named_args(config), config.invocation_params.dir, candidates)
    if stray is not None:
        raise pytest.UsageError(stray)
    config.stash[STATE] = Session(
        opts.Options(
            device=config.getoption("interp_device") or config.getini("interp_device"),
            dtype=config.getoption("interp_dtype") or _dtype_ini(config),
            batch_tokens=config.getoption("interp_batch_tokens"),
            offline=bool(offline),
            candidates=candidates,
            update=update,
            compare=config.getoption("interp_compare"),
            tolerance=config.getoption("interp_tolerance"),
            memory_gb=config.getoption("interp_memory"),
            worker=_worker_index(config),
            ray=config.getoption("interp_ray"),
            ray_cpus=config.getoption("interp_ray_cpus"),
            ray_retries=config.getoption("interp_ray_retries"),
            ray_ship_mb=config.getoption("interp_ray_ship"),
        )
    )
    if config.getoption("interp_ray") is not None:
        _join_cluster(config)
    config.pluginmanager.register(ReportRelay(config.stash[STATE]), "interp-tests-relay")
    for line in rootdir_warnings(config):
        config.issue_config_time_warning(pytest.PytestConfigWarning(line), stacklevel=2)


def _join_cluster(config: pytest.Config) -> None:
    """--interp-ray: refused with xdist (Ray spreads the work; xdist would start a driver per worker), else the
    cluster is started or joined now, so that a wrong address fails before collection, in one line."""
    from ..run.cluster import join
    from ..run.ray_connect import ClusterError

    if getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):
        raise pytest.UsageError("--interp-ray spreads the cases over the Ray cluster; drop -n (pytest-xdist), which cannot be combined with it")
    try:
        join(config.stash[STATE])
    except ClusterError as exc:
        raise pytest.UsageError(str(exc)) from None


PATH_OPTIONS = ("--interp-sae", "--interp-md", "--interp-html", "--interp-json")


def rootdir_warnings(config: pytest.Config) -> list[str]:
    """pytest picks its rootdir from the paths on the command line before it loads plugins, so the value of an
    option written `--interp-sae PATH` (not `--interp-sae=PATH`) counts as a test path (pytest issue #8846)
    and can move the rootdir up to a common ancestor: node ids, JUnit class names and .pytest_cache move with it."""
    args = [str(a) for a in config.invocation_params.args]
    cwd, root = config.invocation_params.dir, config.rootpath
    out = []
    for option, value in zip(args, args[1:]):
        if option not in PATH_OPTIONS or value.startswith("-"):
            continue
        try:
            path = (cwd / value).resolve()
            if not path.exists() or path.is_relative_to(cwd.resolve()):
                continue
        except (OSError, ValueError):
            continue
        if path.is_relative_to(root) and not cwd.resolve() == root:
            out.append(
                f"interp-tests: `{option} {value}` names a path outside {cwd}, and pytest takes it into its rootdir ({root}) "
                f"before plugins load (pytest issue #8846): write `{option}={value}` to keep the rootdir where it was"
            )
    return out


def pytest_sessionstart(session: pytest.Session) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not hasattr(session.config, "workerinput"):
        session.config.stash[STATE].progress = lambda line: reporter.write_line(line)


def _worker_index(config: pytest.Config) -> int | None:
    workerinput = getattr(config, "workerinput", None)  # set by pytest-xdist on its workers
    if workerinput is None:
        return None
    digits = "".join(c for c in str(workerinput.get("workerid", "")) if c.isdigit())
    return int(digits) if digits else None


def _candidates(values: list[str], cwd: Path) -> tuple[Candidate, ...]:
    from ..run.candidates import expand

    try:
        return expand(values, cwd)
    except ValueError as exc:
        raise pytest.UsageError(f"--interp-sae: {exc}") from None


def _dtype_ini(config: pytest.Config) -> str:
    try:
        return opts.dtype_name(str(config.getini("interp_dtype")))
    except ValueError as exc:
        raise pytest.UsageError(f"interp_dtype: {exc}") from None


def named_args(config: pytest.Config) -> list[str]:
    """Paths the user named (command line or testpaths); a bare `pytest` names none."""
    if config.args_source == pytest.Config.ArgsSource.INVOCATION_DIR:
        return []
    return [str(a) for a in config.args]


COLLECTED = pytest.StashKey[set[Path]]()  # every case file collected, valid or not, whatever -k selects
NAMED = pytest.StashKey["NamedPaths"]()


def named(config: pytest.Config) -> NamedPaths:
    """The command line's paths and the interp_cases directories, resolved once per session."""
    from ..cases.discovery import NamedPaths

    if NAMED not in config.stash:
        dirs = [(config.rootpath / d).resolve() for d in config.getini("interp_cases")]
        config.stash[NAMED] = NamedPaths.of(config.invocation_params.dir, named_args(config), dirs)
    return config.stash[NAMED]


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A directory that holds several paths named on the command line is collected once: pytest re-collects
    the directory of each file named in it, which made naming n files cost n^2 file visits."""
    if named(parent.config).parents[path.resolve()] < 2:
        return None
    from .collectors import collected_once

    return collected_once(path, parent)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> CaseFile | None:
    from ..cases.discovery import is_case_file

    config = parent.config
    if not is_case_file(file_path, named(config)):
        return None
    config.stash.setdefault(COLLECTED, set()).add(file_path)
    if file_path.resolve().is_relative_to(config.rootpath.resolve()):
        return CaseFile.from_parent(parent, path=file_path)
    # outside the rootdir pytest would name it by nothing ("::case"): name it as the user typed it
    return CaseFile.from_parent(parent, path=file_path, nodeid=os.path.relpath(file_path, config.invocation_params.dir))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Plan the batched forward passes from the cases that survived -k / -m deselection."""
    state = config.stash[STATE]
    cases = [item for item in items if isinstance(item, CaseItem)]
    if config.getoption("interp_prefetch"):
        try:
            keys = [item.plan.target for item in cases]
            state.prefetched = state.cluster.prefetch(keys) if state.cluster is not None else state.prefetch(keys)
        except InterpTestsError as exc:
            pytest.exit(f"interp-tests: --interp-prefetch could not load a target: {exc}", returncode=pytest.ExitCode.TESTS_FAILED)
        config.hook.pytest_deselected(items=list(items))
        items[:] = []
        return
    try:
        order = state.prepare([item.plan for item in cases])
    except InterpTestsError as exc:  # the cluster refused the work (no GPU for --interp-device cuda, ...)
        raise pytest.UsageError(str(exc)) from None
    if order != list(range(len(cases))):  # several load groups: each group's cases run together
        rank = {id(cases[i]): n for n, i in enumerate(order)}
        items.sort(key=lambda item: (0, rank[id(item)]) if id(item) in rank else (1, 0))


def pytest_collection_finish(session: pytest.Session) -> None:
    from ..cases.discovery import empty_directories

    collected = session.config.stash.get(COLLECTED, set())
    for line in empty_directories(named(session.config).dirs, collected):
        session.config.issue_config_time_warning(pytest.PytestConfigWarning(line), stacklevel=2)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    if isinstance(item, CaseItem) and call.when == "call" and item.interp is not None:
        report = outcome.get_result()
        report.interp = item.interp  # plain data in report.__dict__: xdist ships it to the controller
        notes = item.interp["result"].get("notes") or []
        if notes:
            report.sections.append(("interp-tests", "\n".join(visible(n) for n in notes)))


class ReportRelay:
    """Hands each finished case's report data to the session's summary (also the reports of xdist workers)."""

    def __init__(self, state: Session) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        interp = getattr(report, "interp", None)
        if interp is not None and report.when == "call":
            self.state.run.absorb(interp)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadgroup` groups the cases of one model on one worker even where xdist's group suffix is lost."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from .scheduling import CaseModelScheduling

    return CaseModelScheduling(config, log)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_keyboard_interrupt(excinfo: pytest.ExceptionInfo[BaseException]) -> Generator[None, None, None]:
    """pytest formats the interrupted traceback; a Ctrl-C that lands inside an import (the first case imports
    TransformerLens and SAELens) leaves a frame without a line number, and that formatting raises TypeError
    inside pytest. The run is reported as interrupted all the same, without that traceback."""
    try:
        return (yield)
    except TypeError:
        return None


def pytest_report_header(config: pytest.Config) -> str:
    o = config.stash[STATE].options
    return f"interp-tests: device={o.device} dtype={o.dtype}" + (" offline" if o.offline else "")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller owns the baseline files
    state = session.config.stash[STATE]
    complete = exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not session.shouldstop and not session.shouldfail
    try:
        failed = state.finish(complete)
        state.close()
        cwd = session.config.invocation_params.dir
        for option, write in (("interp_md", state.run.write_markdown), ("interp_html", state.run.write_html)):
            given = session.config.getoption(option)
            if given:
                failed |= write(output_path(given, cwd), state.summary())
        given = session.config.getoption("interp_json")
        if given:
            failed |= state.run.write_json(output_path(given, cwd), state.summary(), state.options.describe(), complete)
    except KeyboardInterrupt:  # Ctrl-C while the reports were written: what was written is said, no traceback
        state.run.finished.append("interp-tests: interrupted while writing the reports")
        session.exitstatus = pytest.ExitCode.INTERRUPTED
        return
    if state.baselines.interrupted:
        session.exitstatus = pytest.ExitCode.INTERRUPTED
        return
    if session.config.getoption("interp_prefetch") and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK  # nothing was meant to run
    if failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a file that could not be written fails the run


def output_path(given: str, cwd: Path) -> Path | str:
    """An output option's value: `-` is standard output, anything else a path from where pytest ran."""
    return given if given == "-" else cwd / given


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash[STATE]
    for line in [*state.prefetched, *state.summary()]:
        terminalreporter.write_line(visible(line))
    for line, color in state.run.lines():
        terminalreporter.write_line(visible(line), **({color: True} if color else {}))


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
    from ..cases.schema import SaeRef

    return interp_registry.sae(SaeRef(release="tiny-stdlib-res", id="blocks.1.hook_resid_pre"))


@pytest.fixture(scope="session")
def interp_model(interp_registry: Any) -> Any:
    """The bundled model (tiny-stdlib), loaded once per session."""
    return interp_registry.model("tiny-stdlib")

"""`evaluate(cases, saes=None, model=None, **options) -> Results`: run case files on checkpoints from Python.

    import interp_tests
    results = interp_tests.evaluate("cases/claims.yaml", saes="runs/*/final", compare=True)
    results.ok, results.failures(), results.leaderboard(), results.to_pandas()

- `cases`: case-file paths (or directories holding them), or case files already read (`load_case_file`).
- `saes` (optional: the case files' own SAEs when omitted): what `--interp-sae` takes (a directory, a glob,
  `RELEASE:ID`, `HOOK=` before one), or in-memory SAELens `SAE` objects (a training loop passes the SAE it is
  training: it is read as it is at the call, never changed); a list of them, or a mapping {label: one of them}.
- `model` (optional): an in-memory `HookedTransformer` used in place of the model the case files name.
- options, as on the command line: compare, update, promote, tolerance, device, dtype, batch_tokens, memory
  (GB), offline, json (a path to write the JSON document to), markdown, html (paths for those reports), ray
  (an address, as `--interp-ray` takes; a notebook that called `ray.init()` itself stays connected after the
  call), ray_cpus, ray_retries, ray_ship (MB). On a cluster, an in-memory model and in-memory SAEs travel to
  the workers through Ray's object store.

No pytest here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..cases.casefile import CaseFile, load_case_file
from ..cases.discovery import SUFFIXES, looks_like_case_file
from ..cases.schema import SaeRef
from ..common.errors import InputError
from ..run.candidates import Candidate, expand, unique_labels
from ..run.options import Options, dtype_name
from ..run.plans import case_plans
from ..run.session import NotThisHook, Session
from .results import Results

OPTIONS = (
    "compare", "update", "promote", "tolerance", "device", "dtype", "batch_tokens", "memory", "offline", "json", "markdown", "html",
    "ray", "ray_cpus", "ray_retries", "ray_ship",
)
IN_MEMORY = "in-memory"  # the release of SAEs handed over as objects


def evaluate(cases: Any, saes: Any = None, model: Any = None, **options: Any) -> Results:
    """Run every case of `cases` (on `saes` when given) and return the results; see the module's docstring."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(f"evaluate() got unknown option {unknown[0]!r}: the options are {', '.join(OPTIONS)}")
    candidates, objects = _candidates(saes)
    if options.get("promote") and len(candidates) != 1:
        raise InputError(f"promote=True makes one candidate the new reference: give exactly one in saes= (got {len(candidates)})")
    if options.get("update") and candidates and not options.get("promote"):
        raise InputError("update=True records the case files' own SAEs: drop saes=, or add promote=True to make the candidate the new reference")
    if options.get("offline"):
        from ..compute.registry import go_offline

        go_offline()
    session = Session(Options(
        device=str(options.get("device") or "auto"),
        dtype=dtype_name(str(options.get("dtype") or "float32")),
        batch_tokens=_positive(options.get("batch_tokens"), "batch_tokens", int),
        offline=bool(options.get("offline")),
        candidates=candidates,
        update=bool(options.get("update")),
        compare=bool(options.get("compare")),
        tolerance="auto" if options.get("tolerance") == "auto" else _tolerance(options.get("tolerance")),
        memory_gb=_positive(options.get("memory"), "memory", float),
        ray=_ray_address(options.get("ray")),
        ray_cpus=_positive(options.get("ray_cpus"), "ray_cpus", int) or 1,
        ray_retries=3 if options.get("ray_retries") is None else _positive(options.get("ray_retries"), "ray_retries", int, zero=True),
        ray_ship_mb=1024.0 if options.get("ray_ship") is None else _positive(options.get("ray_ship"), "ray_ship", float, zero=True),
    ))
    for ref, sae in objects.items():
        session.registry.injected_saes[ref] = sae
    if model is not None:
        session.registry.injected_model = model
    plans = [plan for spec, path in _case_files(cases) for _, plan in case_plans(session, spec, path)]
    try:
        if session.options.ray is not None:
            from ..run.cluster import join

            join(session)
        for i in session.prepare(plans):
            try:
                record = session.run_plan(plans[i])
            except NotThisHook:
                continue  # a HOOK= candidate at another hook: this case does not apply
            session.run.absorb(record.data)
        failed = session.finish(complete=True)
    finally:
        session.close()
    results = Results(session.run.document(session.summary(), session.options.describe(), complete=True), failed_writes=failed,
                      tasks=list(session.cluster.timings) if session.cluster is not None else [])
    for key, write in (("json", session.run.write_json), ("markdown", session.run.write_markdown), ("html", session.run.write_html)):
        if options.get(key):
            args = (session.summary(), session.options.describe(), True) if key == "json" else (session.summary(),)
            if write(Path(os.fspath(options[key])), *args):  # type: ignore[operator]
                results.problems.append(session.run.finished[-1])
    results.problems.extend(line for line in session.run.finished if "cannot" in line or "NOT" in line or "replaced no SAE" in line)
    return results


def _ray_address(value: Any) -> str | None:
    if value is None:
        return None
    from ..run.options import ray_address

    try:
        return ray_address(str(value))
    except ValueError as exc:
        raise InputError(f"evaluate(): ray: {exc}") from None


def _tolerance(value: Any) -> float | None:
    try:
        return _positive(value, "tolerance", float, zero=True)
    except InputError:
        raise InputError(f"evaluate(): tolerance must be a number >= 0 or \"auto\" (got {value!r})") from None


def _positive(value: Any, name: str, kind: type, zero: bool = False) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 if zero else value > 0) or value != value:
        raise InputError(f"evaluate(): {name} must be a {'non-negative' if zero else 'positive'} number (got {value!r})")
    return kind(value)


def _case_files(cases: Any) -> list[tuple[CaseFile, Path]]:
    """Case files from paths, directories (their YAML files that look like case files) or CaseFile objects."""
    items = [cases] if isinstance(cases, (str, os.PathLike, CaseFile)) else list(cases)
    out: list[tuple[CaseFile, Path]] = []
    for item in items:
        if isinstance(item, CaseFile):
            out.append((item, item.base / item.path.name))
            continue
        if not isinstance(item, (str, os.PathLike)):
            raise InputError(f"evaluate(): cases are case-file paths, directories or loaded case files (got {type(item).__name__})")
        path = Path(item)
        if path.is_dir():
            found = sorted(p for s in SUFFIXES for p in path.rglob(f"*{s}") if looks_like_case_file(p))
            if not found:
                raise InputError(f"evaluate(): {path} holds no case file (a case file has top-level target: and cases: keys)")
            out.extend((load_case_file(p), p) for p in found)
        else:
            out.append((load_case_file(path), path))
    return out


def _candidates(saes: Any) -> tuple[tuple[Candidate, ...], dict[SaeRef, Any]]:
    """Candidates from what --interp-sae takes and from in-memory SAE objects (which get a synthetic reference
    that only this run's registry resolves). Labels: the mapping's keys where given, else as --interp-sae
    makes them; in-memory SAEs without a key are `in-memory` (`in-memory-1`, ... for several)."""
    if saes is None:
        return (), {}
    labelled: list[tuple[str | None, Any]]
    if isinstance(saes, Mapping):
        labelled = [(str(k), v) for k, v in saes.items()]
    elif isinstance(saes, (str, os.PathLike)) or not isinstance(saes, Iterable):
        labelled = [(None, saes)]
    else:
        labelled = [(None, s) for s in saes]
    unnamed_objects = sum(1 for label, v in labelled if label is None and not isinstance(v, (str, os.PathLike)))
    found: list[tuple[SaeRef, str | None, str, str | None]] = []  # (sae, hook, given, label when fixed)
    objects: dict[SaeRef, Any] = {}
    for label, value in labelled:
        if isinstance(value, (str, os.PathLike)):
            try:
                named = expand([os.fspath(value)], Path.cwd())
            except ValueError as exc:
                raise InputError(f"evaluate(saes=...): {exc}") from None
            found.extend((c.sae, c.hook, c.given, label if len(named) == 1 else None) for c in named)
        elif hasattr(value, "encode") and hasattr(value, "cfg"):
            name = label or (IN_MEMORY if unnamed_objects == 1 else f"{IN_MEMORY}-{len(objects) + 1}")
            ref = SaeRef(release=IN_MEMORY, id=name)
            objects[ref] = value
            found.append((ref, None, name, name))
        else:
            raise InputError(f"evaluate(saes=...): expected checkpoint paths, globs, RELEASE:ID or SAELens SAE objects (got {type(value).__name__})")
    automatic = iter(unique_labels([sae for sae, _, _, fixed in found if fixed is None]))
    candidates = tuple(Candidate(sae, fixed if fixed is not None else next(automatic), hook, given) for sae, hook, given, fixed in found)
    labels = [c.label for c in candidates]
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice is not None:
        raise InputError(f"evaluate(saes=...): two checkpoints share the label {twice!r}: give them different labels (a mapping {{label: checkpoint}})")
    return candidates, objects

"""Candidate checkpoints from `--interp-sae` values (and the Python API's `saes=`): parsing, globs, labels.

A value is, in this order of precedence:
- an existing directory (`runs/lr=3e-4/final`: a directory always wins over the `HOOK=` reading);
- `HOOK=SPEC`: the candidates of SPEC replace only the SAEs read at HOOK (HOOK is a hook name such as
  `blocks.8.hook_resid_pre`; SPEC may itself hold `=`);
- a glob (`runs/*/final`, quoted so that the shell leaves it alone): every directory it matches, in sorted
  order; one that matches nothing is an error;
- `RELEASE:ID`: a SAELens registry SAE (or a bundled release).

Each candidate gets a short label for node ids (`claims.yaml::case[LABEL]`), reports and the leaderboard: a
directory's name, an SAE id; when two share one, their parents (or the release) are added until they differ.
The same checkpoint named twice is an error. No pytest here.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..cases.schema import SAE_FORMATS, SaeRef
from ..common.echo import echo
from ..common.files import path_problem

HOOK_NAME = re.compile(r"^(?:blocks\.\d+\.[\w.]*hook[\w.]*|hook_[\w.]+|[\w.]*hook_[\w.]+)$")
GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Candidate:
    """One checkpoint to run every case on, in place of the case files' own SAE (at `hook`, or at every hook)."""

    sae: SaeRef
    label: str
    hook: str | None = None
    given: str = ""  # the value as the user wrote it

    @property
    def path(self) -> str | None:
        return self.sae.path


def _is_dir(path: Path) -> bool:
    if path_problem(path):
        return False
    try:
        return path.is_dir()
    except OSError:
        return False


def parse_value(value: str, cwd: Path) -> list[tuple[SaeRef, str | None]]:
    """The checkpoints one `--interp-sae` value names, with their hook (None: every hook); ValueError with the
    reason when it names none."""
    if not value:
        raise ValueError("Could not parse value: '' (expected PATH, a glob, RELEASE:ID, or HOOK= before one of them)")
    if "\0" in value:
        raise ValueError(f"Could not parse value: {echo(value)} (it holds a NUL byte)")
    whole = cwd / value
    if _is_dir(whole):
        return [(SaeRef(path=str(whole.resolve())), None)]
    hook: str | None = None
    spec = value
    head, sep, rest = value.partition("=")
    if sep and HOOK_NAME.match(head):
        hook, spec = head, rest
        if not spec:
            raise ValueError(f"Could not parse value: {echo(value)} (nothing after {head}=: give PATH, a glob or RELEASE:ID)")
    return [(ref, hook) for ref in _spec(spec, cwd, value)]


def _spec(spec: str, cwd: Path, value: str) -> list[SaeRef]:
    target = cwd / spec
    if _is_dir(target):
        return [SaeRef(path=str(target.resolve()))]
    head, sep, rest = spec.partition(":")
    if sep and head in SAE_FORMATS:  # FORMAT:DIR (or a glob), checked before RELEASE:ID: no release is named like a format
        return [SaeRef(path=ref.path, format=cast(Any, head)) for ref in _spec(rest, cwd, value) if ref.path is not None] or _no_directory(rest, value)
    if GLOB_CHARS.search(spec):
        pattern = str(target) if not os.path.isabs(spec) else spec
        try:
            found = sorted(p for p in glob.glob(pattern, recursive=True) if _is_dir(Path(p)))
        except (OSError, ValueError) as exc:
            raise ValueError(f"Could not parse value: {echo(value)} (the glob cannot be read: {exc})") from None
        if not found:
            raise ValueError(f"the glob {echo(spec)} matches no directory (from {cwd}): check the pattern, and quote it so the shell leaves it alone")
        return [SaeRef(path=str(Path(p).resolve())) for p in found]
    release, sep, sae_id = spec.partition(":")
    if sep and release and sae_id:
        try:
            return [SaeRef(release=release, id=sae_id)]
        except ValueError as exc:  # pydantic: a release or id the schema refuses
            first = str(exc).splitlines()
            raise ValueError(f"Could not parse value: {echo(value)} ({first[2].strip() if len(first) > 2 else first[0]})") from None
    problem = path_problem(spec)
    why = f"the path {problem}" if problem else "not a directory, not a glob that matches one, and not RELEASE:ID"
    raise ValueError(f"Could not parse value: {echo(value)} ({why})")


def _no_directory(spec: str, value: str) -> list[SaeRef]:
    raise ValueError(f"Could not parse value: {echo(value)} ({echo(spec)} is not a directory)")


def expand(values: Sequence[str], cwd: Path) -> tuple[Candidate, ...]:
    """Every candidate the values name, labelled; ValueError (one line) for a value that names none, or for a
    checkpoint named twice at the same hook."""
    found: list[tuple[SaeRef, str | None, str]] = []
    seen: dict[tuple[SaeRef, str | None], str] = {}
    for value in values:
        for ref, hook in parse_value(value, cwd):
            if (ref, hook) in seen:
                raise ValueError(f"{ref.label} is given twice ({echo(seen[ref, hook])} and {echo(value)}): name each checkpoint once")
            seen[ref, hook] = value
            found.append((ref, hook, value))
    labels = unique_labels([ref for ref, _, _ in found])
    return tuple(Candidate(ref, label, hook, value) for (ref, hook, value), label in zip(found, labels))


def unique_labels(refs: Iterable[SaeRef]) -> list[str]:
    """Short labels: a directory's name or an SAE id, lengthened by parents (or the release) until unique."""
    refs = list(refs)
    parts = [_label_parts(ref) for ref in refs]
    depth = [1] * len(refs)
    while True:
        labels = [_with_format(ref, "/".join(p[-d:])) for ref, p, d in zip(refs, parts, depth)]
        clash = {label for label in labels if labels.count(label) > 1}
        if not clash:
            return labels
        grew = False
        for i, label in enumerate(labels):
            if label in clash and depth[i] < len(parts[i]):
                depth[i] += 1
                grew = True
        if not grew:  # the same label however long: number them
            return [f"{label}#{labels[:i].count(label) + 1}" if label in clash else label for i, label in enumerate(labels)]


def _label_parts(ref: SaeRef) -> list[str]:
    if ref.path is not None:
        return [p for p in Path(ref.path).parts if p not in ("/", "")] or [ref.path]
    return [str(ref.release), str(ref.id)]


def _with_format(ref: SaeRef, label: str) -> str:
    """A checkpoint of another library's format says so in its label: `sparsify:lr=3e-4/final`."""
    if ref.path is None:
        return label
    from ..compute.formats import format_of

    fmt = ref.format or format_of(Path(ref.path))
    return f"{fmt}:{label}" if fmt not in (None, "saelens") else label


def checkpoints_among_test_paths(args: Sequence[str], cwd: Path, candidates: Sequence[Candidate]) -> str | None:
    """One line when a path pytest was asked to collect is a checkpoint directory (it collects nothing): most
    often the shell's expansion of an unquoted `--interp-sae runs/*/final`, whose first match became the
    candidate and whose other matches became test paths, a run that would pass while testing one checkpoint."""
    from ..compute.formats import looks_like_checkpoint

    stray = []
    for arg in args:
        path = cwd / arg.split("::")[0]
        try:
            if looks_like_checkpoint(path):
                stray.append(arg)
        except OSError:
            continue
    if not stray:
        return None
    shown = ", ".join(stray[:3]) + (f" and {len(stray) - 3} more" if len(stray) > 3 else "")
    if candidates:
        return (f"{shown} {'is a checkpoint directory' if len(stray) == 1 else 'are checkpoint directories'}, not test paths: the shell expanded "
                f"an unquoted --interp-sae glob, so only its first match is a candidate; quote the glob (--interp-sae 'runs/*/final') "
                "or give each checkpoint its own --interp-sae")
    return f"{shown} {'is a checkpoint directory' if len(stray) == 1 else 'are checkpoint directories'}, not test paths: run case files on it with --interp-sae {stray[0]}"

"""Which YAML files are case files. No pytest here.

- every `*.yaml` / `*.yml` under the `interp_cases` directories (default `cases/`): errors in them are reported;
- a YAML file named on the command line, wherever it is;
- in a directory named on the command line, the YAML files that look like case files (top-level `target:` and
  `cases:` keys), so that `pytest my_claims/` collects them and `pytest .` leaves workflow files alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..common.files import is_regular_file

SUFFIXES = (".yaml", ".yml")
_TOP_KEY = re.compile(r"^(target|cases)\s*:", re.MULTILINE)
SNIFF_BYTES = 1 << 20


def named_paths(cwd: Path, args: Sequence[str]) -> list[Path]:
    """The paths named on the command line (node ids cut at `::`), resolved; a path that cannot be resolved
    (a NUL byte, a name too long) is left out: it names no case file."""
    out = []
    for a in args:
        try:
            out.append((cwd / a.split("::")[0]).resolve())
        except (OSError, ValueError):
            continue
    return out


@dataclass(frozen=True)
class NamedPaths:
    """What the command line names, resolved once per session: `is_case_file` is then a set lookup, however
    many files are named (pytest offers a directory's files once per file named in it)."""

    files: frozenset[Path]  # every named path (files and directories)
    dirs: tuple[Path, ...]  # the named directories
    case_dirs: tuple[Path, ...]  # the interp_cases directories
    parents: Counter[Path]  # directory -> how many named paths it holds directly

    @classmethod
    def of(cls, cwd: Path, args: Sequence[str], case_dirs: Iterable[Path]) -> NamedPaths:
        named = named_paths(cwd, args)
        return cls(frozenset(named), tuple(dict.fromkeys(p for p in named if p.is_dir())), tuple(case_dirs), Counter(p.parent for p in named))


def looks_like_case_file(path: Path) -> bool:
    if not is_regular_file(path):  # a FIFO named x.yaml would block the read
        return False
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False
    return {m.group(1) for m in _TOP_KEY.finditer(head)} == {"target", "cases"}


def is_case_file(path: Path, named: NamedPaths) -> bool:
    if path.suffix not in SUFFIXES:
        return False
    try:
        resolved = path.resolve()
    except (OSError, ValueError):
        return False
    if resolved in named.files or any(resolved.is_relative_to(d) for d in named.case_dirs):
        return True
    return any(resolved.is_relative_to(d) for d in named.dirs) and looks_like_case_file(path)


def empty_directories(named_dirs: Iterable[Path], collected: Iterable[Path]) -> list[str]:
    """For each directory named on the command line that holds YAML files but yielded no case: why not."""
    files = [p.resolve() for p in collected]
    out = []
    for d in named_dirs:
        if any(f.is_relative_to(d) for f in files):
            continue
        yaml = [p for s in SUFFIXES for p in d.rglob(f"*{s}") if not any(part.startswith(".") for part in p.relative_to(d).parts)]
        if yaml:
            out.append(
                f"interp-tests: none of the {len(yaml)} YAML files under {d} is a case file (a case file has top-level "
                "target: and cases: keys); name a file on the command line to see its errors"
            )
    return out

"""Which YAML files are case files. No pytest here.

- every `*.yaml` / `*.yml` under the `interp_cases` directories (default `cases/`): errors in them are reported;
- a YAML file named on the command line, wherever it is;
- in a directory named on the command line, the YAML files that look like case files (top-level `target:` and
  `cases:` keys), so that `pytest my_claims/` collects them and `pytest .` leaves workflow files alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

SUFFIXES = (".yaml", ".yml")
_TOP_KEY = re.compile(r"^(target|cases)\s*:", re.MULTILINE)
SNIFF_BYTES = 1 << 20


def named_paths(cwd: Path, args: Sequence[str]) -> list[Path]:
    """The paths named on the command line (node ids cut at `::`), resolved."""
    return [(cwd / a.split("::")[0]).resolve() for a in args]


def looks_like_case_file(path: Path) -> bool:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False
    return {m.group(1) for m in _TOP_KEY.finditer(head)} == {"target", "cases"}


def is_case_file(path: Path, cwd: Path, args: Sequence[str], case_dirs: Iterable[Path]) -> bool:
    if path.suffix not in SUFFIXES:
        return False
    resolved = path.resolve()
    named = named_paths(cwd, args)
    if resolved in named or any(resolved.is_relative_to(d) for d in case_dirs):
        return True
    return any(d.is_dir() and resolved.is_relative_to(d) for d in named) and looks_like_case_file(path)


def empty_directories(cwd: Path, args: Sequence[str], collected: Iterable[Path]) -> list[str]:
    """For each directory named on the command line that holds YAML files but yielded no case: why not."""
    files = [p.resolve() for p in collected]
    out = []
    for d in named_paths(cwd, args):
        if not d.is_dir() or any(f.is_relative_to(d) for f in files):
            continue
        yaml = [p for s in SUFFIXES for p in d.rglob(f"*{s}") if not any(part.startswith(".") for part in p.relative_to(d).parts)]
        if yaml:
            out.append(
                f"interp-tests: none of the {len(yaml)} YAML files under {d} is a case file (a case file has top-level "
                "target: and cases: keys); name a file on the command line to see its errors"
            )
    return out

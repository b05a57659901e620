"""Safe YAML 1.2 loading that keeps the line of every key path and rejects duplicate keys.

`load_yaml(path)` returns `Source(data, lines)`: `data` is plain Python (dict, list, str, int, float,
bool, None) and `lines` maps a key path such as `("cases", 0, "expect", 1, "fires", "min")` to its
1-based line in the file.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CaseFileError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Source:
    path: Path
    data: Any
    lines: Mapping[KeyPath, int] = field(default_factory=dict)

    def line_of(self, loc: KeyPath) -> int:
        """Line of the longest prefix of `loc` that has one (1 for the file itself)."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return 1


def format_loc(loc: KeyPath) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<file>"


def _plain(node: Any, loc: KeyPath, lines: dict[KeyPath, int]) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(node, CommentedMap):
        out = {}
        for key, value in node.items():
            # keys are always strings in a case file; a non-string key is kept as its text
            k = key if isinstance(key, str) else str(key)
            try:
                line, _ = node.lc.key(key)
                lines[(*loc, k)] = line + 1
            except (KeyError, TypeError):
                pass
            out[k] = _plain(value, (*loc, k), lines)
        return out
    if isinstance(node, CommentedSeq):
        out_list = []
        for i, value in enumerate(node):
            try:
                line, _ = node.lc.item(i)
                lines[(*loc, i)] = line + 1
            except (KeyError, TypeError, IndexError):
                pass
            out_list.append(_plain(value, (*loc, i), lines))
        return out_list
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, (datetime.date, datetime.datetime)):
        return node.isoformat()
    return node


def parse_yaml(text: str, path: Path) -> Source:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt", pure=True)
    yaml.version = (1, 2)
    try:
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark is not None and "<stream end>" in str(exc.problem or ""):
            mark = exc.context_mark  # an unclosed bracket or quote: point at where it opened
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            what = f"{exc.problem} {exc.context}".replace("\n", " ")
        if "duplicate key" in what:
            what += " (each key may appear once per mapping: remove or rename one)"
        raise CaseFileError([f"{path}:{line}: <file>: invalid YAML: {what}"]) from None
    except YAMLError as exc:
        raise CaseFileError([f"{path}:1: <file>: invalid YAML: {exc}"]) from None
    lines: dict[KeyPath, int] = {}
    return Source(path, _plain(raw, (), lines), lines)


def load_yaml(path: Path, display: Path | None = None) -> Source:
    shown = display or path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError([f"{shown}:1: <file>: cannot read the file: {exc}"]) from None
    return parse_yaml(text, shown)

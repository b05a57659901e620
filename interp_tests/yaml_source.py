"""Safe YAML 1.2 loading that keeps the line of every key path and rejects duplicate keys.

`load_yaml(path)` returns `Source(data, lines)`: `data` is plain Python (dict, list, str, int, float,
bool, None) and `lines` maps a key path such as `("cases", 0, "expect", 1, "fires", "min")` to its
1-based line in the file.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

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


class _Unsupported(Exception):
    def __init__(self, loc: KeyPath, what: str) -> None:
        super().__init__(what)
        self.loc, self.what = loc, what


def _plain(node: Any, loc: KeyPath, lines: dict[KeyPath, int]) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, TaggedScalar) and tag == "tag:yaml.org,2002:str":
        return str(node.value)  # `!!str 12`: an explicit string
    if tag is not None:
        _unsupported(loc, node, tag)
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
    _unsupported(loc, node, None)


def _unsupported(loc: KeyPath, node: Any, tag: str | None) -> NoReturn:
    if tag and tag.startswith("tag:yaml.org,2002:"):
        tag = "!!" + tag[len("tag:yaml.org,2002:") :]
    shown = f"a value tagged {tag}" if tag else f"a {type(node).__name__} value"
    raise _Unsupported(loc, f"{shown} is not supported: case files hold strings, numbers, true/false, lists and mappings (remove the tag or quote the value)")


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
        dup = re.search(r'found duplicate key "(.*?)" with value', what)
        if dup:
            what = f"duplicate key {dup.group(1)!r} (each key may appear once per mapping: remove or rename one)"
        raise CaseFileError([f"{path}:{line}: <file>: invalid YAML: {what}"]) from None
    except YAMLError as exc:
        raise CaseFileError([f"{path}:1: <file>: invalid YAML: {exc}"]) from None
    lines: dict[KeyPath, int] = {}
    try:
        data = _plain(raw, (), lines)
    except _Unsupported as exc:
        line = Source(path, None, lines).line_of(exc.loc)
        raise CaseFileError([f"{path}:{line}: {format_loc(exc.loc)}: {exc.what}"]) from None
    return Source(path, data, lines)


def load_yaml(path: Path, display: Path | None = None) -> Source:
    shown = display or path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError([f"{shown}:1: <file>: cannot read the file: {exc}"]) from None
    return parse_yaml(text, shown)

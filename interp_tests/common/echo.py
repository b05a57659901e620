"""`echo(value)`: a value quoted for an error message, capped so that no input makes a message long.

Messages quote the bad value with `repr()` so that spaces, newlines and control characters are visible;
a case file can hold a 1 MB string, a 5,000-digit number or a list of thousands of entries, and an error
that quotes it must still fit on a line. `echo` is `repr` for short values; a long string shows its
first characters and its length, `'aaaa...' (1,000,000 characters)`; a list or mapping shows its first
entries and how many there are. Standard library only: message code imports it for free.
"""

from __future__ import annotations

from typing import Any

LIMIT = 60  # characters of a string shown before it is cut
ITEMS = 4  # entries of a list or mapping shown
DEPTH = 2  # levels of nested lists and mappings shown
_MAX_DIGITS = 4000  # below Python's int-to-str limit (4300 digits): longer integers are not converted


def echo(value: Any, limit: int = LIMIT) -> str:
    """`repr(value)`, capped: long strings, numbers and collections are cut and say how long they are."""
    return _echo(value, limit, DEPTH)


def visible(text: str, keep: str = "") -> str:
    """`text` with every control character (C0, DEL, C1; tab and newline too, unless in `keep`) written as its
    escape (`\\x1b`, `\\n`), so that nothing from a case file or a model reaches a terminal raw."""
    if not any(_is_control(c) and c not in keep for c in text):
        return text
    return "".join(repr(c)[1:-1] if _is_control(c) and c not in keep else c for c in text)


def _is_control(c: str) -> bool:
    o = ord(c)
    return o < 32 or 127 <= o < 160


def clip(text: str, limit: int = 200) -> str:
    """`text` on one line and at most about `limit` characters (for text that is not a value, e.g. a library's message)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters in all)"


def _echo(value: Any, limit: int, depth: int) -> str:
    if isinstance(value, (str, bytes)):
        if len(value) <= limit:
            return repr(value)
        shown = repr(value[:limit])
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{shown[:-1]}...{shown[-1]} ({len(value):,} {unit})"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > _MAX_DIGITS * 3.32:  # str() would be slow or raise ValueError
            return f"<an integer of about {int(value.bit_length() * 0.30103):,} digits>"
        text = repr(int(value))
        if len(text) <= limit:
            return text
        return f"{text[:limit]}... ({len(text.lstrip('-')):,} digits)"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return _collection(value, limit, depth)
    try:
        text = repr(value)
    except Exception as exc:  # a value whose repr fails must not turn a message into a traceback
        return f"<{type(value).__name__} object: repr() failed with {type(exc).__name__}>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _collection(value: Any, limit: int, depth: int) -> str:
    if isinstance(value, dict):
        opened, closed = "{", "}"
    elif isinstance(value, list):
        opened, closed = "[", "]"
    elif isinstance(value, tuple):
        opened, closed = "(", ")"
    else:
        opened, closed = "{", "}"
    if not value:
        return repr(type(value)()) if not isinstance(value, (set, frozenset)) else f"{type(value).__name__}()"
    if depth <= 0:
        return f"{opened}...{closed}"
    inner = max(limit // 2, 10)
    if isinstance(value, dict):
        parts = [f"{_echo(k, inner, depth - 1)}: {_echo(v, inner, depth - 1)}" for k, v in _first(value.items())]
    else:
        parts = [_echo(v, inner, depth - 1) for v in _first(value)]
    if isinstance(value, tuple) and len(value) == 1:
        parts[0] += ","
    more = len(value) - len(parts)
    if more:
        parts.append(f"... {len(value):,} entries")
    return opened + ", ".join(parts) + closed


def _first(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if len(out) == ITEMS:
            break
        out.append(item)
    return out

"""One way to say "did you mean ...?". No pytest here."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(word: object, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or '' when none is close."""
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

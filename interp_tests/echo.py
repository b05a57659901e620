"""Values quoted in messages, capped: a prefix and the length, never a megabyte of input. No pytest here."""

from __future__ import annotations

MAX_ECHO = 80  # characters of a value's repr shown in a message


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """`repr(value)`, or for a long one its first characters and its length: `'aaaa...' (1,000,000 characters)`."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text):,} characters)"
    return text

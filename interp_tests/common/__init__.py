"""The foundation every room stands on: the one error root (`errors`), quoting values in messages (`echo`),
"did you mean" hints (`hints`), a cache that remembers failures (`memo`) and writing files so that nothing is
half-written (`files`).

May import: the standard library only. Imported by: every other room.
"""

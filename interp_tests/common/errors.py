"""One error root. Every message says where the problem is and how to fix it."""

from __future__ import annotations


class InterpTestsError(Exception):
    """Root of every error interp-tests reports to the user (shown without a traceback)."""


class CaseFileError(InterpTestsError):
    """A case file that cannot be read or does not match the schema: `path:line: location: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LoadError(InterpTestsError):
    """A model or SAE that cannot be loaded."""


class CaseError(InterpTestsError):
    """A case that is valid YAML but cannot run against its target (bad index, missing hook, ...)."""


class InputError(InterpTestsError):
    """A bad option value or a bad argument from Python code."""

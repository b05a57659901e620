"""A case file read and validated: `load_case_file(path)` returns a `CaseFile` or raises `CaseFileError`
whose lines read `path:line: dotted.location: message (got value)`. No pytest here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ..common.errors import CaseFileError
from . import schema
from .references import reference_problems
from .schema import CaseFileModel
from .validation_messages import validation_problems
from .yaml_source import Source, load_yaml


@dataclass(frozen=True)
class CaseFile:
    """A validated case file with the line of every key path."""

    path: Path  # as shown in messages (relative to where the run started, when below it)
    model: CaseFileModel
    source: Source
    base: Path = Path(".")  # the file's directory: relative paths in it (SAE path, corpus path) start here

    def line(self, *loc: str | int) -> int:
        return self.source.line_of(loc)

    def where(self, *loc: str | int) -> str:
        return f"{self.path}:{self.line(*loc)}"


def parse_case_file(source: Source, base: Path | None = None) -> CaseFile:
    try:
        model = CaseFileModel.model_validate(source.data)
    except ValidationError as exc:
        raise CaseFileError(validation_problems(exc, source)) from None
    except (RecursionError, MemoryError) as exc:
        raise CaseFileError([f"{source.path}:1: <file>: the file is too deeply nested or too large to validate ({type(exc).__name__}): simplify it"]) from None
    problems = reference_problems(model, source)
    if problems:
        raise CaseFileError(problems)
    return CaseFile(source.path, model, source, base if base is not None else source.path.parent)


def load_case_file(path: Path, display: Path | None = None) -> CaseFile:
    """Parse and validate a case file; messages name it as `display` (default: `path`)."""
    return parse_case_file(load_yaml(path, display), path.resolve().parent)


def labelled_texts(case_file: CaseFile, case: schema.Case, on: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """(label, text) pairs of a check: its own groups, else the case's on/text/texts."""
    groups = on if on is not None else case.on
    if groups is not None:
        return [(g, t) for g in groups for t in case_file.model.text_list(g)]
    if case.text is not None:
        return [("text", case.text)]
    if case.texts is not None:
        return [(f"texts[{i}]", t) for i, t in enumerate(case.texts)]
    return []  # schema validation gives every text-reading check some texts

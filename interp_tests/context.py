"""What a check sees: its case file, case, position, the SAE engine, and the feature resolver. No pytest here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import schema
from .errors import CaseError
from .verdict import short

if TYPE_CHECKING:
    from .casefile import CaseFile
    from .engine import SaeEngine

Loc = tuple[str | int, ...]


@dataclass
class FeatureResolver:
    """Resolves the feature references of one case file for one SAE; selector results are cached."""

    case_file: CaseFile
    engine: SaeEngine
    resolved: dict[str, int] = field(default_factory=dict)

    def in_range(self, index: int, loc: Loc) -> int:
        d_sae = self.engine.d_sae
        if not 0 <= index < d_sae:
            raise CaseError(
                f"{self.case_file.where(*loc)}: feature index {index} is outside [0, {d_sae}) "
                f"(d_sae of SAE {self.engine.label} is {d_sae})"
            )
        return index

    def __call__(self, ref: int | str, loc: Loc) -> int:
        if isinstance(ref, int):
            return self.in_range(ref, loc)
        if ref not in self.resolved:
            definition = self.case_file.model.features[ref]
            where = ("features", ref)
            if isinstance(definition, int):
                self.resolved[ref] = self.in_range(definition, where)
            else:
                self.resolved[ref] = self.most_active_on(definition, where)
        return self.resolved[ref]

    def most_active_on(self, selector: schema.MostActiveOn, loc: Loc) -> int:
        (acts,) = self.engine.acts([selector.most_active_on])
        dense = acts.dense()
        if selector.token is not None:
            positions = acts.positions(selector.token)
            if not positions:
                raise CaseError(
                    f"{self.case_file.where(*loc, 'token')}: token {selector.token!r} does not occur in "
                    f"{short(selector.most_active_on)}; its tokens: {list(acts.tokens)!r}"
                )
            dense = dense[positions]
        return int(dense.max(0).values.argmax())  # torch returns the first (lowest) index on ties

    def label(self, ref: int | str, index: int) -> str:
        return f"#{index}" if isinstance(ref, int) else f"{ref} = #{index}"


@dataclass(frozen=True)
class CheckContext:
    """One check of one case, about to run against one SAE engine."""

    case_file: CaseFile
    case_index: int
    check_index: int
    engine: SaeEngine
    features: FeatureResolver

    @property
    def case(self) -> schema.Case:
        return self.case_file.model.cases[self.case_index]

    @property
    def loc(self) -> Loc:
        return ("cases", self.case_index, "expect", self.check_index)

    @property
    def where(self) -> str:
        return self.case_file.where(*self.loc)

    @property
    def name(self) -> str:
        return self.case.expect[self.check_index].name

    def texts(self, on: tuple[str, ...] | None) -> list[tuple[str, str]]:
        """(label, text) pairs: the check's own groups, else the case's on/text/texts."""
        return labelled_texts(self.case_file, self.case, on)

    def feature(self, ref: int | str) -> tuple[int, str]:
        """The feature index a check's `feature:` resolves to, and its label ("name = #index")."""
        index = self.features(ref, (*self.loc, self.name, "feature"))
        return index, self.features.label(ref, index)


def labelled_texts(case_file: CaseFile, case: schema.Case, on: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """(label, text) pairs of a check: its own groups, else the case's on/text/texts."""
    groups = on if on is not None else case.on
    if groups is not None:
        return [(g, t) for g in groups for t in case_file.model.texts[g]]
    if case.text is not None:
        return [("text", case.text)]
    if case.texts is not None:
        return [(f"texts[{i}]", t) for i, t in enumerate(case.texts)]
    return []  # schema validation gives every text-reading check some texts

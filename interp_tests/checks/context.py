"""What a check sees: its case file, case, position, the SAE engine, and the feature resolver. No pytest here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cases import schema
from ..cases.casefile import labelled_texts
from ..common.echo import echo
from ..common.errors import CaseError
from .verdict import short

if TYPE_CHECKING:
    from ..cases.casefile import CaseFile
    from ..compute.corpus import Corpus
    from ..compute.engine import SaeEngine

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Identity:
    """A named feature on a candidate: what its selector picks there, and what the matching says it should."""

    name: str
    reference_index: int
    candidate_index: int
    match_index: int  # best candidate match of the reference index
    match_cos: float

    @property
    def same(self) -> bool:
        return self.candidate_index == self.match_index

    def describe(self) -> str:
        if self.same:
            return f"{self.name}: reference #{self.reference_index} -> candidate #{self.candidate_index} (its best match, decoder cos {self.match_cos:.2f})"
        return (
            f"{self.name}: #{self.reference_index} on the reference, #{self.candidate_index} on the candidate, "
            f"best match of #{self.reference_index} is #{self.match_index} at cos {self.match_cos:.2f}"
        )


@dataclass
class FeatureResolver:
    """Resolves the feature references of one case file for one SAE; selector results are cached.

    On a candidate SAE (an engine with a reference), a plain index names a reference feature and runs on its
    best match among the candidate's features; a selector resolves on the candidate, and on the reference
    too, so that a feature that changed identity is reported (`identities`).
    """

    case_file: CaseFile
    engine: SaeEngine
    resolved: dict[str, int] = field(default_factory=dict)
    mapped: dict[int, tuple[int, float]] = field(default_factory=dict)  # reference index -> (candidate index, cos)
    identities: dict[str, Identity] = field(default_factory=dict)
    pairs: dict[int, Any] = field(default_factory=dict)  # reference index -> identity_checks.Pair (both sides of a match)

    def in_range(self, index: int, loc: Loc, engine: SaeEngine | None = None) -> int:
        engine = engine or self.engine
        d_sae = engine.d_sae
        if not 0 <= index < d_sae:
            raise CaseError(
                f"{self.case_file.where(*loc)}: feature index {echo(index)} is outside [0, {d_sae}) "
                f"(d_sae of SAE {engine.label} is {d_sae})"
            )
        return index

    @property
    def reference_engine(self) -> SaeEngine:
        return self.engine.reference_engine or self.engine

    def follow(self, reference_index: int) -> int:
        """The candidate feature a reference index runs on: its best match (itself on the reference)."""
        matching = self.engine.matching
        if self.engine.reference_engine is None or matching is None:
            return reference_index
        index, cos, _ = matching.of(reference_index)
        self.mapped[reference_index] = (index, cos)
        return index

    def __call__(self, ref: int | str, loc: Loc) -> int:
        if isinstance(ref, int):
            return self.follow(self.in_range(ref, loc, self.reference_engine))
        if ref not in self.resolved:
            definition = self.case_file.model.features[ref]
            where = ("features", ref)
            if isinstance(definition, int):
                self.resolved[ref] = self.follow(self.in_range(definition, where, self.reference_engine))
            else:
                index = most_active_on(self.case_file, self.engine, definition, where)
                self.resolved[ref] = index
                if self.engine.reference_engine is not None and self.engine.matching is not None:
                    ref_index = most_active_on(self.case_file, self.engine.reference_engine, definition, where)
                    match, cos, _ = self.engine.matching.of(ref_index)
                    self.identities[ref] = Identity(ref, ref_index, index, match, cos)
        return self.resolved[ref]

    def reference_index(self, ref: int | str, loc: Loc) -> int:
        """The index a reference names on the reference SAE (for checks about the reference's features)."""
        if isinstance(ref, int):
            return self.in_range(ref, loc, self.reference_engine)
        definition = self.case_file.model.features[ref]
        if isinstance(definition, int):
            return self.in_range(definition, ("features", ref), self.reference_engine)
        return most_active_on(self.case_file, self.reference_engine, definition, ("features", ref))

    def label(self, ref: int | str, index: int) -> str:
        name = f"#{index}" if isinstance(ref, int) else f"{ref} = #{index}"
        original = ref if isinstance(ref, int) else self.case_file.model.features.get(ref)
        if isinstance(original, int) and original in self.mapped:
            match, cos = self.mapped[original]
            name = f"{ref if isinstance(ref, str) else 'reference'} #{original} -> candidate #{match} (cos {cos:.3f})"
        return name


def most_active_on(case_file: CaseFile, engine: SaeEngine, selector: schema.MostActiveOn, loc: Loc) -> int:
    """The feature with the largest single activation over the selector's text (or its token's positions)."""
    (acts,) = engine.acts([selector.most_active_on])
    dense = acts.dense()
    if selector.token is not None:
        positions = acts.positions(selector.token)
        if not positions:
            raise CaseError(
                f"{case_file.where(*loc, 'token')}: token {selector.token!r} does not occur in "
                f"{short(selector.most_active_on)}; its tokens: {list(acts.tokens)!r}"
            )
        dense = dense[positions]
    return int(dense.max(0).values.argmax())  # torch returns the first (lowest) index on ties


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

    def corpus(self, on: tuple[str, ...] | None) -> Corpus | None:
        """The corpus a check reads, when its groups (or the case's) are one corpus group."""
        from ..compute.corpus import Corpus

        groups = on if on is not None else self.case.on
        if groups is None or len(groups) != 1:
            return None
        spec = self.case_file.model.corpus(groups[0])
        return Corpus(spec, self.case_file.base, groups[0]) if spec is not None else None

    def feature(self, ref: int | str) -> tuple[int, str]:
        """The feature index a check's `feature:` resolves to, and its label ("name = #index")."""
        index = self.features(ref, (*self.loc, self.name, "feature"))
        return index, self.features.label(ref, index)

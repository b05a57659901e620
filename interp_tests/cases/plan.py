"""What a case runs against (`TargetKey`) and one case on one target (`CasePlan`). No pytest here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import schema
from .casefile import CaseFile, labelled_texts


@dataclass(frozen=True)
class TargetKey:
    """A model (with its kwargs), one SAE and an optional hook override.

    `sae` is what runs; `reference` is the SAE the case file names. They differ when `--interp-sae` gives
    a candidate: baselines and registry values belong to the reference.
    """

    model: str
    model_kwargs: str  # JSON, so the key is hashable
    sae: schema.SaeRef
    hook: str | None
    reference: schema.SaeRef | None = None  # the case file's SAE, when a candidate replaced it
    name: str = ""  # the candidate's short label (`claims.yaml::case[NAME]`); "" for the case file's own SAE
    only_at: str | None = None  # `--interp-sae HOOK=...`: the candidate replaces the SAE only where it reads HOOK

    @classmethod
    def of(cls, target: schema.Target, sae: schema.SaeRef) -> TargetKey:
        return cls(target.model, json.dumps(target.model_kwargs, sort_keys=True), sae, target.hook)

    @property
    def label(self) -> str:
        """The SAE that runs, in full (a local path, or RELEASE/ID): what baselines record."""
        return self.sae.label

    @property
    def checkpoint(self) -> str:
        """The short name reports and the leaderboard show: a candidate's label, or the SAE's full label."""
        return self.name or self.sae.label

    @property
    def reference_sae(self) -> schema.SaeRef:
        return self.reference if self.reference is not None else self.sae


def resolve_sae(ref: schema.SaeRef, base: Path) -> schema.SaeRef:
    """A local SAE path is relative to the case file's directory."""
    if ref.path is None:
        return ref
    return ref.model_copy(update={"path": str((base / ref.path).resolve())})


@dataclass(frozen=True)
class CasePlan:
    """One case of a case file, to run against one target."""

    case_file: CaseFile
    index: int
    target: TargetKey
    source: Path  # the case file on disk (its baseline lives next to it)
    reference_label: str  # the case file's SAE as the file names it (baselines are keyed by it)

    @property
    def case(self) -> schema.Case:
        return self.case_file.model.cases[self.index]

    @property
    def case_id(self) -> str:
        return self.case.id

    @property
    def where(self) -> str:
        return self.case_file.where("cases", self.index)

    def texts(self) -> list[str]:
        """Every text the case encodes, so a session can compute them in one batch per target."""
        model = self.case_file.model
        case = self.case
        out = [d.most_active_on for d in model.features.values() if isinstance(d, schema.MostActiveOn)]
        out.extend(t for _, t in labelled_texts(self.case_file, case, None))
        for expectation in case.expect:
            params = expectation.params
            for attr in ("on", "positive", "negative"):
                for group in getattr(params, attr, None) or ():
                    out.extend(model.text_list(group))
        return list(dict.fromkeys(out))


def index_bound(plan: CasePlan) -> list[str]:
    """Checks of a case that name a plain feature index: bound to the SAE they were found on."""
    model = plan.case_file.model
    case = plan.case
    refs: list[tuple[tuple[str | int, ...], int | str]] = []
    if case.steer is not None:
        refs.append((("cases", plan.index, "steer", "feature"), case.steer.feature))
    for j, expectation in enumerate(case.expect):
        feature = getattr(expectation.params, "feature", None)
        if feature is not None:
            refs.append((("cases", plan.index, "expect", j, expectation.name, "feature"), feature))
    out = []
    for loc, ref in refs:
        definition = model.features.get(ref) if isinstance(ref, str) else ref
        if isinstance(definition, int):
            out.append(f"{plan.case_file.where(*loc)}: {loc[-2]} uses feature {ref!r} = index {definition}, bound to the original SAE")
    return out


def corpora_read(plan: CasePlan) -> set[tuple[object, str]]:
    """Corpus keys (spec, base) that some check of the case reads."""
    model = plan.case_file.model
    out: set[tuple[object, str]] = set()
    for expectation in plan.case.expect:
        for group in getattr(expectation.params, "on", None) or plan.case.on or ():
            spec = model.corpus(group)
            if spec is not None:
                out.add((spec, str(plan.case_file.base)))
    return out


def corpora_with_loss(plan: CasePlan) -> set[tuple[object, str]]:
    """Corpus keys (spec, base) that a loss check of the case reads: one streamed pass then computes the
    loss statistics along with the others, instead of a second pass."""
    return corpora_with(plan, schema.LOSS_CHECKS)


def corpora_with_legacy(plan: CasePlan) -> set[tuple[object, str]]:
    """Corpus keys (spec, base) that an explained_variance_legacy check of the case reads (the pass keeps its
    inputs, or a second pass runs, shared by every SAE of a load group that needs one)."""
    return corpora_with(plan, ("explained_variance_legacy",))


def corpora_with(plan: CasePlan, checks: tuple[str, ...]) -> set[tuple[object, str]]:
    model = plan.case_file.model
    out: set[tuple[object, str]] = set()
    for expectation in plan.case.expect:
        if expectation.name not in checks:
            continue
        groups = getattr(expectation.params, "on", None) or plan.case.on or ()
        for group in groups:
            spec = model.corpus(group)
            if spec is not None:
                out.add((spec, str(plan.case_file.base)))
    return out

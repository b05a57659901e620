"""`run_case(plan, engine) -> CaseResult`: every check of one case against one SAE engine. No pytest here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..cases.casefile import labelled_texts
from ..cases.plan import CasePlan, index_bound
from .context import CheckContext, FeatureResolver
from .dispatch import run_check
from .verdict import Heatmap, Table, Verdict

if TYPE_CHECKING:
    from ..compute.engine import SaeEngine


@dataclass(frozen=True)
class CaseResult:
    """The verdicts of one case on one SAE; `drift` holds the baseline comparisons, when there are any."""

    case_id: str
    where: str  # file:line of the case
    sae: str  # label of the SAE that ran
    reference: str  # the case file's own SAE, as the file names it
    candidate: bool  # the SAE that ran is an --interp-sae candidate, not the reference
    verdicts: tuple[Verdict, ...]
    observed: dict[str, float | str | None] = field(default_factory=dict)  # check key -> observed value
    intervals: dict[str, list[float]] = field(default_factory=dict)  # check key -> its 95% interval, where it has one
    features: dict[str, int] = field(default_factory=dict)  # feature name -> the index it resolved to
    drift: tuple[Verdict, ...] = ()
    notes: tuple[str, ...] = ()  # what the report should say besides the verdicts
    matching: dict[str, float] = field(default_factory=dict)  # suite-level figures of a candidate's feature matching
    checkpoint: str = ""  # the short label of the SAE that ran (a candidate's label, else the SAE's full label)
    file: str = ""  # the case file, as the run names it
    model: str = ""
    hook: str = ""  # the hook the SAE read
    error: str = ""  # why the case could not run at all (its model or SAE did not load, ...)
    pairs: tuple[dict[str, Any], ...] = ()  # on a candidate: both sides of each feature match the case relied on

    @property
    def all_verdicts(self) -> tuple[Verdict, ...]:
        return self.verdicts + self.drift

    @property
    def ok(self) -> bool:
        return not self.error and all(v.ok for v in self.all_verdicts)


def check_key(index: int, name: str) -> str:
    """How a check is named in baselines: its position in `expect:` and its name."""
    return f"expect[{index}].{name}"


def run_case(plan: CasePlan, engine: SaeEngine, *, strict_identity: bool = False) -> CaseResult:
    """Every check of the case on the engine's SAE. On a candidate SAE, plain indices follow the feature
    matching and named features get an identity verdict (failing on a rebinding when `strict_identity`)."""
    from .identity_checks import identity_verdicts

    resolver = FeatureResolver(plan.case_file, engine)
    verdicts = tuple(
        run_check(CheckContext(plan.case_file, plan.index, j, engine, resolver)) for j in range(len(plan.case.expect))
    )
    verdicts = with_neuronpedia_links(verdicts, engine)
    candidate = engine.reference is not None
    pairs = matched_pairs(plan, engine, resolver) if candidate else ()
    notes: tuple[str, ...] = ()
    if candidate:
        if engine.matching is None:
            notes = tuple(f"{line} (SAE {engine.label} replaces {engine.reference.label}; {engine.matching_problem})" for line in index_bound(plan))
        else:
            notes = tuple(
                f"{plan.where}: reference #{ref} runs as candidate #{match} (decoder cos {cos:.3f})" for ref, (match, cos) in sorted(resolver.mapped.items())
            )
        notes += tuple(i.describe() for i in resolver.identities.values())
    return CaseResult(
        case_id=plan.case_id,
        where=plan.where,
        sae=engine.label,
        reference=plan.reference_label,
        candidate=candidate,
        verdicts=verdicts + identity_verdicts(resolver, plan.where, strict_identity),
        observed={check_key(j, v.check): v.observed for j, v in enumerate(verdicts)},
        intervals={check_key(j, v.check): list(v.interval) for j, v in enumerate(verdicts) if v.interval is not None},
        features=dict(resolver.resolved),
        notes=notes,
        matching={"mmcs": engine.matching.mmcs, "matched_fraction": engine.matching.matched_fraction} if candidate and engine.matching is not None else {},
        checkpoint=plan.target.checkpoint,
        file=str(plan.case_file.path),
        model=plan.target.model,
        hook=engine.hooks.hook,
        pairs=pairs,
    )


def matched_pairs(plan: CasePlan, engine: SaeEngine, resolver: FeatureResolver) -> tuple[dict[str, Any], ...]:
    """Both sides of every match the case relied on (plain indices that followed the matching, named features,
    `matched` checks): decoder and encoder cosine, and the activations' correlation over the case's texts
    (or, when it reads none of its own, every list of texts of the case file)."""
    from .identity_checks import pair_of

    if engine.matching is None or engine.reference_engine is None:
        return ()
    wanted = set(resolver.mapped) | {i.reference_index for i in resolver.identities.values()}
    texts = [t for _, t in labelled_texts(plan.case_file, plan.case, None)]
    if not texts:
        model = plan.case_file.model
        texts = [t for group in model.texts for t in model.text_list(group)]
    texts = list(dict.fromkeys(texts))
    pairs = dict(resolver.pairs)
    for index in sorted(wanted - set(pairs)):
        pairs[index] = pair_of(engine, index, texts)
    return tuple(pair.as_dict() for _, pair in sorted(pairs.items()))


def unrunnable(plan: CasePlan, why: str) -> CaseResult:
    """A case that could not run (its model or SAE did not load, ...): one failing verdict that says why."""
    verdict = Verdict(check="target", where=plan.where, ok=False, expected="a model and an SAE that load", observed=None, summary=why, error=why)
    return CaseResult(
        case_id=plan.case_id, where=plan.where, sae=plan.target.label, reference=plan.reference_label,
        candidate=plan.target.reference is not None, verdicts=(verdict,), checkpoint=plan.target.checkpoint,
        file=str(plan.case_file.path), model=plan.target.model, hook=plan.target.hook or "", error=why,
    )


def with_neuronpedia_links(verdicts: tuple[Verdict, ...], engine: SaeEngine) -> tuple[Verdict, ...]:
    """Each feature verdict gets its feature's Neuronpedia URL, where the SAE's registry entry has an id."""
    import dataclasses

    from ..compute.neuronpedia import feature_url, neuronpedia_id

    ref = engine.ref
    if ref is None or ref.release is None or not any(v.feature_index is not None for v in verdicts):
        return verdicts
    np_id = neuronpedia_id(ref.release, ref.id)
    if np_id is None:
        return verdicts
    return tuple(
        dataclasses.replace(v, feature_url=feature_url(np_id, v.feature_index) or "") if v.feature_index is not None else v for v in verdicts
    )


def result_to_json(result: CaseResult) -> dict[str, Any]:
    """A CaseResult as plain JSON-able data (it travels on pytest reports, also from xdist workers)."""
    return asdict(result)


def result_from_json(data: dict[str, Any]) -> CaseResult:
    def verdict(v: dict[str, Any]) -> Verdict:
        table = Table(tuple(v["table"]["header"]), tuple(tuple(r) for r in v["table"]["rows"])) if v.get("table") else None
        maps = tuple(Heatmap(h["label"], tuple(h["tokens"]), tuple(h["values"])) for h in v.get("heatmaps", ()))
        ref_maps = tuple(Heatmap(h["label"], tuple(h["tokens"]), tuple(h["values"])) for h in v.get("reference_heatmaps", ()))
        return Verdict(**{
            **v, "table": table, "heatmaps": maps, "reference_heatmaps": ref_maps,
            "notes": tuple(v.get("notes", ())), "extra": tuple(tuple(e) for e in v.get("extra", ())),
            "interval": tuple(v["interval"]) if v.get("interval") is not None else None,
            "paired": tuple(v["paired"]) if v.get("paired") is not None else None,
        })

    return CaseResult(**{
        **data,
        "verdicts": tuple(verdict(v) for v in data["verdicts"]),
        "drift": tuple(verdict(v) for v in data.get("drift", ())),
        "notes": tuple(data.get("notes", ())),
        "pairs": tuple(data.get("pairs", ())),
    })

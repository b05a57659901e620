"""Cross-references of a case file that pydantic cannot see: group and feature names, ids, texts for
each check, steering prerequisites. No pytest here."""

from __future__ import annotations

from ..common.echo import echo
from ..common.hints import suggest
from .schema import CORPUS_CHECKS, IDENTITY_CHECKS, STEERING_CHECKS, CaseFileModel, MostActiveOn
from .yaml_source import Source, format_loc


def reference_problems(m: CaseFileModel, source: Source) -> list[str]:
    """Every broken cross-reference of the validated model read from `source`, as `path:line: location:
    message` lines."""
    problems: list[str] = []

    def bad(loc: tuple[str | int, ...], msg: str) -> None:
        problems.append(f"{source.path}:{source.line_of(loc)}: {format_loc(loc)}: {msg}")

    def check_groups(groups: tuple[str, ...] | None, loc: tuple[str | int, ...]) -> None:
        for g in groups or ():
            if g not in m.texts:
                known = ", ".join(m.texts) or "none: add a top-level texts: mapping"
                bad(loc, f"unknown text group {echo(g)}{suggest(g, m.texts)}; groups: {known}")

    def corpora_in(groups: tuple[str, ...] | None) -> list[str]:
        return [g for g in groups or () if m.corpus(g) is not None]

    def check_corpus_use(name: str, groups: tuple[str, ...] | None, loc: tuple[str | int, ...]) -> None:
        corpora = corpora_in(groups)
        if not corpora:
            return
        if name not in CORPUS_CHECKS:
            bad(loc, f"{name} reads texts one by one; {echo(corpora[0])} is a corpus (corpus groups serve {', '.join(CORPUS_CHECKS)})")
        elif len(groups or ()) > 1:
            bad(loc, f"a corpus group is read alone: give {name} one corpus ({echo(corpora[0])}) or only lists of texts")

    def check_feature(ref: int | str, loc: tuple[str | int, ...]) -> None:
        if isinstance(ref, str) and ref not in m.features:
            known = ", ".join(m.features) or "none: add a top-level features: mapping or use an index"
            bad(loc, f"unknown feature {echo(ref)}{suggest(ref, m.features)}; features: {known}")

    ids: dict[str, int] = {}
    for i, case in enumerate(m.cases):
        if case.id in ids:
            bad(("cases", i, "id"), f"duplicate case id {echo(case.id)} (first at line {source.line_of(('cases', ids[case.id], 'id'))}): ids must be unique per file")
        else:
            ids[case.id] = i
        check_groups(case.on, ("cases", i, "on"))
        if corpora_in(case.on):
            for exp in case.expect:
                reads_case_texts = not hasattr(exp.params, "positive") and exp.name not in STEERING_CHECKS + IDENTITY_CHECKS
                if getattr(exp.params, "on", None) is None and reads_case_texts:  # separates reads its own groups
                    check_corpus_use(exp.name, case.on, ("cases", i, "on"))
        has_texts = case.on is not None or case.text is not None or case.texts is not None
        if case.steer is not None:
            check_feature(case.steer.feature, ("cases", i, "steer", "feature"))
            if case.prompt is None:
                bad(("cases", i, "steer"), "a steering case needs prompt: the text to steer")
        elif case.prompt is not None and not any(e.name in STEERING_CHECKS for e in case.expect):
            bad(("cases", i, "prompt"), "prompt is only used by steering cases: add steer: {feature, strength}")
        for j, exp in enumerate(case.expect):
            name, p = exp.name, exp.params
            loc = ("cases", i, "expect", j, name)
            feature = getattr(p, "feature", None)
            if feature is not None:
                check_feature(feature, (*loc, "feature"))
            if name in IDENTITY_CHECKS:
                check_groups(getattr(p, "on", None), (*loc, "on"))
                check_corpus_use(name, getattr(p, "on", None), (*loc, "on"))  # matched correlates over lists of texts
                continue
            if name in STEERING_CHECKS:
                if case.steer is None or case.prompt is None:
                    bad(loc, f"{name} is a steering check: the case needs steer: {{feature, strength}} and prompt:")
                continue
            for key in ("positive", "negative"):
                if hasattr(p, key):
                    check_groups(getattr(p, key), (*loc, key))
                    check_corpus_use(name, getattr(p, key), (*loc, key))
            if name == "separates":
                continue
            on = getattr(p, "on", None)
            check_groups(on, (*loc, "on"))
            check_corpus_use(name, on, (*loc, "on"))
            reads = on if on is not None else case.on
            if name in ("fires", "silent") and getattr(p, "token", None) is not None and corpora_in(reads):
                bad(
                    (*loc, "token"),
                    f"token: needs lists of texts: over a corpus, {name} compares the feature's largest activation over "
                    "all its tokens (drop token:, or give the check on: a list of texts)",
                )
            if on is None and not has_texts:
                bad(loc, f"{name} needs texts: give the case on:, text: or texts:, or the check its own on:")
    for name, fdef in m.features.items():
        if isinstance(fdef, MostActiveOn) and fdef.token == "":
            bad(("features", name, "token"), "token must not be empty")
    return problems

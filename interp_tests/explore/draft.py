"""Draft a case file from two groups of texts: the features that best separate them, and claims that pass.

Each feature is scored by the AUROC of its per-text max activation, positive vs negative group (as the
`separates` check computes it), ties broken by the gap of the groups' mean max activation, then by the
lower index. The stub names every feature by a `most_active_on` selector that resolves to it on this SAE
(checked the way the harness resolves selectors, with a margin so that float noise cannot flip it), or by
its plain index with a comment saying why. Its bounds sit a stated margin outside what was observed, so the
drafted file passes as written; `MARGINS` is the comment that says so in the stub.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..common.errors import InputError
from .inspection import BundledTarget, Encoded, Target, check_texts

if TYPE_CHECKING:
    import torch


FIRES_FACTOR = 0.8  # fires.min = 0.8 x the smallest per-text max over the positive texts
SILENT_FACTOR, SILENT_PAD = 1.1, 0.05  # silent.max = 1.1 x the largest negative per-text max + 0.05
AUROC_MARGIN, AUROC_CAP = 0.05, 0.95  # min_auroc = AUROC - max(0.05, one pair), at most 0.95
SELECTOR_MARGIN = 1e-3  # a selector counts only when its feature leads the runner-up by more than this

MARGINS = f"""\
# Bounds are drafted from what this SAE showed on these texts, with margins so the file passes as written:
#   fires.min           = {FIRES_FACTOR} x the smallest per-text max activation on the positive texts (rounded down)
#   silent.max          = {SILENT_FACTOR} x the largest per-text max activation on the negative texts + {SILENT_PAD} (rounded up)
#   separates.min_auroc = the observed AUROC - max({AUROC_MARGIN}, 1 / (positive texts x negative texts)),
#                         at most {AUROC_CAP} (rounded down)
# Tighten them once you trust the claims; the observed values are in the comments."""


@dataclass(frozen=True)
class Separator:
    feature: int
    auroc: float
    gap: float  # mean per-text max on positive texts - the same on negative texts
    positive_max: tuple[float, ...]
    negative_max: tuple[float, ...]
    selector: tuple[str, str | None] | None  # (most_active_on, token) that resolves to `feature`
    note: str  # why there is no selector, when there is none

    @property
    def fires_min(self) -> float | None:
        low = min(self.positive_max)
        return _floor(FIRES_FACTOR * low, 4) if low > 0 else None

    @property
    def silent_max(self) -> float:
        return _ceil(SILENT_FACTOR * max(self.negative_max) + SILENT_PAD, 4)

    def min_auroc(self) -> float:
        pair = 1.0 / (len(self.positive_max) * len(self.negative_max))
        return max(0.0, _floor(min(self.auroc - max(AUROC_MARGIN, pair), AUROC_CAP), 2))


def _floor(x: float, digits: int) -> float:
    return math.floor(x * 10**digits) / 10**digits


def _ceil(x: float, digits: int) -> float:
    return math.ceil(x * 10**digits) / 10**digits


def auroc_per_feature(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """AUROC per feature of per-text maxima [texts, d_sae]: P(positive > negative), ties counting one half
    (the Mann-Whitney form that `metrics.auroc` computes for one feature)."""
    import torch

    wins = torch.zeros(pos.shape[1], dtype=torch.float64)
    for p in pos:
        wins += (p > neg).sum(0) + 0.5 * (p == neg).sum(0)
    return wins / (pos.shape[0] * neg.shape[0])


def resolve(acts: Encoded, token: str | None) -> tuple[int, float]:
    """The harness's selector rule: the feature with the largest single activation over the text's tokens
    (or over the positions of `token`), lowest index on ties; and its lead over the runner-up."""
    import torch

    dense = acts.feats
    if token is not None:
        pos = acts.positions(token)
        if not pos:
            return -1, 0.0
        dense = dense[pos]
    per_feature = dense.max(0).values
    best = int(per_feature.argmax())
    two = torch.topk(per_feature, min(2, per_feature.shape[0])).values.tolist()
    return best, (two[0] - two[1]) if len(two) > 1 else math.inf


def find_selector(feature: int, positive: Sequence[Encoded]) -> tuple[tuple[str, str | None] | None, str]:
    """A (text, token) selector over the positive texts that resolves to `feature` with a clear lead: the
    token at the feature's argmax positions first, then the whole text; texts where it is strongest first."""
    tried = 0
    order = sorted(positive, key=lambda a: -float(a.feats[:, feature].max()))
    for acts in order:
        column = acts.feats[:, feature]
        top = float(column.max())
        if top <= 0:
            continue
        tokens = [acts.tokens[i] for i in range(len(acts.tokens)) if float(column[i]) == top]
        for token in [*dict.fromkeys(tokens), None]:
            tried += 1
            best, lead = resolve(acts, token)
            if best == feature and lead > SELECTOR_MARGIN:
                return (acts.text, token), ""
    return None, f"none of {tried} selectors over the positive texts resolves to #{feature} with a lead > {SELECTOR_MARGIN}"


def separators(target: Target | BundledTarget, positive: Sequence[str], negative: Sequence[str], n: int) -> list[Separator]:
    """The `n` features that best separate `positive` from `negative` (see the module docstring)."""
    import torch

    if n < 1:
        raise InputError(f"Could not parse value: {n!r} for --n: give a number of features >= 1")
    positive = check_texts(positive, "positive text")
    negative = check_texts(negative, "negative text")
    if not positive or not negative:
        raise InputError("draft needs at least one positive and one negative text (--positive ... --negative ...)")
    acts = target.encoded([*positive, *negative])
    pos_acts, neg_acts = acts[: len(positive)], acts[len(positive) :]
    pos = torch.stack([a.feats.max(0).values for a in pos_acts]).double()
    neg = torch.stack([a.feats.max(0).values for a in neg_acts]).double()
    auroc = auroc_per_feature(pos, neg)
    gap = pos.mean(0) - neg.mean(0)
    order = torch.arange(auroc.shape[0])
    order = order[torch.sort(gap[order], descending=True, stable=True).indices]
    order = order[torch.sort(auroc[order], descending=True, stable=True).indices]
    out = []
    for f in order[:n].tolist():
        selector, note = find_selector(f, pos_acts)
        out.append(
            Separator(f, float(auroc[f]), float(gap[f]), tuple(pos[:, f].tolist()), tuple(neg[:, f].tolist()), selector, note)
        )
    return out


# ----------------------------------------------------------------------------- the stub
def yaml_str(s: str) -> str:
    """A YAML 1.2 double-quoted scalar for any string (escapes for quotes, backslashes and non-printables)."""
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c.isprintable() and c not in "\u2028\u2029\u0085\ufeff":
            out.append(c)
        elif ord(c) <= 0xFF:
            out.append(f"\\x{ord(c):02x}")
        elif ord(c) <= 0xFFFF:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(f"\\U{ord(c):08x}")
    out.append('"')
    return "".join(out)


def _groups(names: Sequence[str]) -> str:
    return yaml_str(names[0]) if len(names) == 1 else "[" + ", ".join(yaml_str(n) for n in names) + "]"


def stub(
    target: Target | BundledTarget,
    groups: Mapping[str, Sequence[str]],
    positive: Sequence[str],
    negative: Sequence[str],
    found: Sequence[Separator],
) -> str:
    """The case-file text: target, the groups under `texts:`, a selector per feature, and a case per feature."""
    spec = target.spec
    ref = spec.sae
    sae = f"{{path: {yaml_str(ref.path)}}}" if ref.path is not None else f"{{release: {yaml_str(ref.release or '')}, id: {yaml_str(ref.id or '')}}}"
    n_pos = sum(len(groups[g]) for g in positive)
    n_neg = sum(len(groups[g]) for g in negative)
    lines = [
        f"# Drafted by `interp-tests draft`: the {len(found)} features of {target.label} (d_sae {target.d_sae}) that best",
        f"# separate {', '.join(positive)} ({n_pos} texts) from {', '.join(negative)} ({n_neg} texts) by AUROC of per-text max activation.",
        MARGINS,
        "target:",
        f"  model: {yaml_str(spec.model)}",
    ]
    if spec.model_kwargs:
        lines.append(f"  model_kwargs: {json.dumps(dict(spec.model_kwargs), sort_keys=True)}")
    lines.append(f"  sae: {sae}")
    if spec.hook:
        lines.append(f"  hook: {yaml_str(spec.hook)}")
    lines += ["", "texts:"]
    for name, texts in groups.items():
        lines.append(f"  {yaml_str(name)}:")
        lines += [f"    - {yaml_str(t)}" for t in texts]
    lines += ["", "features:"]
    for s in found:
        if s.selector is not None:
            text, token = s.selector
            sel = f"most_active_on: {yaml_str(text)}" + (f", token: {yaml_str(token)}" if token is not None else "")
            lines.append(f"  feat_{s.feature}: {{{sel}}}   # resolves to #{s.feature} on this SAE")
        else:
            lines.append(f"  feat_{s.feature}: {s.feature}   # plain index: {s.note}")
    lines += ["", "cases:"]
    pos, neg = _groups(positive), _groups(negative)
    for s in found:
        name = f"feat_{s.feature}"
        url = target.url(s.feature)
        lines.append(f"  - id: feature-{s.feature}")
        lines.append(f"    description: {yaml_str(f'#{s.feature} separates the groups (AUROC {s.auroc:.4f})' + (f'; {url}' if url else ''))}")
        lines.append("    expect:")
        fires = s.fires_min
        if fires is not None:
            lines.append(f"      - fires:     {{feature: {name}, on: {pos}, min: {fires:.4f}}}   # smallest positive max {min(s.positive_max):.4f}")
        else:
            lines.append(f"      # fires omitted: #{s.feature} stays at 0 on at least one positive text")
        lines.append(f"      - silent:    {{feature: {name}, on: {neg}, max: {s.silent_max:.4f}}}   # largest negative max {max(s.negative_max):.4f}")
        lines.append(
            f"      - separates: {{feature: {name}, positive: {pos}, negative: {neg}, min_auroc: {s.min_auroc():.2f}}}   # observed AUROC {s.auroc:.4f}"
        )
    return "\n".join(lines) + "\n"

"""The `interp-tests` command line: inspect texts, read one feature's card, draft a case file.

Arguments and output only; the numbers come from `explore.py` and `draft.py`. Heavy libraries load when a
command runs, never at import (`interp-tests --help` does not import torch). Every error a user can cause
is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from ..common.errors import InputError, InterpTestsError

if TYPE_CHECKING:
    from ..compute.registry import Registry
    from .draft import Separator
    from .inspection import BundledTarget, FeatureCard, Inspected, Target, TargetSpec

PROG = "interp-tests"
WIDTH = 100


def paragraph(text: str) -> str:
    """Help text re-flowed to WIDTH columns (argparse's raw formatter prints it as is)."""
    return textwrap.fill(" ".join(text.split()), WIDTH, break_on_hyphens=False, break_long_words=False) + "\n"


TARGET_HELP = """\
target (default: the bundled pair, tiny-stdlib + tiny-stdlib-res:blocks.1.hook_resid_pre):
  --case FILE            a case file's target (its first SAE unless --sae is given)
  --model NAME --sae S   a TransformerLens or bundled model and an SAE: RELEASE:ID or a local PATH
"""

INSPECT_JSON = paragraph("""\
--json prints one object: {"command": "inspect", "model", "sae", "hook", "d_sae", "k", "neuronpedia_id" (null
when the SAE has none), "texts": [{"text", "n_tokens" (BOS excluded), "l0" (mean features > 0 per token),
"tokens": [{"position" (index in the tokenized text, BOS at 0), "token" (decoded alone), "bytes" (the token's bytes in hex where it is part of a character and decodes alone to U+FFFD, else null), "features": [{"feature",
"activation", "url" (null without a Neuronpedia id)}]}]}]}. Only features with activation > 0 are listed,
most active first.
""")

FEATURE_JSON = paragraph("""\
--json prints one object: {"command": "feature", "model", "sae", "hook", "d_sae", "feature", "url",
"source", "documents", "windows", "context", "tokens" (BOS excluded), "active_tokens", "density"
(active_tokens / tokens), "max_activation", "top_contexts": [{"activation", "tokens" (the window's tokens,
BOS at 0), "position" (index of the max token in tokens), "document" (0-based), "start" (index of the
window's first token after BOS in the document's tokens)}], "histogram": {"edges" (n+1 values, bins
[edge_i, edge_i+1) over active values), "counts" (n)}, "promoted" / "suppressed" ([{"token", "logit"}] of
W_dec[F] @ W_U, null when the decoder is not in the residual stream), "seconds", "tokens_per_s"}.
""")

DRAFT_JSON = paragraph("""\
Output: a table of the features on stderr, and a case-file stub on stdout (`... > cases/x.yaml`; it passes
under pytest as drafted). --json prints instead one object: {"command": "draft", "model", "sae", "hook",
"d_sae", "groups": {name: [texts]}, "positive": [group names], "negative": [group names], "features":
[{"feature", "auroc", "gap", "positive_max" (per text), "negative_max", "selector" ({"most_active_on",
"token"} or null), "note", "url", "fires_min" (null when omitted), "silent_max", "min_auroc"}], "stub"
(the case-file text)}.
""")


TRANSFORMER_LENS_HELP = (
    "run the bundled pair through TransformerLens and SAELens instead of plain torch (which starts 4-6 s sooner; "
    "the same values, up to float rounding when several texts are batched)"
)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser() -> Parser:
    common = Parser(add_help=False)
    group = common.add_argument_group("target and output")
    group.add_argument("--case", metavar="FILE", help="take the target (and, where asked, the texts) from this case file")
    group.add_argument("--model", metavar="NAME", help="a TransformerLens model name or a bundled model (default tiny-stdlib)")
    group.add_argument("--sae", metavar="SPEC", help="RELEASE:ID (SAELens registry or bundled) or PATH to a SAELens-format directory")
    group.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    group.add_argument("--dtype", default="float32", help="float32 (default), float16, bfloat16, float64")
    group.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's own choice)")
    group.add_argument("--json", action="store_true", help="machine-readable output on stdout (keys below)")

    fmt = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog=PROG,
        formatter_class=fmt,
        description="Look at SAE features from the command line, and draft interp-tests case files.",
        epilog=TARGET_HELP + "\nerrors: one line on stderr, exit status 2",
    )
    sub = parser.add_subparsers(dest="command", metavar="{inspect,feature,draft,calibrate}", required=True, parser_class=Parser)

    p = sub.add_parser(
        "inspect", parents=[common], formatter_class=fmt, help="top features per token of each text",
        description="Per token of each text (BOS excluded): the top-k features and their activations.",
        epilog=TARGET_HELP + "\n" + INSPECT_JSON,
    )
    p.add_argument("texts", nargs="+", metavar="TEXT", help="texts to inspect (each tokenized with BOS)")
    p.add_argument("-k", type=int, default=5, help="features per token (default 5)")
    p.add_argument("--transformer-lens", action="store_true", help=TRANSFORMER_LENS_HELP)

    p = sub.add_parser(
        "feature", parents=[common], formatter_class=fmt, help="one feature's card: top contexts, density, histogram, logits",
        description=paragraph(
            "One feature's card over a text file (streamed: memory stays flat in its size), inline texts, or a case "
            "file's text groups: max-activating contexts, activation histogram and density, the output tokens its "
            "decoder direction promotes and suppresses, and its Neuronpedia URL."
        ),
        epilog=TARGET_HELP + "\n" + FEATURE_JSON,
    )
    p.add_argument("feature", type=int, metavar="F", help="feature index in [0, d_sae)")
    p.add_argument("--file", metavar="PATH", help="a UTF-8 text file of documents separated by blank lines (any size)")
    p.add_argument("--lines", action="store_true", help="with --file: every non-blank line is one document")
    p.add_argument("--text", action="append", default=[], metavar="TEXT", help="an inline document (repeatable)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="max-activating contexts to show (default 10)")
    p.add_argument("--context", type=int, default=128, metavar="T", help="window length in tokens, BOS included (default 128)")
    p.add_argument("--batch-tokens", type=int, default=4096, metavar="N", help="padded tokens per forward batch (default 4096)")

    p = sub.add_parser(
        "draft", parents=[common], formatter_class=fmt, help="draft a case file from positive and negative texts",
        description=paragraph(
            "The features that best separate two groups of texts (AUROC of per-text max activation, ties broken by "
            "the gap of mean max activation), and a case-file stub with fires / silent / separates claims for each. "
            "With --case FILE, --positive and --negative name that file's text groups instead of giving texts."
        ),
        epilog=TARGET_HELP + "\n" + DRAFT_JSON,
    )
    p.add_argument("--positive", nargs="+", required=True, metavar="TEXT", help="texts (or, with --case, group names)")
    p.add_argument("--negative", nargs="+", required=True, metavar="TEXT", help="texts (or, with --case, group names)")
    p.add_argument("--n", type=int, default=3, help="features to draft (default 3)")
    p.add_argument("--transformer-lens", action="store_true", help=TRANSFORMER_LENS_HELP)

    p = sub.add_parser(
        "calibrate", formatter_class=fmt, help="what tolerance a token budget supports: each value's 95%% interval, and the tokens a drift needs",
        description=paragraph(
            "Runs the case file's checks that have an interval (explained variance, MSE, cosine, L0, dead and dense "
            "fraction, density, CE loss score, delta loss, KL) and prints each value with its 95% interval at the "
            "current budget, the budget at which the interval's half-width equals a chosen drift, and the budget that "
            "detects that drift between two checkpoints (80% power, 5% level): unpaired, and with --sae (a candidate "
            "against the case file's SAE on the same windows) paired."
        ),
        epilog="--json prints one object: {\"command\": \"calibrate\", \"case_file\", \"values\": [{\"case_id\", \"check\", \"where\", \"sae\", \"observed\", "
               "\"interval\", \"tokens\", \"drift\", \"half_width\", \"tokens_for_half_width\", \"tokens_to_detect_unpaired\", \"tokens_to_detect_paired\", \"paired_se\"}]}",
    )
    p.add_argument("case_file", metavar="CASEFILE", help="a case file whose cases read a corpus or texts")
    p.add_argument("--sae", metavar="SPEC", help="a candidate in place of the case file's SAE (as --interp-sae takes): adds the paired budget")
    p.add_argument("--drift", action="append", default=[], metavar="[CHECK=]D", help="the drift to detect (repeatable; default 0.005 for bounded scores, 1%% of the value otherwise)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--dtype", default="float32", help="float32 (default), float16, bfloat16, float64")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout (keys below)")
    return parser


# ----------------------------------------------------------------------------- helpers
def short(value: str, width: int) -> str:
    """repr(value), cut to `width` characters with '...' when longer."""
    r = repr(value)
    return r if len(r) <= width else r[: width - 3] + "..."


def escaped(value: str) -> str:
    """The inside of repr(value): newlines and quotes made visible, no surrounding quotes."""
    return repr(value)[1:-1]


def emit_json(obj: dict[str, Any], out: IO[str]) -> None:
    json.dump(obj, out, indent=2, ensure_ascii=False)
    out.write("\n")


def header(target: Target | BundledTarget) -> dict[str, Any]:
    return {"model": target.spec.model, "sae": target.label, "hook": target.hook, "d_sae": target.d_sae}


def target_of(args: argparse.Namespace) -> tuple[TargetSpec, Registry]:
    """What --case / --model / --sae name, and a registry for --device / --dtype (--threads applied)."""
    from ..compute.registry import Registry, resolve_device, torch_dtype
    from .inspection import target_spec

    spec = target_spec(args.model, args.sae, args.case)
    torch_dtype(args.dtype)
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise InputError(f"Could not parse value: {args.threads!r} for --threads: give a number >= 1")
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except InputError as exc:
        raise InputError(str(exc).replace("--interp-device", "--device")) from None
    return spec, Registry(device=device, dtype=args.dtype)


def load(args: argparse.Namespace) -> Target:
    from .inspection import load_target

    return load_target(*target_of(args))


def load_quick(args: argparse.Namespace) -> Target | BundledTarget:
    """inspect's and draft's target: on plain torch where it can be, unless --transformer-lens."""
    from .inspection import load_quick_target, load_target

    spec, registry = target_of(args)
    return load_target(spec, registry) if args.transformer_lens else load_quick_target(spec, registry)


def no_links_note(target: Target | BundledTarget) -> str:
    return f"Neuronpedia: no id for {target.label} in the SAE registry, so no links"


# ----------------------------------------------------------------------------- inspect
def cmd_inspect(args: argparse.Namespace, out: IO[str]) -> None:
    import torch

    from .inspection import check_texts, inspect_texts

    check_texts(args.texts)
    if args.k < 1:
        raise InputError(f"Could not parse value: {args.k!r} for -k: give a number of features >= 1")
    target = load_quick(args)
    with torch.inference_mode():
        results = inspect_texts(target, args.texts, args.k)
    if args.json:
        emit_json({"command": "inspect", **header(target), "k": args.k, "neuronpedia_id": target.np_id, "texts": [inspected_json(target, r) for r in results]}, out)
        return
    out.write(f"SAE {target.label} (d_sae {target.d_sae})\nmodel {target.spec.model}, hook {target.hook}: top {args.k} features per token\n")
    if target.np_id is None:
        out.write(no_links_note(target) + "\n")
    for n, r in enumerate(results, start=1):
        out.write("\n" + render_inspected(target, n, r))


def inspected_json(target: Target | BundledTarget, r: Inspected) -> dict[str, Any]:
    return {
        "text": r.text,
        "n_tokens": r.n_tokens,
        "l0": r.l0,
        "tokens": [
            {"position": row.position, "token": row.token, "bytes": None if row.token_bytes is None else row.token_bytes.hex(), "features": [{"feature": f, "activation": a, "url": target.url(f)} for f, a in row.features]}
            for row in r.rows
        ],
    }


def render_inspected(target: Target | BundledTarget, n: int, r: Inspected) -> str:
    tok_w = min(16, max([len(row.shown) for row in r.rows] + [5]))
    lines = [f"text {n}: {short(r.text, WIDTH - 40)}  ({r.n_tokens} tokens, L0 {r.l0:.1f})", f"  {'pos':>4}  {'token':<{tok_w}}  top features (activation)"]
    seen: dict[int, None] = {}
    for row in r.rows:
        feats = "  ".join(f"#{f} {a:.3f}" for f, a in row.features) or "(no feature > 0)"
        shown = row.shown if len(row.shown) <= tok_w else row.shown[: tok_w - 3] + "..."
        lines.append(f"  {row.position:>4}  {shown:<{tok_w}}  {feats}")
        seen.update(dict.fromkeys(f for f, _ in row.features))
    if target.np_id is not None:
        lines.append("  links:")
        lines += [f"    #{f:<6} {target.url(f)}" for f in seen]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- feature
def cmd_feature(args: argparse.Namespace, out: IO[str]) -> None:
    from .inspection import check_texts, feature_card, iter_documents

    target = load(args)
    target.check_feature(args.feature)
    given = [bool(args.file), bool(args.text)].count(True)
    if given > 1:
        raise InputError("give either --file or --text, not both")
    docs: Any
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise InputError(f"cannot read --file {args.file!r}: no such file (or not a regular file)")
        docs, source = iter_documents(path, per_line=args.lines), f"file {args.file}"
    elif args.text:
        docs, source = check_texts(args.text), f"{len(args.text)} inline texts"
    elif target.spec.case is not None:
        groups = target.spec.case.model.texts
        if not groups:
            raise InputError(f"case file {str(target.spec.case.path)!r} has no texts: give --file or --text")
        docs = list(dict.fromkeys(t for name in groups for t in target.spec.case.model.text_list(name)))
        source = f"the text groups of {target.spec.case.path} ({', '.join(groups)})"
    else:
        raise InputError("give the texts to read: --file PATH, --text TEXT (repeatable), or --case FILE for its text groups")
    card = feature_card(target, args.feature, docs, source, top_n=args.top, context=args.context, batch_tokens=args.batch_tokens)
    if args.json:
        emit_json(card_json(target, card), out)
    else:
        out.write(render_card(target, card))


def card_json(target: Target, c: FeatureCard) -> dict[str, Any]:
    def logits(pairs: Any) -> Any:
        return None if pairs is None else [{"token": t, "logit": v} for t, v in pairs]

    return {
        "command": "feature",
        **header(target),
        "feature": c.feature,
        "url": c.url,
        "source": c.source,
        "documents": c.documents,
        "windows": c.windows,
        "context": c.context,
        "tokens": c.tokens,
        "active_tokens": c.active,
        "density": c.density,
        "max_activation": c.max_activation,
        "top_contexts": [
            {"activation": x.activation, "tokens": list(x.tokens), "position": x.position, "document": x.document, "start": x.start} for x in c.top
        ],
        "histogram": {"edges": list(c.edges), "counts": list(c.counts)},
        "promoted": logits(c.promoted),
        "suppressed": logits(c.suppressed),
        "seconds": c.seconds,
        "tokens_per_s": c.tokens_per_s,
    }


def context_line(tokens: Sequence[str], position: int, width: int) -> str:
    """`...left[[token]]right...` in `width` characters, repr-escaped, the max token in the middle."""
    mid = f"[[{escaped(tokens[position])}]]"
    side = max(8, (width - len(mid)) // 2)
    left = escaped("".join(tokens[1:position]))
    right = escaped("".join(tokens[position + 1 :]))
    if len(left) > side:
        left = "..." + left[-(side - 3) :]
    if len(right) > side:
        right = right[: side - 3] + "..."
    return left + mid + right


def render_card(target: Target, c: FeatureCard) -> str:
    lines = [
        f"feature #{c.feature} of SAE {target.label} (d_sae {target.d_sae})",
        f"model {target.spec.model}, hook {target.hook}",
        f"Neuronpedia: {c.url}" if c.url else no_links_note(target),
        f"source: {c.source}",
        f"  {c.documents:,} documents, {c.windows:,} windows of <= {c.context} tokens (BOS included)",
        f"density: {c.density:.6f} ({c.active:,} of {c.tokens:,} tokens > 0)   max activation {c.max_activation:.4f}",
        "",
    ]
    if c.top:
        lines.append(f"top {len(c.top)} contexts (one per window, by its max activation; the max token in [[ ]]):")
        for x in c.top:
            lines.append(f"  {x.activation:8.4f}  {context_line(x.tokens, x.position, WIDTH - 12)}")
    else:
        lines.append("the feature is never active (> 0) on these texts: no contexts, no histogram")
    if c.counts:
        lines += ["", f"activation histogram ({sum(c.counts):,} active tokens):"]
        most = max(c.counts) or 1
        for lo, hi, n in zip(c.edges, c.edges[1:], c.counts):
            lines.append(f"  [{lo:8.4f}, {hi:8.4f})  {n:>10,}  {'#' * round(40 * n / most)}")
    if c.promoted is not None and c.suppressed is not None:
        lines += ["", "decoder direction W_dec[F] @ W_U:", f"  {'promotes':<26}  suppresses"]
        for (ut, uv), (dt, dv) in zip(c.promoted, c.suppressed):
            lines.append(f"  {short(ut, 16):<16} {uv:+8.4f}  {short(dt, 16):<16} {dv:+8.4f}")
    else:
        lines += ["", "decoder direction: not in the residual stream (d_in != d_model), no logit effects"]
    lines += ["", f"read {c.tokens:,} tokens in {c.seconds:.2f} s: {c.tokens_per_s:,.0f} tokens/s"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- draft
def cmd_draft(args: argparse.Namespace, out: IO[str]) -> None:
    import torch

    from .draft import separators, stub

    target = load_quick(args)
    groups: dict[str, tuple[str, ...]]
    if target.spec.case is not None and args.case is not None:
        have = target.spec.case.model.texts
        for name in [*args.positive, *args.negative]:
            if name not in have:
                raise InputError(f"--positive/--negative name text groups of {args.case} with --case: no group {name!r} (groups: {', '.join(have) or 'none'})")
        positive, negative = list(dict.fromkeys(args.positive)), list(dict.fromkeys(args.negative))
        groups = {g: target.spec.case.model.text_list(g) for g in dict.fromkeys([*positive, *negative])}
    else:
        positive, negative = ["positive"], ["negative"]
        groups = {"positive": tuple(args.positive), "negative": tuple(args.negative)}
    pos_texts = [t for g in positive for t in groups[g]]
    neg_texts = [t for g in negative for t in groups[g]]
    with torch.inference_mode():
        found = separators(target, pos_texts, neg_texts, args.n)
    text = stub(target, groups, positive, negative, found)
    if args.json:
        emit_json(
            {
                "command": "draft",
                **header(target),
                "groups": {g: list(t) for g, t in groups.items()},
                "positive": positive,
                "negative": negative,
                "features": [separator_json(target, s) for s in found],
                "stub": text,
            },
            out,
        )
        return
    sys.stderr.write(render_separators(target, found))
    out.write(text)


def separator_json(target: Target | BundledTarget, s: Separator) -> dict[str, Any]:
    return {
        "feature": s.feature,
        "auroc": s.auroc,
        "gap": s.gap,
        "positive_max": list(s.positive_max),
        "negative_max": list(s.negative_max),
        "selector": None if s.selector is None else {"most_active_on": s.selector[0], "token": s.selector[1]},
        "note": s.note,
        "url": target.url(s.feature),
        "fires_min": s.fires_min,
        "silent_max": s.silent_max,
        "min_auroc": s.min_auroc(),
    }


def render_separators(target: Target | BundledTarget, found: Sequence[Separator]) -> str:
    lines = [
        f"features of {target.label} that best separate the groups",
        "(AUROC of each text's max activation; mean gap: positive mean - negative mean of those maxima):",
        f"  {'feature':>8}  {'AUROC':>6}  {'mean gap':>8}  {'pos min':>8}  {'neg max':>8}  selector",
    ]
    for s in found:
        if s.selector is not None:
            sel = f"most_active_on {short(s.selector[0], 30)}" + (f" token {short(s.selector[1], 12)}" if s.selector[1] is not None else "")
        else:
            sel = "(plain index)"
        lines.append(f"  {'#' + str(s.feature):>8}  {s.auroc:6.3f}  {s.gap:+8.4f}  {min(s.positive_max):8.4f}  {max(s.negative_max):8.4f}  {sel}")
        if target.url(s.feature):
            lines.append(f"  {'':>8}  {target.url(s.feature)}")
    return "\n".join(lines) + "\n"


def cmd_calibrate(args: argparse.Namespace, out: IO[str]) -> None:
    from ..common.files import PathError, checked_file
    from ..compute.registry import resolve_device, torch_dtype
    from .calibration import calibrate, parse_drifts, render

    drifts = parse_drifts(args.drift)
    try:
        path = checked_file(Path(args.case_file), "case file")
    except PathError as exc:
        raise InputError(str(exc)) from None
    torch_dtype(args.dtype)
    rows = calibrate(path, args.sae, drifts, device=resolve_device(args.device), dtype=args.dtype)
    if args.json:
        emit_json({"command": "calibrate", "case_file": str(path), "values": [r.as_dict() for r in rows]}, out)
        return
    on = f"{args.sae} (against the case file's SAE, paired)" if args.sae else (rows[0].sae if rows else "-")
    out.write(f"calibration of {path} on {on}\n" + render(rows))


# ----------------------------------------------------------------------------- main
COMMANDS = {"inspect": cmd_inspect, "feature": cmd_feature, "draft": cmd_draft, "calibrate": cmd_calibrate}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 a usage or input error, 1 an internal error)."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args, sys.stdout)
        sys.stdout.flush()
    except InterpTestsError as exc:
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        print(f"{PROG}: error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(f"  {line}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `interp-tests ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0

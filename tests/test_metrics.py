"""Observed values agree with an independent, notebook-style computation on the bundled pair (to 1e-4).

The independent side uses only TransformerLens and SAELens, one text at a time, as CASES.md reads.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import pytest

from .helpers import case_file

HOOK = "blocks.1.hook_resid_pre"
TEXTS = [
    "def add(a, b):\n    return a + b",
    "Return the number of items in the list.",
    "import os\nimport sys\n\nprint(os.getcwd())",
    "This module provides functions for parsing dates and times.",
]
CASES = """\
texts:
  mixed:
{texts}
cases:
  - id: all-metrics
    on: mixed
    expect:
      - explained_variance: {{min: -1000}}
      - explained_variance_legacy: {{min: -1000}}
      - mse: {{max: 1000}}
      - cosine: {{min: -1}}
      - l0: {{min: 0}}
      - dead_fraction: {{max: 1}}
      - ce_loss_score: {{min: -1000}}
      - delta_loss: {{max: 1000}}
      - kl_div: {{max: 1000}}
"""


def _independent(model: Any, sae: Any) -> dict[str, float]:
    import torch

    xs, xhats, feats, ce = [], [], [], {"orig": [], "sae": [], "zero": []}
    kls = []
    with torch.no_grad():
        for text in TEXTS:
            tokens = model.to_tokens(text)
            logits, cache = model.run_with_cache(tokens)
            x = cache[HOOK][0]
            f = sae.encode(x)
            xs.append(x[1:].numpy().astype(np.float64))
            feats.append(f[1:].numpy().astype(np.float64))
            xhats.append(sae.decode(f)[1:].numpy().astype(np.float64))

            def patch(value: Any, tokens: Any = tokens) -> Any:
                def hook(act: Any, hook: Any) -> Any:
                    act = act.clone()
                    act[:, 1:] = value(act[:, 1:])
                    return act

                return model.run_with_hooks(tokens, fwd_hooks=[(HOOK, hook)])

            runs = {"orig": logits, "sae": patch(lambda a: sae.decode(sae.encode(a))), "zero": patch(torch.zeros_like)}
            target = tokens[0, 2:].numpy()
            for name, lg in runs.items():
                lp = torch.log_softmax(lg[0, 1:-1].double(), -1).numpy()
                ce[name].extend(-lp[np.arange(len(target)), target])
            p = torch.log_softmax(runs["orig"][0, 1:-1].double(), -1).numpy()
            q = torch.log_softmax(runs["sae"][0, 1:-1].double(), -1).numpy()
            kls.extend((np.exp(p) * (p - q)).sum(-1))
    x, xh, f = np.concatenate(xs), np.concatenate(xhats), np.concatenate(feats)
    mu = x.mean(0)
    ce_m = {k: float(np.mean(v)) for k, v in ce.items()}
    cos = (x * xh).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(xh, axis=1))
    return {
        "explained_variance": 1 - ((x - xh) ** 2).sum() / ((x - mu) ** 2).sum(),
        "explained_variance_legacy": float(np.mean(1 - ((x - xh) ** 2).sum(1) / ((x - mu) ** 2).sum(1))),
        "mse": float(((x - xh) ** 2).mean()),
        "cosine": float(cos.mean()),
        "l0": float((f > 0).sum(1).mean()),
        "dead_fraction": float(1 - (f > 0).any(0).mean()),
        "ce_loss_score": (ce_m["zero"] - ce_m["sae"]) / (ce_m["zero"] - ce_m["orig"]),
        "delta_loss": ce_m["sae"] - ce_m["orig"],
        "kl_div": float(np.mean(kls)),
    }


def test_observed_values_match_an_independent_computation(pytester: pytest.Pytester, interp_model: Any, interp_sae: Any) -> None:
    texts = "\n".join(f"    - {json.dumps(t)}" for t in TEXTS)  # a JSON string is a YAML scalar
    case_file(pytester, "metrics", CASES.format(texts=texts))
    xml = pytester.path / "junit.xml"
    pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={xml}").assert_outcomes(passed=1)
    props = {p.get("name"): float(p.get("value")) for p in ET.parse(xml).getroot().iter("property") if p.get("name", "").endswith(".observed")}
    want = _independent(interp_model, interp_sae)
    for name, value in want.items():
        assert props[f"{name}.observed"] == pytest.approx(value, abs=1e-4), name


FEATURE_TEXTS = {
    "code": ["def add(a, b):\n    return a + b", "def parse(text):\n    return text.split()", "class Foo:\n    def bar(self):\n        return 1"],
    "prose": ["Return the number of items in the list.", "See the documentation for more details."],
    "short": ["import os"],
}
FEATURE_CASES = """\
texts:
{groups}
features:
  by_token: {{most_active_on: "def f(x):\\n    return x", token: " return"}}
  by_text: {{most_active_on: "Return the number of items in the list."}}
  plain: 7
cases:
  - id: features
    on: [code, prose]
    expect:
      - fires: {{feature: by_token, on: code, token: " return", min: -100}}
      - fires: {{feature: by_text, min: -100}}
      - silent: {{feature: plain, max: 100}}
      - separates: {{feature: by_token, positive: code, negative: [prose, short], min_auroc: 0}}
      - separates: {{feature: by_text, positive: [prose], negative: code, min_auroc: 0}}
      - top_k: {{feature: by_token, on: code, token: " return", k: 10000}}
      - top_k: {{feature: by_text, on: prose, token: " the", k: 10000}}
  - id: most-active
    on: prose
    expect:
      - most_active: {{feature: by_token}}
  - id: steer-add
    steer: {{feature: by_token, strength: 6.0}}
    prompt: "The value of the"
    expect:
      - logprob_shift: {{tokens: [" return", " the"], min: -100}}
      - kl: {{}}
      - generates: {{none_of: ["@@@"], max_new_tokens: 7}}
  - id: steer-clamp-prompt
    steer: {{feature: by_token, strength: 9.0, mode: clamp, positions: prompt}}
    prompt: "The value of the"
    expect:
      - logprob_shift: {{tokens: [" return"], min: -100}}
      - kl: {{max: 1000}}
      - generates: {{none_of: ["@@@"], max_new_tokens: 5}}
"""


def _feature_oracle(model: Any, sae: Any) -> dict[str, list[Any]]:
    """Every observed value of FEATURE_CASES, per case, in check order, computed one text at a time."""
    import torch

    def acts(text: str) -> tuple[list[str], Any]:
        _, cache = model.run_with_cache(model.to_tokens(text))
        return model.to_str_tokens(text)[1:], sae.encode(cache[HOOK][0])[1:]  # BOS dropped

    def rows(text: str, token: str | None) -> Any:
        toks, a = acts(text)
        return a[[i for i, t in enumerate(toks) if token is None or t == token]]

    def most_active_on(text: str, token: str | None = None) -> int:
        m = rows(text, token).max(0).values
        return int(torch.nonzero(m == m.max())[0])  # ties: the lowest index

    def fmax(f: int, text: str, token: str | None = None) -> float:
        return float(rows(text, token)[:, f].max())

    def auroc(pos: list[float], neg: list[float]) -> float:
        return float(np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg]))

    def worst_rank(f: int, texts: list[str], token: str | None) -> int:
        if token is None:  # most_active: rank of the feature's largest among every feature's largest
            return max(1 + int((m > m[f]).sum()) for m in (rows(t, None).max(0).values for t in texts))
        return max(1 + int((r > r[f]).sum()) for t in texts for r in rows(t, token))

    g = FEATURE_TEXTS
    by_token, by_text, plain = most_active_on("def f(x):\n    return x", " return"), most_active_on(g["prose"][0]), 7
    both = g["code"] + g["prose"]
    W = sae.W_dec

    def steered(prompt: str, f: int, strength: float, mode: str, positions: str, targets: list[str], new: int) -> list[Any]:
        tokens = model.to_tokens(prompt)
        n = tokens.shape[1]

        def hook(act: Any, hook: Any) -> Any:
            act = act.clone()
            span = slice(1, None if positions == "all" else n)  # never BOS
            x = act[:, span]
            if mode == "add":
                act[:, span] = x + strength * W[f]
            else:
                z = sae.encode(x)
                z2 = z.clone()
                z2[..., f] = strength
                act[:, span] = x + sae.decode(z2) - sae.decode(z)
            return act

        def run(t: Any, steer: bool) -> Any:
            return model.run_with_hooks(t, fwd_hooks=[(HOOK, hook)]) if steer else model(t)

        base = torch.log_softmax(run(tokens, False)[0, -1].double(), -1)
        moved = torch.log_softmax(run(tokens, True)[0, -1].double(), -1)
        shift = float(np.mean([float(moved[i] - base[i]) for i in (model.to_single_token(t) for t in targets)]))
        kl = float((base.exp() * (base - moved)).sum())
        t = tokens
        for _ in range(new):  # greedy, full recompute each step
            t = torch.cat([t, run(t, True)[0, -1].argmax().view(1, 1)], 1)
        return [shift, kl, model.to_string(t[0, n:])]

    with torch.no_grad():
        return {
            "features": [
                min(fmax(by_token, t, " return") for t in g["code"]),
                min(fmax(by_text, t) for t in both),
                max(fmax(plain, t) for t in both),
                auroc([fmax(by_token, t) for t in g["code"]], [fmax(by_token, t) for t in g["prose"] + g["short"]]),
                auroc([fmax(by_text, t) for t in g["prose"]], [fmax(by_text, t) for t in g["code"]]),
                worst_rank(by_token, g["code"], " return"),
                worst_rank(by_text, g["prose"], " the"),
            ],
            "most-active": [worst_rank(by_token, g["prose"], None)],
            "steer-add": steered("The value of the", by_token, 6.0, "add", "all", [" return", " the"], 7),
            "steer-clamp-prompt": steered("The value of the", by_token, 9.0, "clamp", "prompt", [" return"], 5),
        }


def test_feature_and_steering_values_match_an_independent_computation(pytester: pytest.Pytester, interp_model: Any, interp_sae: Any) -> None:
    groups = "\n".join(f"  {name}:\n" + "\n".join(f"    - {json.dumps(t)}" for t in texts) for name, texts in FEATURE_TEXTS.items())
    case_file(pytester, "features", FEATURE_CASES.format(groups=groups))
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={xml}")
    want = _feature_oracle(interp_model, interp_sae)
    # most_active and the second top_k fail here (by_token is silent on prose; by_text is inactive on one ' the'),
    # so their ranks are real numbers, not the 1 of a pass
    assert want["most-active"][0] > 1 and want["features"][6] > 1
    result.assert_outcomes(passed=2, failed=2)
    for case in ET.parse(xml).getroot().iter("testcase"):
        got = [p.get("value") for p in case.iter("property") if p.get("name", "").endswith(".observed")]
        expected = want[case.get("name", "")]
        assert len(got) == len(expected), case.get("name")
        for g, w in zip(got, expected):
            if isinstance(w, str):
                assert g == w, case.get("name")
            else:
                assert float(g) == pytest.approx(w, abs=1e-4), case.get("name")

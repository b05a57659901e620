"""Observed values agree with an independent, notebook-style computation on the bundled pair (to 1e-4)."""

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

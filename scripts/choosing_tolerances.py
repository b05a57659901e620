"""The example of docs/CASES.md, "Choosing tolerances": three copies of the bundled SAE with Gaussian noise of
growing scale on every weight, compared with the bundled SAE on 10,000 held-out tokens, under the default
tolerances and under `tolerance="auto"`; prints the Markdown tables the docs show.

    .venv/bin/python scripts/choosing_tolerances.py [--tokens 10000] [--scales 0.02,0.06,0.2]

Runs offline on the bundled pair (a few minutes on 2 CPU cores). The copies are written to a temporary
directory and removed at the end.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

HOOK = "blocks.1.hook_resid_pre"
CHECKS = ("explained_variance", "ce_loss_score", "kl_div")
CASES = """\
target: {{model: tiny-stdlib, sae: {{release: tiny-stdlib-res, id: {hook}}}}}
texts:
  heldout: {{corpus: {{bundled: tiny-stdlib-heldout, tokens: {tokens}, context: 128, seed: 0}}}}
cases:
  - id: fidelity
    on: heldout
    expect:
      - explained_variance: {{min: 0.0}}
      - ce_loss_score: {{min: 0.0}}
      - kl_div: {{max: 100.0}}
"""


def noisy_copy(path: Path, scale: float, seed: int = 0) -> Path:
    """The bundled SAE with N(0, (scale * std(W))^2) added to each parameter W, saved in SAELens's format."""
    import torch
    from sae_lens import SAE

    from interp_tests.cases.schema import SaeRef
    from interp_tests.compute.registry import Registry

    sae: SAE[Any] = Registry().sae(SaeRef(release="tiny-stdlib-res", id=HOOK))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(torch.randn(p.shape, generator=g) * p.std() * scale)
    sae.save_model(str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=10_000)
    parser.add_argument("--scales", default="0.02,0.06,0.2")
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",")]

    from interp_tests import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = root / "fidelity.yaml"
        cases.write_text(CASES.format(hook=HOOK, tokens=args.tokens))
        evaluate(cases, update=True, offline=True)  # the reference's values and intervals, recorded
        copies = {f"noise {s:g}": str(noisy_copy(root / f"noise-{s:g}", s)) for s in scales}
        runs = {tol: evaluate(cases, saes=copies, compare=True, offline=True, tolerance=None if tol == "default" else "auto").document
                for tol in ("default", "auto")}

    values = {(c["checkpoint"], v["check"]): v for c in runs["auto"]["cases"] for v in c["verdicts"]}
    reference = {r["check"]: r["reference"] for r in runs["auto"]["drift"]}
    print(f"Reference (bundled SAE, {args.tokens:,} held-out tokens): " + ", ".join(
        f"{k} {reference[k]:.4f}" for k in CHECKS if k in reference))
    print()
    print("| copy | check | value [95% CI] | difference [95% CI, paired] | default tolerance | auto |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = {tol: {(r["checkpoint"], r["check"]): r for r in doc["drift"]} for tol, doc in runs.items()}
    for label in copies:
        for check in CHECKS:
            auto, default, value = rows["auto"].get((label, check)), rows["default"].get((label, check)), values.get((label, check))
            if auto is None or default is None or value is None:
                continue
            ci = value.get("interval")
            diff = auto.get("delta_interval")
            print(f"| {label} | {check} | {value['observed']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
                  + f" | {auto['delta']:+.4f}" + (f" [{diff[0]:+.4f}, {diff[1]:+.4f}]" if diff else "")
                  + f" | {'pass' if default['ok'] else 'DRIFT'} ({default['tolerance']}) | {'pass' if auto['ok'] else 'DRIFT'} |")


if __name__ == "__main__":
    main()

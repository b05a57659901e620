"""Intervals: the bootstrap over windows (compute/bootstrap.py) against a direct bootstrap that recomputes each
resample from its windows, its coverage on synthetic data with a known value, its 1/sqrt(tokens) scaling, the
reports that show it, `baseline: auto` on noisy copies of the bundled SAE, and `interp-tests calibrate`."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import pytest

from . import checkpoints
from .helpers import case_file

HOOK = "blocks.1.hook_resid_pre"


# ----------------------------------------------------------------------------- the bootstrap itself
def test_resampled_values_equal_a_direct_bootstrap_over_recomputed_windows(interp_model: Any, interp_sae: Any) -> None:
    """For each of a few resamples, the statistics computed from the per-window sums equal the same statistics
    computed from scratch on the resample's windows (their tokens repeated as drawn) to 1e-9."""
    import torch

    from interp_tests.cases.schema import CorpusSpec
    from interp_tests.compute import metrics
    from interp_tests.compute.bootstrap import resample_counts, resampled
    from interp_tests.compute.corpus import Corpus
    from interp_tests.compute.corpus_pass import _windows_batches, run_pass
    from interp_tests.compute.engine import HookCache, ModelCache, SaeEngine

    engine = SaeEngine(HookCache(interp_model, HOOK, 1024, shared=ModelCache(interp_model, 1024)), interp_sae, "sae")
    corpus = Corpus(CorpusSpec(bundled="tiny-stdlib-heldout", tokens=1500, context=64), Path("."), "heldout")
    stats = run_pass([engine], corpus, with_loss={id(engine)}, progress=None)[0]
    assert stats.units is not None
    windows: list[dict[str, Any]] = []  # per window: x, x_hat, feats and its predictions' CE / KL
    from interp_tests.compute.engine import encode_and_decode
    from interp_tests.compute.losses import LossBatch, clean_forward, input_hooks, spliced_logits

    captured = input_hooks([HOOK], int(interp_model.cfg.n_layers))
    with torch.inference_mode():  # each window's own values, by the pass's functions (the aggregation is what is tested)
        for _, tokens, mask, keep in _windows_batches(engine, corpus):
            logits, acts = clean_forward(interp_model, captured, tokens, mask)
            batch = LossBatch.of(logits, tokens, mask)
            x_all = acts[HOOK]
            feats_rows, x_hat_rows = [], []
            x = x_all[keep]
            feats, x_hat = encode_and_decode(interp_sae, x, engine.encode_tokens)
            zero = batch.ce(spliced_logits(interp_model, HOOK, acts, tokens, mask, keep, None))
            sae_ce, kl = batch.ce_and_kl(spliced_logits(interp_model, HOOK, acts, tokens, mask, keep, x_hat))
            per_row = {"orig": batch.rows(batch.clean_ce), "sae": batch.rows(sae_ce), "zero": batch.rows(zero), "kl": batch.rows(kl)}
            token_rows = keep.sum(-1).tolist()
            pieces = {"x": x.double().split(token_rows), "x_hat": x_hat.double().split(token_rows), "feats": feats.double().split(token_rows)}
            for row in range(tokens.shape[0]):
                windows.append({**{k: v[row] for k, v in pieces.items()}, "loss": {k: v[row].double() for k, v in per_row.items()}})
            del feats_rows, x_hat_rows, x_all
    assert len(windows) == stats.units.units >= 20
    counts = resample_counts(len(windows), 6, seed=7)
    feature = int(torch.cat([w["feats"] for w in windows]).gt(0).sum(0).argmax())
    for c in counts:
        drawn = [w for w, times in zip(windows, c.tolist()) for _ in range(int(times))]
        x = torch.cat([w["x"] for w in drawn])
        x_hat = torch.cat([w["x_hat"] for w in drawn])
        feats = torch.cat([w["feats"] for w in drawn])
        ce = {key: torch.cat([w["loss"][key] for w in drawn]).mean().item() for key in ("orig", "sae", "zero", "kl")}
        direct = {
            "explained_variance": metrics.explained_variance(x, x_hat),
            "mse": metrics.mse(x, x_hat),
            "cosine": metrics.cosine(x, x_hat),
            "l0": metrics.l0(feats),
            "dead_fraction": metrics.dead_fraction(feats),
            "dense_fraction": float(((feats > 0).double().mean(0) > 0.01).double().mean()),
            "density": float((feats[:, feature] > 0).double().mean()),
            "kl_div": ce["kl"],
            "delta_loss": ce["sae"] - ce["orig"],
            "ce_loss_score": (ce["zero"] - ce["sae"]) / (ce["zero"] - ce["orig"]),
        }
        for name, value in direct.items():
            params = {"above": 0.01} if name == "dense_fraction" else {"feature": feature} if name == "density" else {}
            got = float(resampled(stats.units, name, c.unsqueeze(0), **params)[0])
            assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (name, got, value)


def synthetic_units(rng: Any, windows: int, true_mean: float) -> Any:
    """Windows of 8-40 tokens; each window's tokens share a window effect (correlated within the window), so a
    bootstrap over tokens would be too narrow and one over windows is right. The statistic is the mean over
    tokens (as L0 is), whose true value is `true_mean`."""
    import torch

    from interp_tests.compute.bootstrap import UnitSums

    sizes = rng.integers(8, 41, windows)
    effect = rng.normal(0.0, 1.0, windows)
    units = UnitSums(d_sae=1)
    units.units = windows
    values = [true_mean + effect[w] + rng.normal(0.0, 1.0, sizes[w]) for w in range(windows)]
    units.tokens = [torch.tensor(sizes, dtype=torch.float64)]
    units.active = [torch.tensor([float(v.sum()) for v in values], dtype=torch.float64)]
    return units


def test_the_resample_matrix_is_built_once_per_corpus_size_and_is_the_seeded_draw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every value of a corpus resamples the same windows with the same seed: the matrix is shared, not rebuilt
    per value, and is the seeded multinomial draw itself; past KEPT_COUNTS_BYTES it is built per call."""
    import torch

    from interp_tests.compute import bootstrap

    counts = bootstrap.resample_counts(57)
    assert bootstrap.resample_counts(57) is counts
    g = torch.Generator().manual_seed(bootstrap.SEED)
    draws = torch.randint(0, 57, (bootstrap.RESAMPLES, 57), generator=g)
    assert torch.equal(counts, torch.stack([torch.bincount(row, minlength=57) for row in draws]).double())
    assert bootstrap.resample_counts(57, 6, seed=7) is not counts and bootstrap.resample_counts(58) is not counts
    monkeypatch.setattr(bootstrap, "KEPT_COUNTS_BYTES", 0)
    fresh = bootstrap.resample_counts(57)
    assert fresh is not counts and torch.equal(fresh, counts)


def test_the_95_percent_interval_covers_the_true_value_in_95_of_1000_seeded_trials() -> None:
    import numpy as np

    from interp_tests.compute.bootstrap import interval

    covered = 0
    for trial in range(1000):
        rng = np.random.default_rng(trial)
        lo, hi = interval(synthetic_units(rng, 120, 3.0), "l0")  # type: ignore[misc]
        covered += lo <= 3.0 <= hi
    assert 920 <= covered <= 980, covered


def test_explained_variance_intervals_cover_the_true_value_on_gaussian_data() -> None:
    """x ~ N(0, I), x_hat = x + noise of variance s^2: the true explained variance is 1 - s^2."""
    import numpy as np
    import torch

    from interp_tests.compute.bootstrap import UnitSums, interval

    covered, s = 0, 0.5
    for trial in range(1000):
        g = torch.Generator().manual_seed(trial)
        units = UnitSums(d_sae=4)
        x = torch.randn(60, 16, 8, generator=g, dtype=torch.float64)
        x_hat = x + s * torch.randn(60, 16, 8, generator=g, dtype=torch.float64)
        unit = torch.arange(60).repeat_interleave(16)
        units.add(x.reshape(-1, 8), x_hat.reshape(-1, 8), torch.zeros(960, 4, dtype=torch.float64), unit, 60)
        lo, hi = interval(units, "explained_variance")  # type: ignore[misc]
        covered += lo <= 1 - s**2 <= hi
    assert 920 <= covered <= 980, covered
    del np


@pytest.mark.slow  # a 160,000-token pass
def test_intervals_shrink_as_one_over_the_square_root_of_the_tokens(interp_model: Any, interp_sae: Any, tmp_path: Path) -> None:
    import sysconfig

    from interp_tests.cases.schema import CorpusSpec
    from interp_tests.compute.corpus import Corpus
    from interp_tests.compute.corpus_pass import run_pass
    from interp_tests.compute.engine import HookCache, ModelCache, SaeEngine

    docs = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:400]:  # plenty of Python for the bundled model
        text = path.read_text(encoding="utf-8", errors="replace")
        docs.extend(json.dumps({"text": part}) for part in text.split("\n\n\n") if part.strip())
    (tmp_path / "code.jsonl").write_text("\n".join(docs))
    widths = {}
    for tokens in (10_000, 40_000, 160_000):
        engine = SaeEngine(HookCache(interp_model, HOOK, 4096, shared=ModelCache(interp_model, 4096)), interp_sae, "sae")
        corpus = Corpus(CorpusSpec(path="code.jsonl", tokens=tokens, context=128), tmp_path, "code")
        stats = run_pass([engine], corpus, with_loss=set(), progress=None)[0]
        assert stats.tokens >= 0.95 * tokens
        lo, hi = stats.interval("explained_variance")  # type: ignore[misc]
        widths[tokens] = (hi - lo, stats.tokens)
    for small, large in ((10_000, 40_000), (40_000, 160_000)):
        ratio = widths[small][0] / widths[large][0]
        expected = math.sqrt(widths[large][1] / widths[small][1])  # 2 for 4x the tokens
        assert 0.7 * expected <= ratio <= 1.4 * expected, (small, large, ratio, widths)


# ----------------------------------------------------------------------------- reports and auto
NOISE = """\
texts:
  heldout: {corpus: {bundled: tiny-stdlib-heldout, tokens: 3000, context: 128}}
  code: ["def add(a, b):\\n    return a + b", "for i in range(10):\\n    print(i)", "import os\\nimport sys", "x = {'a': 1}"]
cases:
  - id: reconstruction
    on: heldout
    expect:
      - explained_variance: {min: 0.3}
      - ce_loss_score: {min: 0.3}
      - kl_div: {max: 5}
  - id: on-texts
    on: code
    expect:
      - explained_variance: {min: 0.0}
      - ce_loss_score: {min: -10}
"""


@pytest.fixture(scope="module")
def noisy_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("noise") / "runs"
    for name, scale in (("medium", 0.06), ("large", 0.3)):
        checkpoints.save_variant(root / name, functools.partial(checkpoints.noisy, scale=scale))
    checkpoints.save_variant(root / "copy", checkpoints.identical)
    return root


def test_auto_passes_an_identical_copy_and_fails_a_noisy_one(pytester: pytest.Pytester, noisy_runs: Path) -> None:
    import shutil

    shutil.copytree(noisy_runs, pytester.path / "runs")
    case_file(pytester, "claims", NOISE)
    recorded = pytester.runpytest("cases/", "--interp-update", "-p", "no:cacheprovider")
    recorded.assert_outcomes(passed=2)
    baseline = json.loads((pytester.path / "cases" / "claims.yaml.baseline.json").read_text())
    entry = next(iter(baseline["cases"]["reconstruction"].values()))
    assert set(entry["intervals"]) == {"expect[0].explained_variance", "expect[1].ce_loss_score", "expect[2].kl_div"}  # recorded with the values
    out = pytester.path / "run.json"
    result = pytester.runpytest("cases/", "--interp-sae=runs/copy", "--interp-sae=runs/large", "--interp-compare", "--interp-tolerance", "auto",
                                f"--interp-json={out}", "--interp-md=drift.md", "-p", "no:cacheprovider")
    doc = json.loads(out.read_text())
    outcome = {(c["case_id"], c["checkpoint"]): c["ok"] for c in doc["cases"]}
    assert outcome[("reconstruction", "copy")] and outcome[("on-texts", "copy")]
    assert not outcome[("reconstruction", "large")]
    rows = [r for r in doc["drift"] if r["checkpoint"] == "large" and r["check"] == "explained_variance" and r["case_id"] == "reconstruction"]
    lo, hi = rows[0]["delta_interval"]
    assert hi < 0 and "paired bootstrap" in rows[0]["tolerance"] and "excludes 0" in rows[0]["tolerance"]
    copy_rows = [r for r in doc["drift"] if r["checkpoint"] == "copy"]
    assert copy_rows and all(r["ok"] and r["delta_interval"] == [0.0, 0.0] for r in copy_rows)
    markdown = (pytester.path / "drift.md").read_text()
    assert "excludes 0: a drift beyond noise" in markdown and f"[{lo:+.4f}, {hi:+.4f}]" in markdown
    text = result.stdout.str()
    assert "[95% CI " in text and "auto, paired bootstrap" in text


def test_auto_without_the_reference_compares_with_the_recorded_interval(tmp_path: Path, noisy_runs: Path) -> None:
    """A candidate whose reference is not present (only its baseline is): the unpaired test, which says so."""
    import shutil

    import interp_tests

    claims = tmp_path / "claims.yaml"
    shutil.copytree(noisy_runs / "copy", tmp_path / "reference")
    claims.write_text("target:\n  model: tiny-stdlib\n  sae: {path: reference}\n" + NOISE)
    interp_tests.evaluate(claims, update=True)
    shutil.rmtree(tmp_path / "reference")  # as in a user's CI, where only the baseline is
    results = interp_tests.evaluate(claims, saes=[str(noisy_runs / "large"), str(noisy_runs / "copy")], compare=True, tolerance="auto")
    rows = {(r["checkpoint"], r["case_id"], r["check"]): r for r in results.document["drift"]}
    large = rows[("large", "reconstruction", "explained_variance")]
    assert not large["ok"] and large["tolerance"].startswith("auto, unpaired")
    assert rows[("copy", "reconstruction", "explained_variance")]["ok"]
    said = [line for line in results.document["run"]["session"] if "does not load here" in line]
    assert len(said) == 1 and "compared with its recorded baselines only (no feature matching; tolerance auto unpaired)" in said[0], said


def test_intervals_are_junit_properties_and_in_the_case_file_reports(pytester: pytest.Pytester) -> None:
    case_file(pytester, "claims", NOISE.replace("min: 0.3}", "min: 0.99}", 1))
    result = pytester.runpytest("cases/", "--junitxml=junit.xml", "--interp-html=report.html", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    junit = (pytester.path / "junit.xml").read_text()
    for name in ("explained_variance.ci_low", "explained_variance.ci_high", "kl_div.ci_low", "ce_loss_score.ci_high"):
        assert f'name="{name}"' in junit
    assert "explained_variance observed 0." in result.stdout.str() and "[95% CI 0." in result.stdout.str()
    assert 'class="ci">[95% CI' in (pytester.path / "report.html").read_text()


def test_baseline_auto_is_read_and_a_wrong_value_is_one_line(pytester: pytest.Pytester) -> None:
    case_file(pytester, "claims", NOISE.replace("{min: 0.3}", "{min: 0.3, baseline: auto}", 1).replace("{max: 5}", "{max: 5, baseline: sometimes}"))
    result = pytester.runpytest("cases/", "-p", "no:cacheprovider")
    assert "cases[0].expect[2].kl_div.baseline: expected auto or a mapping of tolerance, abs, rel (got 'sometimes')" in result.stdout.str()
    bad = pytester.runpytest("cases/", "--interp-tolerance", "often", "-p", "no:cacheprovider")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "expected a number >= 0, or auto" in bad.stderr.str()


# ----------------------------------------------------------------------------- calibrate
def test_calibrate_gives_each_value_its_interval_and_the_budget_a_drift_needs(tmp_path: Path, noisy_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from interp_tests.explore.cli import main

    claims = tmp_path / "claims.yaml"
    twice = NOISE.replace("      - explained_variance: {min: 0.3}\n", "      - explained_variance: {min: 0.3}\n      - explained_variance: {min: 0.1}\n")
    claims.write_text("target:\n  model: tiny-stdlib\n  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n"
                      + twice.replace("id: reconstruction\n", "id: reconstruction-of-the-held-out-corpus\n").replace("id: on-texts", "id: reconstruction"))
    assert main(["calibrate", str(claims), "--drift", "explained_variance=0.002"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "explained_variance " in line]
    assert [r[:2] for r in rows] == [["reconstruction-of-the-held-out-corpus", "explained_variance"], ["reconstruction", "explained_variance"]]  # one row per value, names in full
    claims.write_text("target:\n  model: tiny-stdlib\n  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n" + NOISE)
    assert main(["calibrate", str(claims), "--json", "--drift", "explained_variance=0.002"]) == 0
    values = {(v["case_id"], v["check"]): v for v in json.loads(capsys.readouterr().out)["values"]}
    ev = values[("reconstruction", "explained_variance")]
    lo, hi = ev["interval"]
    assert lo < ev["observed"] < hi and ev["tokens"] > 2500 and ev["drift"] == 0.002
    half = (hi - lo) / 2
    assert ev["tokens_for_half_width"] == math.ceil(ev["tokens"] * (half / 0.002) ** 2)
    assert ev["tokens_to_detect_unpaired"] > ev["tokens_for_half_width"] and ev["tokens_to_detect_paired"] is None
    assert values[("reconstruction", "kl_div")]["drift"] == pytest.approx(0.01 * values[("reconstruction", "kl_div")]["observed"])
    assert main(["calibrate", str(claims), "--sae", str(noisy_runs / "medium")]) == 0
    text = capsys.readouterr().out
    assert "detect, paired" in text and "explained_variance" in text
    assert main(["calibrate", str(claims), "--drift", "top_k=1"]) == 2
    assert "'top_k' has no interval" in capsys.readouterr().err


def test_auto_reads_a_paired_difference_within_float_rounding_of_zero_as_zero() -> None:
    """Identical SAEs measured side by side differ by float rounding (about 1e-10): an interval of the
    difference that misses 0 by that much is no drift; one that misses it by a real amount is."""
    from interp_tests.baselines.protocol import Tolerance, auto_comparison
    from interp_tests.checks.verdict import Verdict

    def verdict(lo: float, hi: float) -> Verdict:
        return Verdict("explained_variance", "x.yaml:1", True, ">= 0", 0.8 + (lo + hi) / 2, "", interval=(0.79, 0.81), paired=(0.8, lo, hi))

    assert auto_comparison(verdict(1e-11, 3e-10), 0.8, None, Tolerance(abs=0.01, auto=True)).ok
    assert auto_comparison(verdict(-3e-10, -1e-11), 0.8, None, Tolerance(abs=0.01, auto=True)).ok
    assert not auto_comparison(verdict(2e-5, 4e-5), 0.8, None, Tolerance(abs=0.01, auto=True)).ok

    def small(lo: float, hi: float) -> Verdict:  # a small value (a density): the floor is relative to it
        return Verdict("density", "x.yaml:1", True, ">= 0", 1e-3 + (lo + hi) / 2, "", interval=(9e-4, 1.1e-3), paired=(1e-3, lo, hi))

    assert auto_comparison(small(1e-13, 5e-13), 1e-3, None, Tolerance(abs=1e-4, auto=True)).ok
    assert not auto_comparison(small(2e-8, 5e-8), 1e-3, None, Tolerance(abs=1e-4, auto=True)).ok

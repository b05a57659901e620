"""The HTML report (--interp-html FILE): the renderer on hand-built results (escaping, caps, heatmaps, steering,
drift, the plot), a real run on the bundled model, and the report opened in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from interp_tests.baselines.protocol import DriftRow
from interp_tests.checks.runner import CaseResult, result_from_json, result_to_json
from interp_tests.checks.verdict import Heatmap, Table, Verdict
from interp_tests.report.html import MAX_HEATMAPS, MAX_TOKENS, render_html
from interp_tests.report.plots import sparsity_points

from .helpers import case_file

EVIL = "<script>alert(1)</script>"
SAE = "tiny-stdlib-res/blocks.1.hook_resid_pre"


def fires(ok: bool = True, tokens: tuple[str, ...] = ("def", " add", "(", EVIL, "\n   ", " return"), texts: int = 2) -> Verdict:
    values = tuple(float(i) for i in range(len(tokens)))
    return Verdict(
        check="fires", where="cases/x.yaml:7", ok=ok, expected="max activation > 3.0000 on every text", observed=2.5,
        summary="smallest per-text max activation", feature="def_keyword = #692",
        table=Table(("text of", "text", "max act", ""), (("functions", repr(EVIL), "2.5000", "ok" if ok else "FAIL"),)),
        heatmaps=tuple(Heatmap(f"functions {i}", tokens, values) for i in range(texts)),
    )


def generates() -> Verdict:
    return Verdict(
        check="generates", where="cases/x.yaml:12", ok=True, expected="continuation contains none of ['zzzz']",
        observed=" steered " + EVIL, summary="steered continuation, 20 new tokens, greedy",
        notes=("prompt    'I went to the store to buy'", "base      ' milk'", "steered   ' steered'"), extra=(("base", " milk & bread"),),
    )


def recon(sae: str, l0: float, ev: float) -> tuple[Verdict, ...]:
    return (
        Verdict(check="l0", where="cases/x.yaml:20", ok=True, expected="between 5 and 48", observed=l0, summary="mean L0"),
        Verdict(check="explained_variance", where="cases/x.yaml:21", ok=True, expected=">= 0.7", observed=ev, summary="EV"),
    )


def result(case_id: str, verdicts: tuple[Verdict, ...], sae: str = SAE) -> dict[str, object]:
    return result_to_json(CaseResult(case_id=case_id, where="cases/x.yaml:5", sae=sae, reference=sae, candidate=False, verdicts=verdicts))


def cases_in(text: str) -> list[dict[str, str]]:
    """The attributes of every case's <details> element."""

    class Cases(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[dict[str, str]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            d = {k: v or "" for k, v in attrs}
            if tag == "details" and "case" in d.get("class", "").split():
                self.found.append(d)

    parser = Cases()
    parser.feed(text)
    return parser.found


# ----------------------------------------------------------------------------- the renderer
def test_user_text_is_escaped_everywhere() -> None:
    error = Verdict(check="silent", where="cases/x.yaml:8", ok=False, expected="<= 0", observed=None, summary="-", error=f"bad {EVIL}")
    text = render_html([result(f"case {EVIL}", (fires(ok=False), error, generates()))], [], [f"interp-tests: {EVIL}"])
    assert EVIL not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<script>") == 1, "only the report's own script"
    assert "could not be evaluated: bad &lt;script&gt;" in text
    assert " milk &amp; bread" in text


def test_feature_check_heatmap_shows_whitespace_and_values() -> None:
    text = render_html([result("feature", (fires(),))], [], [])
    assert text.count('class="heatmap"') == 2
    tokens = re.findall(r'<span class="tok" style="background:rgba\(255,110,0,([0-9.]+)\)" title="([^"]*)" data-act="([^"]*)">', text)
    assert len(tokens) == 12
    assert [t[2] for t in tokens[:6]] == ["0.0000", "1.0000", "2.0000", "3.0000", "4.0000", "5.0000"]
    assert tokens[5][0] == "1.000" and tokens[0][0] == "0.000", "the largest activation is the full colour"
    assert tokens[1][1] == "&#x27; add&#x27; = 1.0000", "the tooltip shows the token's repr and its value"
    assert '<span class="ws">·</span>add' in text and '<span class="ws">↵</span><span class="ws">·</span>' in text


def test_heatmaps_and_tokens_are_capped_and_say_so() -> None:
    many = tuple(f"t{i}" for i in range(MAX_TOKENS + 25))
    text = render_html([result("big", (fires(tokens=many, texts=MAX_HEATMAPS + 3),))], [], [])
    assert text.count('class="heatmap"') == MAX_HEATMAPS
    assert f"3 more texts not shown (the first {MAX_HEATMAPS} are)" in text
    assert "25 more tokens not shown" in text


def test_repeated_heatmaps_are_drawn_once_per_case() -> None:
    text = render_html([result("twice", (fires(), fires()))], [], [])
    assert text.count('class="heatmap"') == 2
    assert 'the same as those of <a href="#case-0-check-0">the check above</a>' in text


def test_steering_shows_base_and_steered_side_by_side() -> None:
    text = render_html([result("steer", (generates(),))], [], [])
    block = text[text.index('<div class="steering">') :]
    assert block.index("base continuation") < block.index("<pre> milk &amp; bread</pre>") < block.index("steered continuation")
    assert "<pre> steered &lt;script&gt;" in block
    assert "prompt    &#x27;I went to the store to buy&#x27;" in text


def test_cases_checks_table_and_failing_case() -> None:
    text = render_html([result("good", (fires(),)), result("bad", (fires(ok=False),))], [], [])
    found = cases_in(text)
    assert [(c["data-case-id"], c["data-ok"]) for c in found] == [("good", "true"), ("bad", "false")]
    assert "1 of 2 cases passed" in text and '<a href="#case-1"><code>bad</code></a>' in text
    assert "<th>check</th><th>where</th><th>feature</th><th>observed</th><th>expected</th>" in text
    assert '<td class="verdict fail">FAIL</td>' in text and "cases/x.yaml:7" in text


def test_drift_table() -> None:
    rows = [
        DriftRow("cases/x.yaml:7", "c", "fires", 5.0, 5.5, 0.5, "abs 0.01", False),
        DriftRow("cases/x.yaml:8", "c", "silent", 1.0, 1.0, 0.0, "abs 0.01", True),
        DriftRow("cases/x.yaml:9", "c", "l0", None, 24.0, None, "abs 1", False, "no baseline"),
    ]
    text = render_html([], rows, [])
    section = text[text.index('<section id="drift">') :]
    assert "2 of 3 compared values out of tolerance" in section
    assert "<td>fires</td><td class=\"num\">5.0000</td><td class=\"num\">5.5000</td><td class=\"num\">+0.5000</td>" in section
    assert "(none)" in section
    assert "No case ran." in text


def test_sparsity_plot_has_one_point_per_sae() -> None:
    results = [
        result("a", recon("rel/blocks.0.hook_resid_pre", 10.0, 0.99), sae="rel/blocks.0.hook_resid_pre"),
        result("b", recon("rel/blocks.8.hook_resid_pre", 60.0, 0.90), sae="rel/blocks.8.hook_resid_pre"),
        result("c", recon("rel/blocks.8.hook_resid_pre", 62.0, 0.92), sae="rel/blocks.8.hook_resid_pre"),
        result("d", (fires(),), sae="rel/blocks.10.hook_resid_pre"),
    ]
    points = sparsity_points(results)
    assert [(p.sae, p.l0, round(p.explained_variance, 6), p.cases) for p in points] == [
        ("rel/blocks.0.hook_resid_pre", 10.0, 0.99, 1),
        ("rel/blocks.8.hook_resid_pre", 61.0, 0.91, 2),
    ]
    text = render_html(results, [], [])
    figure = text[text.index('<figure class="plot" id="sparsity-plot">') :]
    assert figure.index("<svg") < figure.index("</svg>") < figure.index("</figure>")
    assert "L0 61.00, EV 0.9100, 2 cases" in figure
    no_plot = render_html([result("d", (fires(),))], [], [])
    assert "<svg" not in no_plot and "No plot: no SAE of this run was checked for both" in no_plot


def test_report_is_self_contained() -> None:
    text = render_html([result("a", (*recon(SAE, 24.0, 0.8), fires(), generates()))], [], [])
    assert not re.search(r"<(link|img|iframe|object|embed)\b", text)
    assert not re.search(r"\bsrc=", text) and "@import" not in text
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", text))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, "XML namespaces only, nothing fetched"
    assert all(u.startswith("url(#") for u in re.findall(r"url\([^)]*\)", text))


def test_json_round_trip_keeps_heatmaps() -> None:
    original = result("a", (fires(),))
    back = result_from_json(original)  # type: ignore[arg-type]
    assert back.verdicts[0].heatmaps == fires().heatmaps


# ----------------------------------------------------------------------------- a real run
CASES = """
texts:
  functions:
    - "def add(a, b):\\n    return a + b"
    - "def parse(text):\\n    return text.split()"
  prose:
    - "Return the number of items in the list."
features:
  def_keyword: {most_active_on: "def main():\\n    pass", token: "def"}
cases:
  - id: def-fires
    expect:
      - fires: {feature: def_keyword, on: functions, token: "def", min: 1.0}
  - id: def-too-strong
    expect:
      - fires: {feature: def_keyword, on: functions, token: "def", min: 1000.0}
  - id: sparsity
    on: [functions, prose]
    expect:
      - l0: {min: 1, max: 100}
      - explained_variance: {min: 0.1}
"""


def run_report(pytester: pytest.Pytester) -> tuple[pytest.RunResult, str]:
    case_file(pytester, "report", CASES)
    res = pytester.runpytest("cases/report.yaml", "--interp-html", "out/report.html", "-p", "no:cacheprovider")
    return res, (pytester.path / "out" / "report.html").read_text() if (pytester.path / "out" / "report.html").exists() else ""


def test_a_run_writes_the_report(pytester: pytest.Pytester) -> None:
    (pytester.path / "out").mkdir()
    res, text = run_report(pytester)
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines([f"interp-tests: HTML report written to {pytester.path / 'out' / 'report.html'}"])
    found = cases_in(text)
    assert sorted((c["data-case-id"], c["data-ok"]) for c in found) == [("def-fires", "true"), ("def-too-strong", "false"), ("sparsity", "true")]
    assert "2 of 3 cases passed" in text and "def_keyword = #" in text
    assert text.count('class="heatmap"') == 4, "two texts for each of the two fires checks"
    assert '<figure class="plot" id="sparsity-plot"><svg' in text and f"{SAE}: L0 " in text
    assert "max activation &gt; 1000.0000 on every text" in text
    assert not list((pytester.path / "out").glob(".report.html.*")), "no temporary file left behind"


def test_a_report_that_cannot_be_written_fails_the_run(pytester: pytest.Pytester) -> None:
    case_file(pytester, "one", "cases:\n  - id: sparsity\n    text: \"def f(x):\\n    return x\"\n    expect:\n      - l0: {min: 1, max: 100}\n")
    res = pytester.runpytest("cases/one.yaml", "--interp-html", "missing-dir/report.html", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    assert res.ret == pytest.ExitCode.TESTS_FAILED
    res.stdout.fnmatch_lines([f"interp-tests: cannot write {pytester.path / 'missing-dir' / 'report.html'}: No such file or directory"])
    assert "Traceback" not in res.stdout.str()


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_help_and_collect_only_import_no_matplotlib(pytester: pytest.Pytester) -> None:
    case_file(pytester, "one", "cases:\n  - id: sparsity\n    text: \"x = 1\"\n    expect:\n      - l0: {min: 1}\n")
    pytester.makeconftest(
        """
        import sys
        def pytest_unconfigure(config):
            print("HEAVY-MODULES:", sorted(m for m in ("matplotlib", "torch") if m in sys.modules))
        """
    )
    collect = pytester.runpytest_subprocess("--collect-only", "-q", "--interp-html", "r.html")
    collect.stdout.fnmatch_lines(["*1 test collected*", "HEAVY-MODULES: []"])
    assert "0 of 0 cases passed" in (pytester.path / "r.html").read_text()
    pytester.runpytest_subprocess("--help").stdout.fnmatch_lines(["*--interp-html=FILE*", "HEAVY-MODULES: []"])


# ----------------------------------------------------------------------------- in a real browser
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium); .ci/run installs it")
    return found


def browser(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "LANG": "C.UTF-8"})


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_report_in_headless_chromium(pytester: pytest.Pytester, tmp_path: Path) -> None:
    exe = chromium()
    (pytester.path / "out").mkdir()
    _, text = run_report(pytester)
    url = (pytester.path / "out" / "report.html").as_uri()
    dom = browser(exe, tmp_path / "profile", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    # the report's script ran in the browser and counted the cases it found in the DOM
    assert re.search(r'<html lang="en" data-cases="3" data-failed="1">', page), page[:300]
    failing = [c for c in cases_in(page) if c["data-ok"] == "false"]
    assert [c["data-case-id"] for c in failing] == ["def-too-strong"] and "fail" in failing[0]["class"].split()
    assert page.count('class="heatmap"') == 4 and 'class="tok"' in page
    assert re.search(r'<figure class="plot" id="sparsity-plot"><svg[^>]*>', page)
    assert 'data-action="expand">expand all</button>' in page, "the buttons are shown once the script runs"
    shot = tmp_path / "report.png"
    taken = browser(exe, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert taken.returncode == 0, taken.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{shot}: {len(data)} bytes"

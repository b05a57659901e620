"""Hostile paths and values: special files in and out, names the file system refuses, control characters, absurd
sizes, baselines written as a set, collection linear in the number of named files."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import time
from pathlib import Path

import pytest

from .helpers import case_file, save_random_sae

BODY = """\
texts:
  code: ["def add(a, b):\\n    return a + b"]
cases:
  - id: one
    on: code
    expect:
      - l0: {max: 100}
"""


def target_with(sae: str) -> str:
    return f"target:\n  model: tiny-stdlib\n  sae: {sae}\n"


# ----------------------------------------------------------------------------- outputs
def test_a_device_is_written_to_directly_never_replaced(pytester: pytest.Pytester) -> None:
    case_file(pytester, "suite", BODY)
    before = os.stat("/dev/full")
    full = pytester.runpytest("cases/", "-p", "no:cacheprovider", "--interp-html", "/dev/full", "--interp-md", "/dev/null")
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)  # still the device
    out = full.stdout.str()
    assert full.ret == pytest.ExitCode.TESTS_FAILED and "cannot write /dev/full: No space left on device" in out, out
    assert "Markdown summary written to /dev/null" in out and "Traceback" not in out
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_markdown_to_standard_output(pytester: pytest.Pytester) -> None:
    case_file(pytester, "suite", BODY)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--interp-md", "-")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["## interp-tests", "*1 of 1 cases passed*", "*Markdown summary written to standard output*"])
    assert not (pytester.path / "-").exists()


def test_a_fifo_nobody_reads_a_directory_and_a_linked_file(pytester: pytest.Pytester) -> None:
    case_file(pytester, "suite", BODY)
    fifo = pytester.path / "pipe"
    os.mkfifo(fifo)
    (pytester.path / "adir").mkdir()
    real = pytester.path / "logs" / "report.md"
    real.parent.mkdir()
    real.write_text("old")
    (pytester.path / "link.md").symlink_to(real)
    start = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider", "--interp-md", "pipe", "--interp-html", "adir")
    assert time.monotonic() - start < 30  # the FIFO does not block the run
    out = result.stdout.str()
    assert "pipe is a FIFO that no process reads: start its reader first" in out, out
    assert "adir is a directory: give a file name (it is never replaced)" in out, out
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and (pytester.path / "adir").is_dir()
    linked = pytester.runpytest("-p", "no:cacheprovider", "--interp-md", "link.md")
    assert linked.ret == 0
    assert (pytester.path / "link.md").is_symlink() and real.read_text().startswith("## interp-tests")  # written through the link


@pytest.mark.parametrize(("name", "message"), [("a" * 300 + ".md", "has a name of 303 bytes, over the 255"), ("x\x00y.md", "contains a NUL byte")])
def test_an_output_name_the_file_system_refuses_is_one_line(pytester: pytest.Pytester, name: str, message: str) -> None:
    from interp_tests.common.files import PathError, write_output

    with pytest.raises(PathError, match=message):
        write_output(pytester.path / name, "text")


# ----------------------------------------------------------------------------- inputs
def test_a_fifo_as_sae_weights_is_refused_at_once(pytester: pytest.Pytester) -> None:
    sae = save_random_sae(pytester.path / "fifo-sae")
    (sae / "sae_weights.safetensors").unlink()
    os.mkfifo(sae / "sae_weights.safetensors")
    case_file(pytester, "suite", BODY, target=target_with("{path: ../fifo-sae}"))
    start = time.monotonic()
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert time.monotonic() - start < 20
    result.stdout.fnmatch_lines(["*SAE weights */fifo-sae/sae_weights.safetensors is a FIFO (named pipe), not a regular file*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_checkpoint_of_no_known_format_says_what_was_expected_and_found(pytester: pytest.Pytester) -> None:
    other = pytester.path / "other-library"
    other.mkdir()
    (other / "cfg.json").write_text(json.dumps({"num_latents": 64, "k": 8}))
    (other / "model.bin").write_bytes(b"")
    case_file(pytester, "suite", BODY, target=target_with("{path: ../other-library}"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "it holds cfg.json, model.bin, which is no checkpoint format interp-tests reads (SAELens (cfg.json + sae_weights.safetensors); sparsify" in out, out
    assert "FileNotFoundError" not in out and "Traceback" not in out


def test_a_sparsify_checkpoint_with_a_missing_config_key_names_the_file_and_key(pytester: pytest.Pytester) -> None:
    other = pytester.path / "layers.1"
    other.mkdir()
    (other / "cfg.json").write_text(json.dumps({"num_latents": 64, "k": 8}))
    (other / "sae.safetensors").write_bytes(b"")
    case_file(pytester, "suite", BODY, target=target_with("{path: ../layers.1}"))
    out = pytester.runpytest("-p", "no:cacheprovider").stdout.str()
    assert "layers.1/cfg.json has no 'd_in' of the right type (got None)" in out and "Traceback" not in out, out


def test_a_nul_byte_in_an_sae_path_is_that_files_error_and_the_others_run(pytester: pytest.Pytester) -> None:
    case_file(pytester, "bad", BODY, target=target_with('{path: "x\\0y"}'))
    case_file(pytester, "good", BODY)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*bad.yaml:3: target.sae.path: holds the control character '\\x00'*"])
    assert "Interrupted" not in result.stdout.str()


@pytest.mark.parametrize(
    ("sae", "message"),
    [
        ("{release: " + "r" * 5000 + ", id: x}", "target.sae.release: is 5,000 characters long, over the 512 a name may have"),
        ("{path: " + "d/" * 2100 + "x}", "target.sae.path: cannot be a path: it is 4,201 characters long"),
        ("{path: " + "d" * 300 + "}", "target.sae.path: cannot be a path: it has a name of 300 bytes"),
    ],
    ids=["long-release", "deep-path", "long-name"],
)
def test_names_the_file_system_would_refuse_are_schema_errors(pytester: pytest.Pytester, sae: str, message: str) -> None:
    case_file(pytester, "suite", BODY, target=target_with(sae))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert message in result.stdout.str(), result.stdout.str()


@pytest.mark.parametrize(
    ("corpus", "message"),
    [('{path: "a\\0b.txt"}', "holds the control character '\\x00'"), ("{path: " + "c" * 300 + ".txt}", "has a name of 304 bytes")],
    ids=["nul", "long"],
)
def test_a_corpus_path_the_file_system_refuses_is_a_schema_error(pytester: pytest.Pytester, corpus: str, message: str) -> None:
    case_file(pytester, "suite", f"texts:\n  c: {{corpus: {corpus}}}\ncases:\n  - id: one\n    on: c\n    expect:\n      - l0: {{max: 100}}\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert message in result.stdout.str()


def test_a_topk_k_beyond_the_sae_and_a_width_mismatch_fail_cleanly(pytester: pytest.Pytester) -> None:
    import shutil

    from interp_tests.compute.registry import BUNDLED_DIR

    huge_k = pytester.path / "huge-k"
    shutil.copytree(BUNDLED_DIR / "tiny-stdlib-res" / "blocks.1.hook_resid_pre", huge_k)
    cfg = json.loads((huge_k / "cfg.json").read_text())
    cfg["k"] = 10**9
    (huge_k / "cfg.json").write_text(json.dumps(cfg))
    save_random_sae(pytester.path / "narrow", d_in=64)
    checks = "      - l0: {max: 100}\n      - explained_variance: {min: 0}\n      - ce_loss_score: {min: 0}\n      - fires: {feature: 0, on: code, min: -1}\n"
    for name in ("huge-k", "narrow"):
        case_file(pytester, name, BODY.replace("      - l0: {max: 100}\n", checks), target=target_with(f"{{path: ../{name}}}"))
    result = pytester.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str()
    result.assert_outcomes(failed=2)
    assert "its TopK k is 1000000000, outside [1, d_sae = 1024]" in out, out
    assert "width mismatch: the SAE" in out and "takes d_in=64, but hook 'blocks.1.hook_resid_pre' of the model gives 128" in out, out  # before any forward
    assert "internal error" not in out and "RuntimeError" not in out


@pytest.mark.slow  # starts a fresh interpreter or a browser
def test_control_characters_in_ids_and_names_never_reach_the_terminal_raw(pytester: pytest.Pytester) -> None:
    evil = "\\e]0;owned\\a\\e[2J\\e[31mRED"
    body = f"""\
texts:
  code: ["x = 1"]
features:
  "f{evil}": 5
cases:
  - id: "{evil}"
    on: code
    expect:
      - fires: {{feature: "f{evil}", min: 1000}}
"""
    case_file(pytester, "suite", body)
    md, html = pytester.path / "r.md", pytester.path / "r.html"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA", "--interp-md", str(md), "--interp-html", str(html))
    raw = result.stdout.str() + result.stderr.str() + md.read_text() + html.read_text()
    assert result.ret == 1
    for control in ("\x1b", "\x07"):
        assert control not in raw
    assert "\\x1b]0;owned\\x07\\x1b[2J" in result.stdout.str()


def test_markdown_escapes_what_it_does_not_put_in_code_spans() -> None:
    from interp_tests.report.markdown import render_markdown

    verdict = {"ok": False, "check": "fires", "where": "a.yaml:3", "observed": "<img src=x>", "expected": "[click](http://x) ![i](y) *b* <script>", "error": None}
    text = render_markdown([{"case_id": "c", "sae": "s", "verdicts": [verdict]}], [], ["interp-tests: <b>bold</b> [x](y)"])
    for raw in ("<script>", "<img", "[click](", "![i]", "*b*", "<b>", "[x](y)"):
        assert not re.search(r"(?<!\\)" + re.escape(raw), text), (raw, text)
    assert "\\<script\\>" in text and "\\[click\\](http://x)" in text


# ----------------------------------------------------------------------------- sizes
def test_a_huge_text_is_refused_before_it_is_tokenized(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """A text longer than any 128 tokens can be (the model's context times its longest token, 39 characters): refused
    by its length in characters, without handing it to the tokenizer (a 20 MB text took a minute and 3 GB)."""
    seen: list[int] = []
    from transformer_lens import HookedTransformer

    original = HookedTransformer.to_tokens

    def spy(self: HookedTransformer, text: str | list[str], *args: object, **kwargs: object) -> object:
        seen.append(len(text) if isinstance(text, str) else -1)
        return original(self, text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(HookedTransformer, "to_tokens", spy)
    case_file(pytester, "suite", BODY.replace('code: ["def add(a, b):\\n    return a + b"]', 'code: ["' + "x = 1; " * 3_000 + '"]'))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "is 21,000 characters, more than the model's context of 128 tokens can hold" in result.stdout.str()
    assert all(n < 5_000 for n in seen), seen


def test_a_huge_corpus_document_is_tokenized_only_as_far_as_a_window_needs(tmp_path: Path) -> None:
    from interp_tests.cases.schema import CorpusSpec
    from interp_tests.compute.corpus import Corpus
    from interp_tests.compute.registry import Registry

    model = Registry().model("tiny-stdlib")
    doc = "def f(x):\n    return x + 1\n" * 200_000  # 5 MB, one document
    (tmp_path / "big.jsonl").write_text(json.dumps({"text": doc}) + "\n" + json.dumps({"text": "x = 1"}) + "\n")
    tokenized: list[int] = []
    original = model.tokenizer.encode

    def spy(text: str, **kwargs: object) -> list[int]:
        tokenized.append(len(text))
        return original(text, **kwargs)  # type: ignore[arg-type]

    model.tokenizer.encode = spy  # type: ignore[method-assign]
    try:
        windows = list(Corpus(CorpusSpec(path="big.jsonl", tokens=1000, context=64), tmp_path, "big").windows(model))
    finally:
        del model.tokenizer.encode
    assert max(tokenized) < 20_000, tokenized
    full = model.tokenizer.encode(doc[:20_000], add_special_tokens=False)
    assert list(windows[0].ids[1:]) == full[:63]  # the same tokens as tokenizing the whole document, then cutting


def test_model_kwargs_outside_the_allow_list_are_refused(pytester: pytest.Pytester) -> None:
    target = "target:\n  model: tiny-stdlib\n  model_kwargs: {trust_remote_code: true}\n  sae: {release: tiny-stdlib-res, id: blocks.1.hook_resid_pre}\n"
    case_file(pytester, "suite", BODY, target=target)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert "target.model_kwargs: 'trust_remote_code' is not passed to the model loader (allowed: fold_ln" in result.stdout.str()


def test_a_checkpoints_model_kwargs_outside_the_allow_list_fail_its_cases(pytester: pytest.Pytester) -> None:
    sae = save_random_sae(pytester.path / "kw-sae")
    cfg = json.loads((sae / "cfg.json").read_text())
    cfg.setdefault("metadata", {})["model_from_pretrained_kwargs"] = {"trust_remote_code": True}
    cfg["model_from_pretrained_kwargs"] = {"trust_remote_code": True}
    (sae / "cfg.json").write_text(json.dumps(cfg))
    case_file(pytester, "suite", BODY, target="target:\n  model: gpt2\n  sae: {path: ../kw-sae}\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "model_from_pretrained_kwargs that interp-tests does not pass on: 'trust_remote_code'" in result.stdout.str()


# ----------------------------------------------------------------------------- baselines as a set
MANY_FILES = 12


def many_case_files(pytester: pytest.Pytester) -> list[Path]:
    return [case_file(pytester, f"suite{i:02d}", BODY.replace("id: one", f"id: case-{i}")) for i in range(MANY_FILES)]


def baselines(paths: list[Path]) -> list[bytes]:
    return [Path(str(p) + ".baseline.json").read_bytes() for p in paths]


def test_ctrl_c_while_temporaries_are_written_leaves_every_baseline_as_it_was(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from interp_tests.common import files

    paths = many_case_files(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "--interp-update").assert_outcomes(passed=MANY_FILES)
    for p in paths:  # every baseline file will change
        p.write_text(p.read_text().replace("id: case-", "id: renamed-"))
    before = baselines(paths)
    written = []
    original = files._temporary

    def interrupted(path: Path, text: str) -> str:
        if len(written) == MANY_FILES // 2:
            raise KeyboardInterrupt
        written.append(path)
        return original(path, text)

    monkeypatch.setattr(files, "_temporary", interrupted)
    result = pytester.runpytest("-p", "no:cacheprovider", "--interp-update")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert baselines(paths) == before
    out = result.stdout.str()
    assert out.count("NOT updated: interrupted while the baselines were written") == MANY_FILES and "Traceback" not in out
    assert not [p for p in (pytester.path / "cases").iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_during_the_renames_waits_until_every_baseline_is_new(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    from interp_tests.common import files

    paths = many_case_files(pytester)
    pytester.runpytest("-p", "no:cacheprovider", "--interp-update").assert_outcomes(passed=MANY_FILES)
    for p in paths:  # every baseline file will change
        p.write_text(p.read_text().replace("id: case-", "id: renamed-"))
    before = baselines(paths)
    renamed = []
    original = files.os.replace

    def replace(src: str, dst: str) -> None:
        original(src, dst)
        renamed.append(dst)
        if len(renamed) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # held until the last rename

    monkeypatch.setattr(files.os, "replace", replace)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--interp-update")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    after = baselines(paths)
    assert len(renamed) == MANY_FILES and all(a != b for a, b in zip(after, before))
    assert "interrupted after the baselines were written (every file above is new)" in result.stdout.str()


def test_a_rename_that_fails_part_way_names_what_is_new() -> None:
    import tempfile

    from interp_tests.common.files import AtomicSet, PartialCommit

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"f{i}.json" for i in range(4)]
        for p in paths:
            p.write_text("old")
        files = AtomicSet()
        for p in paths:
            files.add(p, "new")
        os.unlink(files.pending[2][0])  # the third rename will fail
        with pytest.raises(PartialCommit) as raised:
            files.commit()
        assert [p.read_text() for p in paths] == ["new", "new", "old", "old"]
        assert "2 files are new" in str(raised.value) and "2 are as they were" in str(raised.value)
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["f0.json", "f1.json", "f2.json", "f3.json"]


# ----------------------------------------------------------------------------- collection
def test_collection_visits_each_named_file_once(pytester: pytest.Pytester) -> None:
    """pytest offers a directory's files once per file named in it; the plugin collects such a directory once,
    so naming n files costs n visits, not n^2."""
    names = [case_file(pytester, f"c{i:02d}", BODY.replace("id: one", f"id: c{i}")) for i in range(30)]
    pytester.makeconftest(
        "import pytest\nCALLS = []\n@pytest.hookimpl(tryfirst=True)\ndef pytest_collect_file(file_path, parent):\n    CALLS.append(file_path)\n"
        "def pytest_collection_finish(session):\n    print('visits', sum(p.suffix == '.yaml' for p in CALLS))\n"
    )
    result = pytester.runpytest("--collect-only", "-q", "-s", "-p", "no:cacheprovider", *(str(n.relative_to(pytester.path)) for n in names))
    assert "30 tests collected" in result.stdout.str()
    result.stdout.fnmatch_lines(["visits 30"])

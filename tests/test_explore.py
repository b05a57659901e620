"""The pieces behind the command line: documents, the streaming histogram, flat memory, Neuronpedia links,
and the draft's YAML strings."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from interp_tests.cases.yaml_source import parse_yaml
from interp_tests.compute.neuronpedia import neuronpedia_id, neuronpedia_url
from interp_tests.compute.registry import Registry
from interp_tests.explore.draft import yaml_str
from interp_tests.explore.inspection import Histogram, feature_card, iter_documents, load_target, target_spec, windows


@pytest.fixture(scope="module")
def target() -> Any:
    return load_target(target_spec(), Registry(device="cpu", dtype="float32"))


def test_documents_split_on_blank_lines_or_per_line_and_long_ones_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("a\nb\n\n\n  \nc\n\nd")
    assert list(iter_documents(path)) == ["a\nb", "c", "d"]
    assert list(iter_documents(path, per_line=True)) == ["a", "b", "c", "d"]
    path.write_text("".join(f"line {i}\n" for i in range(100)))
    pieces = list(iter_documents(path, max_chars=100))
    assert len(pieces) > 5 and all(len(p) <= 100 for p in pieces)
    assert "\n".join(pieces) == "".join(f"line {i}\n" for i in range(100)).rstrip("\n")
    assert list(iter_documents(path, per_line=True, max_chars=4))[:2] == ["line", " 0"]


def test_windows_start_with_bos_and_cover_the_document_once() -> None:
    got = list(windows(list(range(10, 20)), bos=0, context=4))
    assert got == [(0, [0, 10, 11, 12]), (3, [0, 13, 14, 15]), (6, [0, 16, 17, 18]), (9, [0, 19])]


def test_streaming_histogram_counts_are_exact_for_its_edges() -> None:
    import torch

    rng = random.Random(0)
    hist = Histogram()
    seen = []
    for scale in (0.01, 0.5, 3.0, 40.0, 2.0):  # the range grows: bins merge pairwise
        chunk = torch.tensor([rng.uniform(1e-6, scale) for _ in range(500)])
        hist.add(chunk)
        seen.append(chunk)
    values = torch.cat(seen)
    edges, counts = hist.coarse(10, float(values.max()))
    assert sum(counts) == values.numel() and 8 <= len(counts) <= 10 and edges[0] == 0 and edges[-1] > float(values.max())
    assert list(counts) == [int(((values >= lo) & (values < hi)).sum()) for lo, hi in zip(edges, edges[1:])]
    assert Histogram().coarse(10, 0.0) == ((), ())


def _peak(target: Any, path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        card = feature_card(target, 692, iter_documents(path), "file", top_n=5, context=64, batch_tokens=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, card.tokens


def test_feature_card_memory_does_not_grow_with_the_file(target: Any, tmp_path: Path) -> None:
    import sysconfig

    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()[:6_000]
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    small.write_text((source + "\n\n") * 4)  # about 25 kB, 7,500 tokens
    large.write_text((source + "\n\n") * 16)
    feature_card(target, 692, iter_documents(small), "file", top_n=5, context=64, batch_tokens=256)  # warm-up, untraced: lazy imports, and caches keyed by batch shape (einops, torch), fill once
    peak_small, tokens_small = _peak(target, small)
    peak_large, tokens_large = _peak(target, large)
    assert tokens_large == 4 * tokens_small
    # Python-side peak (documents, windows, heap, histogram): about the same at 4x the input (measured here:
    # 143 kB and 170 kB, the histogram's 1,024 counts growing past small ints), within a margin that a list
    # of the documents (365 kB) or of the windows' token ids (MBs) would exceed
    assert peak_large < 1.25 * peak_small + 64_000, (peak_small, peak_large)


def test_neuronpedia_url_from_a_registry_entry() -> None:
    directory = {
        "gpt2-small-res-jb": SimpleNamespace(neuronpedia_id={"blocks.8.hook_resid_pre": "gpt2-small/8-res-jb"}),
        "no-ids": SimpleNamespace(neuronpedia_id=None),
    }
    assert neuronpedia_id("gpt2-small-res-jb", "blocks.8.hook_resid_pre", directory) == "gpt2-small/8-res-jb"
    assert neuronpedia_url("gpt2-small-res-jb", "blocks.8.hook_resid_pre", 1234, directory) == "https://neuronpedia.org/gpt2-small/8-res-jb/1234"
    assert neuronpedia_url("gpt2-small-res-jb", "blocks.9.hook_resid_pre", 1, directory) is None
    assert neuronpedia_url("no-ids", "x", 1, directory) is None
    assert neuronpedia_url("unknown", "x", 1, directory) is None
    assert neuronpedia_url("tiny-stdlib-res", "blocks.1.hook_resid_pre", 1) is None  # bundled: no entry, no lookup
    assert neuronpedia_url(None, None, 1) is None


def test_neuronpedia_id_reads_the_saelens_registry_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import sae_lens.loading.pretrained_saes_directory as directory

    fake = {"rel": SimpleNamespace(neuronpedia_id={"sid": "model/0-res"})}
    monkeypatch.setattr(directory, "get_pretrained_saes_directory", lambda: fake)
    assert neuronpedia_url("rel", "sid", 7) == "https://neuronpedia.org/model/0-res/7"


@pytest.mark.parametrize("text", ["plain", 'quo"te \\ back', "tab\tnew\nline", "\x00\x07\x1b ctrl", "é ü 中文", "\u2028\u0085\ufeff", "emoji 😀 \U0001f600"])
def test_yaml_str_round_trips_through_the_case_file_reader(text: str) -> None:
    assert parse_yaml(f"key: {yaml_str(text)}\n", Path("x.yaml")).data == {"key": text}

"""Corpus text sources: documents from a local file or a Hugging Face dataset, packed into token windows.

No pytest here. A window starts at a document's beginning with BOS prepended (as the bundled model was
trained, and as SAELens's evaluation windows are packed): BOS, the document's tokens, BOS, the next
document's, ... up to `context` tokens; the next window starts at the next unused document. Documents are
taken in a seeded order, so the same spec and file give the same windows on every machine; windows stop
when they hold `tokens` non-BOS tokens. The windows' content hash (sha256 of their token ids) names the
corpus in reports. Nothing here holds more than one batch of windows: sources are read lazily.

Sources (path relative to the case file):
- `.txt`: documents are separated by blank lines;
- `.jsonl`: one JSON object per line, the document in `field` (default `text`);
- `.parquet`: one row per document, the document in column `field` (pyarrow, read in row groups);
- `bundled: tiny-stdlib-heldout`: the bundled model's held-out documents (673 docstrings and definitions of
  the Python standard library files the model never saw; `bundled/heldout.jsonl`);
- `dataset: NAME` (+ `split`, `field`): a Hugging Face dataset through the `datasets` library, streamed,
  which honours HF_HUB_OFFLINE and the local cache.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import CaseError
from ..common.files import PathError, checked_file
from ..common.shipped import on_this_node

if TYPE_CHECKING:
    import torch

    from ..cases.schema import CorpusSpec

SHUFFLE_POOL = 4096  # documents held at once for the seeded shuffle of a streamed source


def _txt_documents(path: Path) -> Iterator[str]:
    lines: list[str] = []
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip():
                lines.append(line)
            elif lines:
                yield "".join(lines).rstrip("\n")
                lines = []
    if lines:
        yield "".join(lines).rstrip("\n")


def _jsonl_documents(path: Path, field: str) -> Iterator[str]:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise CaseError(f"corpus {path}:{number}: not JSON ({exc}): a .jsonl file holds one JSON object per line") from None
            if not isinstance(record, dict) or not isinstance(record.get(field), str):
                raise CaseError(f"corpus {path}:{number}: no string field {field!r} (set `field:` to the key that holds the text)")
            yield record[field]


def _parquet_documents(path: Path, field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(str(path))
    except Exception as exc:  # pyarrow's errors: any unreadable file becomes one message
        raise CaseError(f"corpus {path}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    if field not in table.schema_arrow.names:
        raise CaseError(f"corpus {path}: no column {field!r} (columns: {', '.join(table.schema_arrow.names)}); set `field:`")
    for batch in table.iter_batches(columns=[field], batch_size=1024):
        for value in batch.column(0).to_pylist():
            if isinstance(value, str):
                yield value


def _dataset_documents(name: str, split: str, field: str) -> Iterator[str]:
    try:
        import datasets
    except ImportError:
        raise CaseError("corpus dataset: needs the `datasets` package (pip install datasets)") from None
    try:
        stream = datasets.load_dataset(name, split=split, streaming=True)
        for record in stream:
            value = record.get(field)
            if not isinstance(value, str):
                raise CaseError(f"corpus dataset {name!r} ({split}): records have no string field {field!r}; set `field:`")
            yield value
    except CaseError:
        raise
    except Exception as exc:  # hub, cache or format failures of a third-party loader
        raise CaseError(f"corpus dataset {name!r} ({split}) cannot be read: {type(exc).__name__}: {str(exc)[:300]}") from None


def documents(spec: CorpusSpec, base: Path) -> Iterator[str]:
    """The corpus's documents in file order (not shuffled)."""
    if spec.dataset is not None:
        return _dataset_documents(spec.dataset, spec.dataset_split, spec.field)
    path = on_this_node(source_path(spec, base))
    try:
        checked_file(path, "corpus file")
    except PathError as exc:
        raise CaseError(f"{exc} (a corpus path is relative to the case file)") from None
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_documents(path, spec.field)
    if suffix == ".parquet":
        return _parquet_documents(path, spec.field)
    return _txt_documents(path)


BUNDLED_CORPORA = {"tiny-stdlib-heldout": Path(__file__).resolve().parent.parent / "bundled" / "heldout.jsonl"}


def source_path(spec: CorpusSpec, base: Path) -> Path:
    if spec.bundled is not None:
        return BUNDLED_CORPORA[spec.bundled]
    joined = base / (spec.path or "")
    try:
        return joined.resolve()
    except (OSError, ValueError):  # a name the file system refuses: checked_file says why
        return joined


def shuffled(docs: Iterator[str], seed: int, pool: int = SHUFFLE_POOL) -> Iterator[str]:
    """A seeded shuffle that holds at most `pool` documents (a shuffle buffer, as streamed datasets use)."""
    rng = random.Random(seed)
    buffer: list[str] = []
    for doc in docs:
        buffer.append(doc)
        if len(buffer) >= pool:
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


@dataclass(frozen=True)
class Window:
    ids: tuple[int, ...]  # starts with BOS; BOS again before each later document


def windows(docs: Iterator[str], encode: Callable[[str], list[int]], bos: int, context: int, budget: int) -> Iterator[Window]:
    """Packed windows of at most `context` tokens until `budget` non-BOS tokens are reached. A window starts
    at a document's beginning; a document that does not fit is cut, and the next window starts at the next
    document."""
    counted = 0
    current: list[int] = []
    for doc in docs:
        ids = encode(doc)
        if not ids:
            continue
        current.append(bos)  # BOS opens the window, and precedes each later document in it
        current.extend(ids[: context - len(current)])
        if len(current) >= context:
            counted += sum(1 for t in current if t != bos)
            yield Window(tuple(current))
            current = []
            if counted >= budget:
                return
    if any(t != bos for t in current):
        yield Window(tuple(current))


@dataclass
class Corpus:
    """A corpus spec resolved against its case file: opens fresh streams of windows, knows its hash."""

    spec: CorpusSpec
    base: Path
    label: str  # the group's name

    def windows(self, model: Any) -> Iterator[Window]:
        tokenizer = model.tokenizer
        if tokenizer is None:
            raise CaseError("a corpus needs the model's tokenizer")
        bos = tokenizer.bos_token_id
        if bos is None:
            raise CaseError("a corpus needs the model's BOS token (windows start with BOS, as the model was trained)")
        context = self.spec.context
        if context > model.cfg.n_ctx:
            raise CaseError(f"corpus {self.label!r}: context {context} is longer than the model's context of {model.cfg.n_ctx}: lower `context:`")

        from .engine import max_token_chars

        # A window takes at most `context` tokens of a document: only a prefix of twice the characters that many
        # tokens can stand for is tokenized (a 20 MB document costs what its first window needs). The tokens
        # past the first `context` are never used, and tokenization only differs near the cut.
        prefix = 2 * context * max_token_chars(tokenizer) + 1024

        def encode(text: str) -> list[int]:
            return list(tokenizer.encode(text[:prefix], add_special_tokens=False))

        return windows(shuffled(documents(self.spec, self.base), self.spec.seed), encode, int(bos), context, self.spec.tokens)

    def describe(self) -> str:
        source = f"dataset {self.spec.dataset!r} ({self.spec.dataset_split})" if self.spec.dataset else f"bundled {self.spec.bundled}" if self.spec.bundled else str(self.spec.path)
        return f"corpus {self.label!r} ({source}, {self.spec.tokens:,} tokens in windows of {self.spec.context}, seed {self.spec.seed})"


def batches(stream: Iterator[Window], window_budget: int) -> Iterator[list[Window]]:
    """Windows grouped so that a batch holds about `window_budget` tokens."""
    batch: list[Window] = []
    size = 0
    for window in stream:
        batch.append(window)
        size += len(window.ids)
        if size >= window_budget:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


class ContentHash:
    """sha256 over the windows' token ids, updated batch by batch."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def update(self, tokens: torch.Tensor) -> None:
        self.digest.update(tokens.cpu().numpy().astype("<i8").tobytes())

    def hexdigest(self) -> str:
        return self.digest.hexdigest()

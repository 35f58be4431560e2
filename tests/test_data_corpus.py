"""Corpus cleaning, 13-gram decontamination, dedup, the validation slice, packing and the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from backbone.data import corpus as C
from backbone.data import corpus_sources as CS
from backbone.data import decontam as D
from backbone.data.ngrams import word_hash
from backbone.text import ascii_words

EVAL = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat today"
LEAK = "An intro line. " + EVAL.upper() + " and then more words follow here."


class CharTokenizer:
    """A toy tokenizer satisfying the corpus protocol: one id per byte."""

    name = "chars"
    vocab_size = 257
    eos_id = 256

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(t.encode()) for t in texts]


@pytest.fixture
def fake_sources(monkeypatch):
    docs = {
        "alpha": [("a1", "Hello world, a first document."), ("a2", LEAK), ("a3", "  "),
                  ("a4", "hello   WORLD, a first document.")] + [(f"a{i}", f"alpha doc {i}") for i in range(5, 60)],
        "beta": [("b1", "Beta one."), ("b2", "Hello world, a first document.")]
                + [(f"b{i}", f"beta doc {i} " * 50) for i in range(3, 40)],
    }
    monkeypatch.setattr(C, "CORPUS_SOURCES", {k: (lambda v=v: iter(v)) for k, v in docs.items()})
    return docs


def test_strip_gutenberg():
    text = ("Title\n*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nTo be.\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK ***\nlicense")
    assert CS.strip_gutenberg(text) == "To be."
    assert CS.strip_gutenberg("no markers") == "no markers"


def test_strip_brown_tags():
    raw = "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ./.\n"
    assert CS.strip_brown_tags(raw) == 'The Fulton County said " no evidence " .'
    assert CS.strip_brown_tags("1/2/cd and/cc") == "1/2 and"


def test_clean_rest_and_fortunes():
    assert CS.clean_rest("Use :func:`os.path.join` and :class:`~io.StringIO <x>`.\n.. index:: foo") == \
        "Use os.path.join and io.StringIO."
    assert CS.split_fortunes("one\n%\ntwo\nlines\n%\n") == ["one", "two\nlines"]


def test_ngram_index_and_contamination():
    index = D.build_index([EVAL])
    assert len(index) == len(ascii_words(EVAL)) - 12
    assert D.is_contaminated(LEAK, index)  # case and punctuation do not hide a 13-gram
    assert not D.is_contaminated(" ".join(ascii_words(EVAL)[:12]), index)  # 12 words are not enough
    assert not D.is_contaminated("unrelated text " * 20, index)
    assert not D.is_contaminated(EVAL, np.empty(0, dtype=np.uint64))
    numbers = " ".join(str(i) for i in range(1, 30))
    assert len(D.ngram_hashes(numbers)) == 0  # runs of bare numbers are not evidence of a leak
    assert len(D.ngram_hashes("a 1 b 2 c 3 d 4 e 5 f 6 g")) == 1
    assert word_hash("fox") == int.from_bytes(__import__("hashlib").blake2b(b"fox", digest_size=8).digest(), "little")


def test_iter_documents_drops_with_reasons(fake_sources):
    index = D.build_index([EVAL])
    docs = list(C.iter_documents(["alpha", "beta"], index=index, workers=1, include_dropped=True))
    reasons = {(d.source, d.doc_id): d.dropped for d in docs}
    assert reasons[("alpha", "a2")] == "contaminated" and reasons[("alpha", "a3")] == "empty"
    assert reasons[("alpha", "a4")] == "duplicate" and reasons[("beta", "b2")] == "duplicate"
    assert reasons[("alpha", "a1")] is None
    assert [d.source for d in docs[:4]] == ["alpha", "beta", "alpha", "beta"]  # round-robin
    kept = list(C.iter_corpus_documents(["alpha", "beta"], split=None, index=index, workers=1))
    assert len(kept) == len(docs) - 4 and LEAK not in kept


def test_workers_give_the_same_documents(fake_sources):
    index = D.build_index([EVAL])
    one = [(d.doc_id, d.split) for d in C.iter_documents(["alpha", "beta"], index=index, workers=1)]
    two = [(d.doc_id, d.split) for d in C.iter_documents(["alpha", "beta"], index=index, workers=2)]
    assert one == two


def test_val_split_is_deterministic():
    assert C.val_split("s", "d1", 0.5) == C.val_split("s", "d1", 0.5)
    share = sum(C.val_split("s", f"d{i}", 0.1) == "val" for i in range(5000)) / 5000
    assert 0.08 < share < 0.12
    assert all(C.val_split("s", f"d{i}", 0.0) == "train" for i in range(100))


def test_build_corpus_packs_and_writes_manifest(fake_sources, tmp_path):
    tok = CharTokenizer()
    index = D.build_index([EVAL])
    m = C.build_corpus(tok, tmp_path / "c", sources=["alpha", "beta"], index=index, workers=1,
                       val_fraction=0.1, progress=False)
    train, val = C.load_tokens(tmp_path / "c", "train"), C.load_tokens(tmp_path / "c", "val")
    assert train.dtype == np.uint16 and len(train) == m["files"]["train.bin"] and len(val) == m["files"]["val.bin"]
    assert len(val) > 0
    assert (train == tok.eos_id).sum() == sum(s["documents"]["train"] for s in m["sources"].values())
    assert m["sources"]["alpha"]["dropped"] == {"contaminated": 1, "empty": 1, "duplicate": 1}
    first = bytes(train[: int(np.argmax(train == tok.eos_id))].tolist()).decode()
    assert first in {"Hello world, a first document."} | {d[1] for d in fake_sources["alpha"]}
    table = C.stats_table(json.loads((tmp_path / "c" / "manifest.json").read_text()))
    assert "| alpha |" in table and "dropped: contaminated" in table and "**total**" in table
    # a second call with the same settings reuses the build
    (tmp_path / "c" / "train.bin").write_bytes(b"")
    assert C.build_corpus(tok, tmp_path / "c", sources=["alpha", "beta"], index=index, workers=1,
                          val_fraction=0.1, progress=False) == m


def test_build_corpus_caps(fake_sources, tmp_path):
    tok = CharTokenizer()
    m = C.build_corpus(tok, tmp_path / "c", sources=["alpha", "beta"], decontaminate=False, workers=1,
                       max_tokens=300, max_docs_per_source=10, val_fraction=0.0, progress=False)
    assert 300 <= m["files"]["train.bin"] + m["files"]["val.bin"] < 300 + 1000
    assert m["sources"]["alpha"]["documents"]["train"] >= 1 and m["sources"]["beta"]["documents"]["train"] >= 1


def test_uint32_for_large_vocab(fake_sources, tmp_path):
    tok = CharTokenizer()
    tok.vocab_size = 100_000
    m = C.build_corpus(tok, tmp_path / "c", sources=["beta"], decontaminate=False, workers=1, progress=False)
    assert m["dtype"] == "uint32" and C.load_tokens(tmp_path / "c").dtype == np.uint32


def test_unknown_corpus_source():
    with pytest.raises(ValueError, match="unknown corpus source"):
        list(C.iter_documents(["nope"], decontaminate=False, workers=1))


def test_tokenizer_name_fingerprint():
    class Anon(CharTokenizer):
        name = None
    assert C.tokenizer_name(CharTokenizer()) == "chars"
    assert C.tokenizer_name(Anon()).startswith("Anon-257-")


def test_tiny_build_still_has_val(fake_sources, tmp_path):
    m = C.build_corpus(CharTokenizer(), tmp_path / "c", sources=["alpha"], decontaminate=False, workers=1,
                       max_docs_per_source=5, val_fraction=0.0, progress=False)
    train, val = C.load_tokens(tmp_path / "c", "train"), C.load_tokens(tmp_path / "c", "val")
    assert len(val) == m["val_tokens_from_train_tail"] > 0 and val[-1] == CharTokenizer.eos_id
    assert train[-1] == CharTokenizer.eos_id and len(train) + len(val) == sum(
        s["tokens"]["train"] for s in m["sources"].values())

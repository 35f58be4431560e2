"""SWORD zText reader and the Bible pairs, on a tiny synthetic module built here."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from backbone.data import sword


def write_ztext(folder: Path, testament: str, entries: list[str], per_block: int = 3) -> None:
    """Write entries as a zText testament: blocks of ``per_block`` entries, zlib-compressed."""
    folder.mkdir(parents=True, exist_ok=True)
    bzs, bzv, bzz = b"", b"", b""
    for b in range(0, len(entries), per_block):
        raw, offsets = b"", []
        for e in entries[b:b + per_block]:
            data = e.encode()
            offsets.append((len(raw), len(data)))
            raw += data
        comp = zlib.compress(raw)
        bzs += struct.pack("<III", len(bzz), len(comp), len(raw))
        bzz += comp
        bzv += b"".join(struct.pack("<IIH", b // per_block, off, ln) for off, ln in offsets)
    for ext, data in (("bzs", bzs), ("bzv", bzv), ("bzz", bzz)):
        (folder / f"{testament}.{ext}").write_bytes(data)


BOOK = '<div osisID="{b}" type="book"/>'
CHAP = '<chapter n="{c}" osisID="{b}.{c}"/>'


def module(books: list[str], chapters: int, verses: int, lang: str, skip: set = frozenset()) -> list[str]:
    """Entries: module + testament heading, then book/chapter heading slots (markup only) and verses."""
    out = ["", '<milestone type="x-importer"/>']
    for b in books:
        out.append(BOOK.format(b=b))
        for c in range(1, chapters + 1):
            out.append(CHAP.format(b=b, c=c))
            for v in range(1, verses + 1):
                key = (b, c, v)
                out.append("" if key in skip else
                           f'<w lemma="x">{lang}</w> {b} {c}:{v} <note type="x">a note</note>\u00b6 text')
    return out


def test_read_ztext_roundtrip(tmp_path):
    entries = ["", "a", "<b>bold</b>", "", "héllo", "x" * 100, "y"]
    write_ztext(tmp_path, "nt", entries, per_block=2)
    files = [(tmp_path / f"nt.{e}").read_bytes() for e in ("bzs", "bzv", "bzz")]
    assert sword.read_ztext(*files) == entries


def test_clean_osis():
    raw = ('<title type="x">Psalm 23</title><w lemma="strong:H1">The</w> <divineName>LORD</divineName> '
           '<note n="a">a footnote</note>is my   shepherd;\u00b6 <milestone type="x"/>I &amp; thou')
    assert sword.clean_osis(raw) == "The LORD is my shepherd; I & thou"


def test_verse_slots_and_pairs(tmp_path, monkeypatch):
    ot, nt = ["Genesis", "Ruth"], ["Matthew", "Mark"]
    monkeypatch.setattr(sword, "OT_BOOKS", ot)
    monkeypatch.setattr(sword, "NT_BOOKS", nt)
    en = {"ot": module(ot, 2, 3, "en"), "nt": module(nt, 1, 2, "en")}
    es = {"ot": module(ot, 2, 3, "es", skip={("Genesis", 2, 1)}), "nt": module(nt, 1, 2, "es")}
    slots = sword.verse_slots(en["ot"], ot)
    assert len(slots) == 12 and slots[0] == ("Genesis", 1, 1, 4) and slots[-1][:3] == ("Ruth", 2, 3)
    pairs = sword.bible_pairs(en, es)
    assert {k: len(v) for k, v in pairs.items()} == {"train": 5 + 2, "validation": 0, "test": 6 + 2}
    assert pairs["test"][0] == {"en": "en Ruth 1:1 text", "es": "es Ruth 1:1 text", "book": "Ruth",
                                "chapter": 1, "verse": 1}
    assert all(p["book"] not in sword.TEST_BOOKS for p in pairs["train"])
    write_ztext(tmp_path / "m", "ot", en["ot"])
    assert sword.read_module(tmp_path / "m", "ot") == en["ot"]


def test_too_many_books_is_an_error():
    with pytest.raises(ValueError, match="more books"):
        sword.verse_slots(module(["A", "B"], 1, 1, "en"), ["A"])


def test_split_books_are_disjoint():
    assert not set(sword.TEST_BOOKS) & set(sword.VALIDATION_BOOKS)
    assert set(sword.TEST_BOOKS) | set(sword.VALIDATION_BOOKS) <= set(sword.OT_BOOKS + sword.NT_BOOKS)
    assert set(sword.EVAL_OSIS) == set(sword.TEST_BOOKS) | set(sword.VALIDATION_BOOKS)


def test_osis_chapters_any_versification():
    entries = ["", "intro text", BOOK.format(b="Gen") + " Genesis intro", CHAP.format(b="Gen", c=1), "v1",
               "v2", CHAP.format(b="Gen", c=2), "v3", BOOK.format(b="Tob"), CHAP.format(b="Tob", c=1), "t1"]
    assert sword.osis_chapters(entries) == [("intro", "intro text"), ("Gen.0", "Genesis intro"),
                                            ("Gen.1", "v1 v2"), ("Gen.2", "v3"), ("Tob.1", "t1")]

"""SWORD zText Bible modules (Debian ``sword-text-*``): reader, OSIS clean-up, KJV book structure, en-es pairs.

Format (see DATA_SOURCES.md): ``{ot,nt}.bzs`` 12-byte block records (uint32 offset, compressed size,
uncompressed size) into ``.bzz`` (zlib blocks back to back); ``.bzv`` 10-byte entry records (uint32 block,
uint32 offset in the decompressed block, uint16 length). Entry 0 is the module heading, 1 the testament
heading; then, per book, a book-heading slot and per chapter a chapter-heading slot followed by the verses.
Heading slots hold no text (only markup) in these modules, so two text-less slots in a row start a book
and one starts a chapter.

Split of ``bible_en_es`` by whole books: test = Ruth, Proverbs, Mark, Romans; validation = Esther,
Lamentations, Jonah, Philippians, James, 1 John; every other book is train.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

OT_BOOKS = ["Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth", "1 Samuel",
            "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther", "Job",
            "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations",
            "Ezekiel", "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk",
            "Zephaniah", "Haggai", "Zechariah", "Malachi"]
NT_BOOKS = ["Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians", "Galatians",
            "Ephesians", "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians", "1 Timothy",
            "2 Timothy", "Titus", "Philemon", "Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John",
            "3 John", "Jude", "Revelation"]
TEST_BOOKS = ("Ruth", "Proverbs", "Mark", "Romans")
VALIDATION_BOOKS = ("Esther", "Lamentations", "Jonah", "Philippians", "James", "1 John")


def book_split(book: str) -> str:
    """'test', 'validation' or 'train' for a book name."""
    return "test" if book in TEST_BOOKS else "validation" if book in VALIDATION_BOOKS else "train"


def read_ztext(bzs: bytes, bzv: bytes, bzz: bytes) -> list[str]:
    """Decode every entry of one testament (raw UTF-8 with markup; '' for empty entries)."""
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - len(bzs) % 12, 12)]
    cache: dict[int, bytes] = {}
    out = []
    for i in range(0, len(bzv) - len(bzv) % 10, 10):
        block, offset, length = struct.unpack_from("<IIH", bzv, i)
        if length == 0 or block >= len(blocks):
            out.append("")
            continue
        if block not in cache:
            start, size, _ = blocks[block]
            cache[block] = zlib.decompress(bzz[start:start + size])
        out.append(cache[block][offset:offset + length].decode("utf-8", errors="replace"))
    return out


def read_module(module_dir: Path, testament: str) -> list[str]:
    """Entries of ``ot`` or ``nt`` in a zText module folder."""
    files = [(module_dir / f"{testament}.{ext}").read_bytes() for ext in ("bzs", "bzv", "bzz")]
    return read_ztext(*files)


_DROP = re.compile(r"<(note|title)\b[^>]*>.*?</\1>", re.S)
_SELF_CLOSING_DROP = re.compile(r"<(note|title)\b[^>]*/>")
_TAG = re.compile(r"<[^>]+>")


def clean_osis(text: str) -> str:
    """Drop notes and titles with their content, strip the remaining tags, collapse whitespace."""
    text = _SELF_CLOSING_DROP.sub(" ", _DROP.sub(" ", text))
    text = _TAG.sub("", text)
    for ent, ch in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        text = text.replace(ent, ch)
    return " ".join(text.replace("\u00b6", " ").split())


def verse_slots(entries: list[str], books: list[str]) -> list[tuple[str, int, int, int]]:
    """(book, chapter, verse, entry index) of every verse slot, from the text-less heading slots of a full module.

    Read from a module that has every verse (the KJV); other modules in KJV versification align by index.
    """
    slots = []
    book, chapter, verse, empties = -1, 0, 0, 0
    for i in range(2, len(entries)):
        if not clean_osis(entries[i]):
            empties += 1
            continue
        if empties >= 2 or book < 0:
            book, chapter, verse = book + 1, 1, 0
        elif empties == 1:
            chapter, verse = chapter + 1, 0
        empties = 0
        verse += 1
        if book >= len(books):
            raise ValueError(f"more books than expected ({len(books)}) in module")
        slots.append((books[book], chapter, verse, i))
    return slots


def bible_pairs(en: dict[str, list[str]], es: dict[str, list[str]]) -> dict[str, list[dict]]:
    """Aligned {en, es} verse pairs split by book; ``en``/``es`` map 'ot'/'nt' to module entries.

    Pairs where either side is empty after cleaning are dropped. Each record also carries ``book``,
    ``chapter`` and ``verse`` for reference.
    """
    out: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for testament, books in (("ot", OT_BOOKS), ("nt", NT_BOOKS)):
        e_entries, s_entries = en[testament], es[testament]
        for book, chapter, verse, i in verse_slots(e_entries, books):
            e_text = clean_osis(e_entries[i])
            s_text = clean_osis(s_entries[i]) if i < len(s_entries) else ""
            if e_text and s_text:
                out[book_split(book)].append({"en": e_text, "es": s_text, "book": book, "chapter": chapter,
                                              "verse": verse})
    return out


# OSIS abbreviations of the evaluation books (to leave them out of other translations in the corpus).
EVAL_OSIS = {"Ruth": "Ruth", "Proverbs": "Prov", "Mark": "Mark", "Romans": "Rom", "Esther": "Esth",
             "Lamentations": "Lam", "Jonah": "Jonah", "Philippians": "Phil", "James": "Jas", "1 John": "1John"}
_OSIS_CHAPTER = re.compile(r'<chapter\b[^>]*?osisID="([^"]+)"')
_OSIS_BOOK = re.compile(r'<div\b[^>]*?osisID="([^"]+)"[^>]*?type="book"')


def osis_chapters(entries: list[str]) -> list[tuple[str, str]]:
    """(OSIS chapter id such as 'Gen.1', cleaned text) of any module, read from its chapter/book markup.

    Works whatever the versification (the WEB uses NRSVA, with deuterocanonical books); text before a book's
    first chapter is kept under '<Book>.0' (introductions), text before any book under 'intro'.
    """
    chapters: dict[str, list[str]] = {}
    current = "intro"
    for entry in entries:
        books, chaps = _OSIS_BOOK.findall(entry), _OSIS_CHAPTER.findall(entry)
        if chaps:
            current = chaps[-1]
        elif books:
            current = f"{books[-1]}.0"
        text = clean_osis(entry)
        if text:
            chapters.setdefault(current, []).append(text)
    return [(k, " ".join(v)) for k, v in chapters.items()]

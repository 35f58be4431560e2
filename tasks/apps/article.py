"""Article writing: a title (and optionally an outline) in, an article out, one section at a time.

    gptsuite write --backbone artifacts/backbones/smollm2-135m --title "Why small libraries still matter"

A small model loses the thread of a long text: it repeats itself or drifts. So the article is planned and
then written section by section, and each section's prompt holds only what keeps it on course:

    the title, the whole outline, the end of the previous section (its last 120 words), the heading to
    write now

so a prompt stays a few hundred tokens however long the article grows, past the backbone's context.
With a chat template the instruct backbone is asked in its own layout; a plain backbone continues a
Markdown document instead ("# title", "## previous heading", its end, "## heading": no outline there, a
base model would copy it). Without an outline the backbone first writes one.

Measured (`gptsuite write --measure`): the repetition rate, distinct-2 and the judge perplexity of whole
articles, per decoding setting (tasks.apps.quality).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backbone.chat import chat_prompt
from backbone.generate import GenerationConfig, generate_text, stream
from tasks.apps.quality import describe

STYLES = {
    "neutral": "in a clear, neutral style",
    "formal": "in a formal, precise style",
    "casual": "in a friendly, casual style",
    "children": "in simple words that a ten-year-old understands",
}
FALLBACK_HEADINGS = ["Introduction", "Background", "What it means today", "Conclusion"]
DEFAULT_DECODING = GenerationConfig(max_new_tokens=200, temperature=0.7, top_p=0.9, repetition_penalty=1.1, seed=0)


@dataclass
class Article:
    title: str
    outline: list[str]
    sections: list[str] = field(default_factory=list)

    def text(self) -> str:
        body = "\n\n".join(f"## {h}\n\n{s.strip()}" for h, s in zip(self.outline, self.sections))
        return f"# {self.title}\n\n{body}\n"


def parse_outline(text: str, n: int) -> list[str]:
    """Headings from a generated or typed outline: one per line (or separated by ';'), bullets, numbers and
    Markdown marks stripped, duplicates dropped; at most n."""
    parts = re.split(r"[\n;]", text)
    headings = []
    for part in parts:
        h = re.sub(r"^\s*(?:[-*#•]+|\d+[.)]|[IVX]+\.)\s*", "", part).strip().strip("*").strip()
        h = re.sub(r"^(?:section|heading)\s*\d*\s*[:.-]\s*", "", h, flags=re.I).strip()
        if 2 <= len(h) <= 80 and h.lower() not in (x.lower() for x in headings):
            headings.append(h)
    return headings[:n]


class ArticleWriter:
    """Writes articles with one backbone. `chat` is decided by the tokenizer: a chat template means the
    instruct path."""

    def __init__(self, model, tokenizer, decoding: GenerationConfig = DEFAULT_DECODING):
        self.model, self.tokenizer, self.decoding = model, tokenizer, decoding
        self.chat = bool(tokenizer.chat_template)

    def _prompt(self, instruction: str, plain: str) -> str:
        if not self.chat:
            return plain
        return chat_prompt(self.tokenizer, [{"role": "user", "content": instruction}])

    def outline(self, title: str, sections: int) -> list[str]:
        """The backbone's outline of `sections` headings (topped up with generic ones if it wrote fewer)."""
        prompt = self._prompt(f"Write an outline for an article titled \"{title}\": exactly {sections} short "
                              "section headings, one per line, nothing else.", f"# {title}\n\nContents:\n1.")
        text = generate_text(self.model, self.tokenizer, prompt,
                             GenerationConfig(max_new_tokens=min(24 * sections, self.model.config.block_size // 2),
                                              repetition_penalty=1.1, truncate_prompt=True))[0]
        headings = [h for h in parse_outline(text, sections) if h.lower() != title.lower()]
        for h in FALLBACK_HEADINGS:  # topped up with generic headings the outline does not already open with
            if len(headings) >= sections:
                break
            if not any(x.lower().startswith(h.lower()) for x in headings):
                headings.append(h)
        return headings[:sections]

    def section_prompt(self, title: str, outline: list[str], i: int, previous: str, words: int, style: str) -> str:
        plan = "\n".join(f"{k + 1}. {h}" for k, h in enumerate(outline))
        before = (f"The previous section, \"{outline[i - 1]}\", ended:\n{tail_words(previous, 120)}\n\n"
                  if previous else "")
        instruction = (f"You are writing an article titled \"{title}\". Its outline:\n{plan}\n\n{before}"
                       f"Write section {i + 1}, \"{outline[i]}\", in about {words} words, {STYLES[style]}. "
                       "Write only the section's paragraphs, no heading, and do not repeat earlier sections.")
        plain = (f"# {title}\n\n" + (f"## {outline[i - 1]}\n\n{tail_words(previous, 120)}\n\n" if previous else "")
                 + f"## {outline[i]}\n\n")
        return self._prompt(instruction, plain)

    def stream(self, title: str, outline: list[str] | None = None, sections: int = 4, words: int = 120,
               style: str = "neutral") -> Iterator[tuple[int, str]]:
        """Yield (section index, text piece) as the article is written; index -1 carries the outline (one
        heading per line) before any section. The Article is the generator's return value."""
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
        if not title.strip():
            raise ValueError("the title is empty")
        if not 1 <= sections <= 12 or not 20 <= words <= 1000:
            raise ValueError(f"sections must be in [1, 12] and words in [20, 1000], got {sections} and {words}")
        outline = list(outline) if outline else self.outline(title, sections)
        article = Article(title.strip(), outline)
        yield -1, "\n".join(outline)
        # about 1.3 tokens a word, some room over; at most half the context, so the prompt keeps the rest
        room = min(int(words * 1.6) + 16, 1024, self.model.config.block_size // 2)
        cfg = self.decoding.replace(max_new_tokens=room, truncate_prompt=True, stop=("\n## ", "\n# "))
        previous = ""
        for i in range(len(outline)):
            prompt = self.section_prompt(article.title, outline, i, previous, words, style)
            pieces = []
            for piece in stream(self.model, self.tokenizer, prompt, cfg):
                pieces.append(piece)
                yield i, piece
            previous = clean_section("".join(pieces), outline[i])
            article.sections.append(previous)
        return article

    def write(self, title: str, outline: list[str] | None = None, sections: int = 4, words: int = 120,
              style: str = "neutral") -> Article:
        gen = self.stream(title, outline, sections, words, style)
        while True:
            try:
                next(gen)
            except StopIteration as done:
                return done.value


def article_markdown(writer: ArticleWriter, title: str, outline: list[str] | None = None, sections: int = 4,
                     words: int = 120, style: str = "neutral", show_outline: bool = False) -> Iterator[str]:
    """The article as Markdown, in pieces while `writer` writes it (what `gptsuite write` prints and the demo's
    tab shows): "# title" once the outline is known (with `show_outline`, the outline below it in one italic
    line), then each section's "## heading" and its text as it streams. "".join() of the pieces is the
    article."""
    headings, current = outline, -1
    for index, piece in writer.stream(title, outline, sections, words, style):
        if index == -1:  # the outline, one heading a line
            headings = piece.splitlines()
            yield f"# {title.strip()}\n" + ("\n*Outline: " + " · ".join(headings) + "*\n" if show_outline else "")
            continue
        if index != current:
            current = index
            piece = f"\n## {headings[index]}\n\n" + piece
        yield piece


def tail_words(text: str, n: int) -> str:
    """The last n words of a text (the part the next section continues from)."""
    parts = text.split()
    return ("… " if len(parts) > n else "") + " ".join(parts[-n:])


def clean_section(text: str, heading: str) -> str:
    """A section's text without a repeated heading line at its start."""
    lines = text.strip().splitlines()
    if lines and heading.lower() in lines[0].lower() and len(lines[0]) < len(heading) + 12:
        lines = lines[1:]
    return "\n".join(lines).strip()


# (name, decoding) settings `gptsuite write --measure` compares
MEASURE_SETTINGS = {
    "greedy": GenerationConfig(temperature=0.0),
    "greedy + repetition penalty 1.2": GenerationConfig(temperature=0.0, repetition_penalty=1.2),
    "T=0.7, top-p 0.9": GenerationConfig(temperature=0.7, top_p=0.9, seed=0),
    "T=0.7, top-p 0.9 + penalty 1.1 (default)": DEFAULT_DECODING,
    "T=1.0": GenerationConfig(temperature=1.0, seed=0),
}
MEASURE_TITLES = ["Why small libraries still matter", "A beginner's guide to growing tomatoes",
                  "The quiet return of the night train", "How a river shapes the town beside it"]


def measure(model, tokenizer, judge=None, judge_tokenizer=None, titles=MEASURE_TITLES, sections: int = 3,
            words: int = 100, settings=None, out: Path | None = None) -> list[dict]:
    """Each decoding setting writes every title (outlines written once, greedily, and shared); each set of
    articles is measured whole. Writes article.json / article.md under `out` when given."""
    settings = settings or MEASURE_SETTINGS
    outlines = {t: ArticleWriter(model, tokenizer).outline(t, sections) for t in titles}
    rows = []
    for name, cfg in settings.items():
        writer = ArticleWriter(model, tokenizer, cfg)
        start = time.perf_counter()
        articles = [writer.write(t, outlines[t], sections, words) for t in titles]
        seconds = time.perf_counter() - start
        bodies = ["\n\n".join(a.sections) for a in articles]
        figures = describe(bodies, [f"# {a.title}\n\n" for a in articles], judge or model, judge_tokenizer or tokenizer)
        rows.append({"setting": name, "decoding": cfg.describe(), **figures, "seconds": round(seconds, 1),
                     "example": articles[0].text()})
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "article.json").write_text(json.dumps(rows, indent=1))
        lines = [f"Each setting writes {len(titles)} articles ({', '.join(repr(t) for t in titles)}), {sections} "
                 f"sections of about {words} words from one shared outline per title; the figures are of the "
                 "articles' bodies, perplexity under the judge given the title.", "",
                 "| decoding | repetition-4 | distinct-2 | judge perplexity | words per article | seconds |",
                 "|---|---|---|---|---|---|"]
        lines += [f"| {r['setting']} | {r['repetition_4']:.3f} | {r['distinct_2']:.3f} | {r['perplexity']:.1f} | "
                  f"{r['mean_words']:.0f} | {r['seconds']:.0f} |" for r in rows]
        example = next((r for r in rows if r["decoding"] == DEFAULT_DECODING.describe()), rows[0])
        (out / "article.md").write_text("\n".join(lines) + f"\n\n## Example ({example['setting']})\n\n"
                                        + example["example"] + "\n")
    return rows

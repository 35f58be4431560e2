"""``gptsuite data overlap``: what is left shared between each benchmark's training and evaluation splits.

:func:`check` loads each benchmark and reports, per evaluation split, the items whose normalised text
(:func:`backbone.text.normalise`) equals a training item's (exact), those with a training item at word 8-gram
Jaccard >= 0.8 (near, ``dedupe.near_twins``), and those whose source document also supplies training items (same
source: the relation sentences' articles, SQuAD's Wikipedia titles). The loaders have already dropped the
training rows that repeat an evaluation row (``dedupe.drop_train_overlap``); ``raw=True`` checks the splits
before that drop.

What is compared (``VIEWS``): NER the joined tokens, QA the question and context, translation the source side
(both sides of the Bible: either direction is run), code the prompt, relations the sentence (one item per
sentence, not per candidate pair).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from backbone.text import normalise

from . import loaders
from .dedupe import THRESHOLD, TRAIN, N, near_twins
from .download import is_cached
from .sources import DataSourceError

EVAL_SPLITS = ("validation", "test")
EXAMPLES = 3


class Item(NamedTuple):
    """One unit compared: its id (for examples), the text compared, its source document (or None)."""

    id: str
    text: str
    source: str | None = None


def compare(train: Sequence[Item], evals: Sequence[Item], n: int = N, threshold: float = THRESHOLD,
            examples: int = EXAMPLES, twins: bool = False) -> dict:
    """Overlap of one evaluation split with the training split: counts, a few example ids, and with
    ``twins`` every eval item's near twin (exact ones included) with its Jaccard."""
    seen = {}
    for it in train:
        seen.setdefault(normalise(it.text), it.id)
    exact = [(it.id, seen[normalise(it.text)]) for it in evals if normalise(it.text) in seen]
    exact_ids = {e for e, _ in exact}
    found = near_twins([it.text for it in train], [it.text for it in evals], n, threshold)
    near = [(evals[i].id, train[j].id, round(jac, 3)) for i, (j, jac) in sorted(found.items())
            if evals[i].id not in exact_ids]
    sources = {it.source for it in train if it.source is not None}
    shared = [it.id for it in evals if it.source is not None and it.source in sources]
    out = {"n": len(evals), "exact": len(exact), "near": len(near), "same_source": len(shared),
           "examples": {"exact": [f"{e} = {t}" for e, t in exact[:examples]],
                        "near": [f"{e} ~ {t} ({j})" for e, t, j in near[:examples]],
                        "same_source": shared[:examples]}}
    if twins:
        out["twins"] = [{"eval": evals[i].id, "train": train[j].id, "jaccard": round(jac, 3)}
                        for i, (j, jac) in sorted(found.items())]
    return out


class View(NamedTuple):
    """How a benchmark's rows are compared: ``items(rows)`` -> the units; ``twins``: list each eval item's
    near twin (the Bible: the training verses are the translation task's retrieval pool)."""

    items: Callable[[list[dict]], list[Item]]
    twins: bool = False


def _column(text: str, ident: str | None = None, source: str | None = None) -> Callable[[list[dict]], list[Item]]:
    def items(rows: list[dict]) -> list[Item]:
        return [Item(str(r[ident]) if ident else f"#{i}", r[text], r[source] if source else None)
                for i, r in enumerate(rows)]
    return items


def _relation_sentences(rows: list[dict]) -> list[Item]:
    """One item per sentence (its candidate pairs share it); the source is its article ('business-031')."""
    out = {}
    for r in rows:
        out.setdefault(r["sentence_id"], Item(r["sentence_id"], r["text"].split("\n")[0],
                                              r["sentence_id"].rsplit("-s", 1)[0]))
    return list(out.values())


def _verses(side: str) -> Callable[[list[dict]], list[Item]]:
    def items(rows: list[dict]) -> list[Item]:
        return [Item(f"{r['book']} {r['chapter']}:{r['verse']}", r[side]) for r in rows]
    return items


# benchmark -> {label: view}; a label other than "" (the Bible's sides) is appended to the benchmark's name
VIEWS: dict[str, dict[str, View]] = {
    "conll2003": {"": View(lambda rows: [Item(r["id"], loaders.conll_text(r)) for r in rows])},
    "squad": {"": View(lambda rows: [Item(r["id"], loaders.squad_text(r), r["title"]) for r in rows])},
    "openai_humaneval": {"": View(_column("prompt", "task_id"))},
    "mbpp": {"": View(_column("prompt", "task_id"))},
    "ptb": {"": View(_column("sentence"))},
    "mr_sentiment": {"": View(_column("text"))},
    "bbc_news": {"": View(_column("text"))},
    "toxicity": {"": View(_column("text", "id"))},
    "bbc_relations": {"": View(_relation_sentences)},
    "bible_en_es": {"en": View(_verses("en"), twins=True), "es": View(_verses("es"), twins=True)},
}


def rows_of(split: Any) -> list[dict]:
    """A Dataset's rows as dicts, read column-wise (far faster than iterating it)."""
    if isinstance(split, list):
        return split
    cols = split[:]
    return [dict(zip(cols, vals)) for vals in zip(*cols.values())]


def check_splits(name: str, splits: Mapping[str, Any], n: int = N, threshold: float = THRESHOLD) -> dict:
    """The overlap report of one benchmark's loaded splits: {label: {"train": n, "splits": {...}} or
    {"note": ...}}, one label per view (the Bible has "en" and "es")."""
    out = {}
    for label, view in VIEWS.get(name, {"": View(_column("text"))}).items():  # a new benchmark: its text
        key = f"{name} ({label})" if label else name
        if TRAIN not in splits:
            out[key] = {"note": "no training split"}
            continue
        train = view.items(rows_of(splits[TRAIN]))
        out[key] = {"train": len(train), "splits": {
            s: compare(train, view.items(rows_of(splits[s])), n, threshold, twins=view.twins)
            for s in EVAL_SPLITS if s in splits}}
    return out


def check(names: Iterable[str], n: int = N, threshold: float = THRESHOLD, raw: bool = False,
          cached_only: bool = False, load: Callable[..., Any] | None = None) -> dict:
    """Load each benchmark (``raw``: without the loaders' de-duplication) and report its overlap; a
    benchmark that cannot be loaded (or, ``cached_only``, is not cached) gets a "note" saying why."""
    load = load or loaders.load_benchmark  # looked up now: tests replace the loader
    out: dict = {}
    for name in names:
        missing = [s for s in loaders.benchmark_sources(name) if not is_cached(s)] if cached_only else []
        if missing:
            out[name] = {"note": f"not cached: {', '.join(missing)} (`gptsuite data prepare {name}`)"}
            continue
        try:
            splits = load(name, **({"dedupe": False} if raw else {}))
        except DataSourceError as exc:
            out[name] = {"note": f"not checked: {' '.join(str(exc).split())[:200]}", "error": True}
            continue
        out.update(check_splits(name, splits, n, threshold))
    return out


def table(report: Mapping[str, dict]) -> str:
    """The report as a fixed-width table, then the Bible's eval verses with a near twin in the retrieval pool."""
    lines = [f"{'benchmark':22s} {'split':10s} {'train':>7s} {'eval':>6s} {'exact':>6s} {'near':>5s} "
             f"{'same src':>8s}  examples"]
    for name, rep in report.items():
        if "note" in rep:
            lines.append(f"{name:22s} {rep['note']}")
            continue
        for split, r in rep["splits"].items():
            ex = r["examples"]
            shown = "; ".join(ex["exact"][:2] + ex["near"][:1] + ex["same_source"][:1]) or "-"
            lines.append(f"{name:22s} {split:10s} {rep['train']:7d} {r['n']:6d} {r['exact']:6d} {r['near']:5d} "
                         f"{r['same_source']:8d}  {shown[:100]}")
    for name, rep in report.items():
        for split, r in rep.get("splits", {}).items():
            if "twins" in r:
                shown = ", ".join(f"{t['eval']} ~ {t['train']} ({t['jaccard']})" for t in r["twins"][:3])
                lines.append(f"{name} {split}: {len(r['twins'])} of {r['n']} verses have a near twin among the "
                             f"training verses (the retrieval pool){': ' + shown if shown else ''}")
    return "\n".join(lines)


def overlap_command(names: Sequence[str], *, n: int = N, threshold: float = THRESHOLD, raw: bool = False,
                   cached_only: bool = False, json_path: str | None = None) -> int:
    """``gptsuite data overlap``: check ``names`` (all benchmarks when empty), print the table, write the
    report as JSON to ``json_path`` if given; 2 when a benchmark could not be loaded, else 0."""
    unknown = [name for name in names if name not in loaders.BENCHMARKS]
    if unknown:
        raise DataSourceError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(loaders.BENCHMARKS)}")
    if n < 1 or not 0 < threshold <= 1:
        raise DataSourceError(f"--n must be at least 1 and --threshold in (0, 1], got {n} and {threshold}")
    report = check(names or list(loaders.BENCHMARKS), n=n, threshold=threshold, raw=raw, cached_only=cached_only)
    print(table(report))
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=1) + "\n")
        print(f"written: {json_path}")
    return 2 if any(r.get("error") for r in report.values()) else 0

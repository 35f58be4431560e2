"""Train/eval overlap: exact and near-duplicate texts shared by a benchmark's training and evaluation splits.

A score on a test item whose text the model was trained on measures recall, not skill, so

- :func:`drop_train_overlap` removes from a training split every row whose normalised text equals a row of
  an evaluation split (the loaders call it before any split is used; the evaluation splits stay as they are,
  so a reported test set does not change), and
- :func:`check` (``gptsuite data overlap``) reports what is left: per evaluation split, the items whose
  normalised text equals a training item's (exact), those with a training item at word 8-gram Jaccard >=
  0.8 (near), and those whose source document also supplies training items (same source: the relation
  sentences' articles, SQuAD's Wikipedia titles).

Normalised text: lower case, whitespace collapsed. What is compared (``VIEWS``): NER the joined tokens, QA
the question and context, translation the source side (both sides of the Bible: either direction is run),
code the prompt, relations the sentence (one item per sentence, not per candidate pair).

Near duplicates are found exactly, without sampling, by prefix filtering (Chaudhuri et al. 2006; Bayardo
et al. 2007): with the shingles of every text ordered rarest first, two sets with Jaccard >= t share a
shingle among the first ``|A| - ceil(t |A|) + 1`` of each, so only pairs sharing such a prefix shingle are
compared in full. Shingles are stable 64-bit hashes of word n-grams (``decontam.word_hash``), so the result
does not depend on Python's hash seed. A text shorter than n words is one shingle: it can only match exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from .decontam import word_hash, words

N = 8
THRESHOLD = 0.8
TRAIN = "train"
EVAL_SPLITS = ("validation", "test")
EXAMPLES = 3
_MULT = np.uint64(0x100000001B3)
_MASK = (1 << 64) - 1


def normalise(text: str) -> str:
    """Lower case, whitespace collapsed: what 'the same text' means for exact duplicates."""
    return " ".join(text.lower().split())


def drop_train_overlap(splits: Mapping[str, Any], key: Callable[[dict], str], train: str = TRAIN,
                       near: bool = False) -> Any:
    """``splits`` with every training row whose normalised ``key(row)`` equals an evaluation row's dropped,
    and with ``near`` every training row that is a near twin of one (word n-gram Jaccard >= THRESHOLD: the same
    story lightly edited).

    ``splits`` maps split names to lists of records or ``datasets.Dataset`` (a DatasetDict comes back as
    one); evaluation splits are returned untouched, and ``splits`` itself when nothing is dropped.
    """
    if train not in splits:
        return splits
    held_out = [normalise(key(row)) for name, rows in splits.items() if name != train for row in rows]
    rows = splits[train]
    texts = [normalise(key(row)) for row in rows]
    # near_twins pairs each of its second argument's texts with its likeliest twin in the first: the training
    # texts go second, so every training row with a twin is found
    twins = near_twins(held_out, texts) if near and held_out else {}
    exact = set(held_out)
    keep = [i for i, text in enumerate(texts) if text not in exact and i not in twins]
    if len(keep) == len(rows):
        return splits
    kept = rows.select(keep) if hasattr(rows, "select") else [rows[i] for i in keep]
    return type(splits)({**splits, train: kept})


# --- near duplicates --------------------------------------------------------------------------------------

class Shingles(NamedTuple):
    """Distinct shingle hashes of each text, CSR-style: text i owns ``hashes[start[i]:start[i + 1]]``."""

    start: np.ndarray
    hashes: np.ndarray

    def size(self) -> np.ndarray:
        return np.diff(self.start)


def shingles(texts: Sequence[str], n: int = N) -> Shingles:
    """Sorted distinct word n-gram hashes of every text, computed over all texts at once (numpy)."""
    # word hashes text by text (no list of every word kept: SQuAD's contexts hold 11M of them)
    per_text = [np.fromiter(map(word_hash, ws), dtype=np.uint64, count=len(ws)) for ws in map(words, texts)]
    lengths = np.fromiter(map(len, per_text), dtype=np.int64, count=len(per_text))
    ends = np.cumsum(lengths)
    ids = np.concatenate(per_text) if per_text else np.empty(0, dtype=np.uint64)
    k = max(len(ids) - n + 1, 0)
    h = np.zeros(k, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _MULT + ids[j:j + k]
    doc = np.repeat(np.arange(len(texts)), lengths)[:k]
    valid = np.arange(k) + n <= ends[doc]  # n-grams inside one text only
    short = [i for i, w in enumerate(per_text) if 0 < len(w) < n]
    doc = np.concatenate([doc[valid], np.array(short, dtype=np.int64)])
    h = np.concatenate([h[valid], np.array([_whole(per_text[i]) for i in short], dtype=np.uint64)])
    order = np.lexsort((h, doc))
    doc, h = doc[order], h[order]
    first = np.ones(len(h), dtype=bool)
    first[1:] = (doc[1:] != doc[:-1]) | (h[1:] != h[:-1])
    doc, h = doc[first], h[first]
    return Shingles(np.searchsorted(doc, np.arange(len(texts) + 1)), h)


def _whole(ids: np.ndarray) -> int:
    """The one shingle of a text shorter than n words (the polynomial hash of all its words)."""
    h = 0
    for w in ids.tolist():
        h = (h * int(_MULT) + w) & _MASK
    return h


def _prefix(sh: Shingles, rank: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(text, shingle rank) of each text's prefix: its rarest ``s - ceil(t s) + 1`` shingles."""
    size = sh.size()
    doc = np.repeat(np.arange(len(size)), size)
    order = np.lexsort((rank, doc))
    pos = np.arange(len(doc)) - sh.start[doc[order]]
    keep = np.ceil(threshold * size - 1e-9).astype(np.int64)
    in_prefix = pos < (size - keep + 1)[doc[order]]
    return doc[order][in_prefix], rank[order][in_prefix]


def near_twins(train: Sequence[str], evals: Sequence[str], n: int = N,
               threshold: float = THRESHOLD) -> dict[int, tuple[int, float]]:
    """Eval index -> (train index, Jaccard) of its most similar training text, for every eval text with a
    training text at word n-gram Jaccard >= ``threshold``."""
    # each distinct text once: boilerplate repeated on both sides ("<unk>", ".") would pair every copy
    first_train: dict[str, int] = {}
    for i, t in enumerate(train):
        first_train.setdefault(t, i)
    distinct_evals = list(dict.fromkeys(evals))
    found = _near_distinct(list(first_train), distinct_evals, n, threshold)
    train_index = list(first_train.values())
    by_text = {distinct_evals[i]: (train_index[j], jac) for i, (j, jac) in found.items()}
    return {i: by_text[t] for i, t in enumerate(evals) if t in by_text}


def _near_distinct(train: Sequence[str], evals: Sequence[str], n: int,
                   threshold: float) -> dict[int, tuple[int, float]]:
    """:func:`near_twins` on texts that are all distinct (prefix filtering, then exact Jaccard)."""
    a, b = shingles(evals, n), shingles(train, n)
    if not len(a.hashes) or not len(b.hashes):
        return {}
    # rank of every shingle, rarest first (ties by hash): prefixes then hold rare shingles, few candidates
    uniq, inverse, counts = np.unique(np.concatenate([a.hashes, b.hashes]), return_inverse=True, return_counts=True)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[np.lexsort((uniq, counts))] = np.arange(len(uniq))
    rank = rank[inverse.reshape(-1)]
    ea, ra = _prefix(a, rank[:len(a.hashes)], threshold)
    eb, rb = _prefix(b, rank[len(a.hashes):], threshold)
    order = np.argsort(rb, kind="stable")
    eb, rb = eb[order], rb[order]
    lo, hi = np.searchsorted(rb, ra, "left"), np.searchsorted(rb, ra, "right")
    reps = hi - lo
    left = np.repeat(ea, reps)
    right = eb[np.repeat(hi - reps.cumsum(), reps) + np.arange(reps.sum())] if reps.sum() else left
    pairs = np.unique(left * len(train) + right) if len(left) else left
    return _verify(a, b, pairs // max(len(train), 1), pairs % max(len(train), 1), threshold)


def _verify(a: Shingles, b: Shingles, left: np.ndarray, right: np.ndarray,
            threshold: float) -> dict[int, tuple[int, float]]:
    """The candidate pairs' exact Jaccard; the best training twin of each eval text that reaches ``threshold``."""
    size_a, size_b = a.size(), b.size()
    best: dict[int, tuple[int, float]] = {}
    for i, j in zip(left.tolist(), right.tolist()):
        sa, sb = size_a[i], size_b[j]
        if min(sa, sb) < threshold * max(sa, sb):  # Jaccard <= min/max: too different in size
            continue
        inter = len(np.intersect1d(a.hashes[a.start[i]:a.start[i + 1]], b.hashes[b.start[j]:b.start[j + 1]],
                                   assume_unique=True))
        jac = float(inter / (sa + sb - inter))
        if jac >= threshold and jac > best.get(i, (-1, -1.0))[1]:
            best[i] = (j, jac)
    return best


# --- the check --------------------------------------------------------------------------------------------

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


def conll_text(row: dict) -> str:
    return " ".join(row["tokens"])


def squad_text(row: dict) -> str:
    return f"{row['question']}\n{row['context']}"


# benchmark -> {label: view}; a label other than "" (the Bible's sides) is appended to the benchmark's name
VIEWS: dict[str, dict[str, View]] = {
    "conll2003": {"": View(lambda rows: [Item(r["id"], conll_text(r)) for r in rows])},
    "squad": {"": View(lambda rows: [Item(r["id"], squad_text(r), r["title"]) for r in rows])},
    "openai_humaneval": {"": View(_column("prompt", "task_id"))},
    "mbpp": {"": View(_column("prompt", "task_id"))},
    "ptb": {"": View(_column("sentence"))},
    "mr_sentiment": {"": View(_column("text"))},
    "bbc_news": {"": View(_column("text"))},
    "toxicity": {"": View(_column("text", "id"))},
    "bbc_relations": {"": View(_relation_sentences)},
    "bible_en_es": {"en": View(_verses("en"), twins=True), "es": View(_verses("es"), twins=True)},
}


def benchmark_sources(name: str) -> tuple[str, ...]:
    """The registry sources a benchmark reads (to tell whether it can be checked without a fetch)."""
    from .loaders import BENCHMARKS

    extra = {"toxicity": ("mr_sentiment", "bbc_news"), "bible_en_es": ("sword-kjv", "sword-sparv")}
    src = BENCHMARKS[name][0]
    return ((src,) if src else ()) + extra.get(name, ())


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
    from .loaders import load_benchmark
    from .download import DataSourceError, is_cached

    load = load or load_benchmark
    out: dict = {}
    for name in names:
        missing = [s for s in benchmark_sources(name) if not is_cached(s)] if cached_only else []
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

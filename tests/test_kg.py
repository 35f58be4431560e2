"""Relation extraction as pair classification, and the knowledge graph: pairs, merging, exports, scoring."""

from __future__ import annotations

import json

import pytest

from backbone.data import parsers as P
from tasks.kg.graph import build_graph, canonical_names, end_to_end_scores
from tasks.outputs import Entities, Entity, LabelScores

SENTENCES = [
    {"id": "s1", "topic": "sport", "sentence": "Arsenal striker Thierry Henry scored in London.",
     "entities": [{"text": "Arsenal", "type": "ORG", "start": 0, "end": 7},
                  {"text": "Thierry Henry", "type": "PER", "start": 16, "end": 29},
                  {"text": "London", "type": "LOC", "start": 40, "end": 46}],
     "relations": [{"head": 1, "tail": 0, "type": "works_for"}]},
    {"id": "s2", "topic": "business", "sentence": "Henry met Tesco boss Terry Leahy.",
     "entities": [{"text": "Henry", "type": "PER", "start": 0, "end": 5},
                  {"text": "Tesco", "type": "ORG", "start": 10, "end": 15},
                  {"text": "Terry Leahy", "type": "PER", "start": 21, "end": 32}],
     "relations": [{"head": 2, "tail": 1, "type": "leader_of"}]},
]
KNOWN = {"Arsenal": "ORG", "Thierry Henry": "PER", "Henry": "PER", "London": "LOC", "Tesco": "ORG",
         "Terry Leahy": "PER", "Arsenal's": "ORG"}
GOLD = {("Thierry Henry", "Arsenal"): "works_for", ("Terry Leahy", "Tesco"): "leader_of"}


class StubNER:
    """Finds the KNOWN names (longest first) as whole-word entities."""

    def predict(self, texts, **options):
        out = []
        for text in texts:
            words = text.replace(".", " .").split()
            ents, i = [], 0
            while i < len(words):
                for n in (2, 1):
                    name = " ".join(words[i : i + n])
                    if name in KNOWN and len(name.split()) == n:
                        ents.append(Entity(KNOWN[name], i, i + n, name))
                        i += n
                        break
                else:
                    i += 1
            out.append(Entities(words, ["O"] * len(words), ents))
        return out


class StubRelations:
    """Knows the GOLD pairs: probability 0.9 for their relation, else 0.8 for none."""

    labels = P.RELATION_LABELS

    def predict(self, texts, **options):
        out = []
        for text in texts:
            pair = text.split("\n")[-1]
            head, tail = (part.rsplit(" (", 1)[0] for part in pair.split(" -> "))
            label = GOLD.get((head, tail), "none")
            p = 0.9 if label != "none" else 0.8
            out.append(LabelScores({lab: (p if lab == label else (1 - p) / 5) for lab in self.labels}))
        return out


def test_relation_pairs_are_the_type_compatible_ordered_pairs():
    rows = P.relation_pairs(SENTENCES)
    pairs = {r["text"].split("\n")[1]: P.RELATION_LABELS[r["label"]] for r in rows}
    assert pairs == {
        "Thierry Henry (PER) -> Arsenal (ORG)": "works_for", "Arsenal (ORG) -> London (LOC)": "none",
        "Thierry Henry (PER) -> London (LOC)": "none",
        "Henry (PER) -> Tesco (ORG)": "none", "Terry Leahy (PER) -> Tesco (ORG)": "leader_of"}
    sentence = {s["id"]: s["sentence"] for s in SENTENCES}
    assert all(r["text"].startswith(sentence[r["sentence_id"]] + "\n") for r in rows)


def test_micro_f1_without_the_negative_label():
    import numpy as np
    import torch

    from tasks.classification.module import MicroF1Without
    from tasks.confidence import label_counts, micro_f1_without

    # tp 2 (1, 2); a 1 called none: a miss; none called 2: a false alarm; a 2 called 1: both
    gold, pred = [0, 1, 1, 2, 0, 2], [0, 1, 0, 2, 2, 1]
    sums = np.sum([label_counts(3, g, p) for g, p in zip(gold, pred)], axis=0)
    want = 2 * 2 / (2 * 2 + 2 + 2)
    assert micro_f1_without(3, 0)(sums) == pytest.approx(want)
    metric = MicroF1Without(3, 0)
    metric.update(torch.tensor(pred[:3]), torch.tensor(gold[:3]))
    metric.update(torch.tensor(pred[3:]), torch.tensor(gold[3:]))
    assert float(metric.compute()) == pytest.approx(want)


def test_canonical_names_join_cases_and_surnames():
    names = canonical_names([("Thierry Henry", "PER"), ("Henry", "PER"), ("ARSENAL", "ORG"), ("Arsenal", "ORG"),
                             ("Smith", "PER"), ("Ann Smith", "PER"), ("Bo Smith", "PER"), ("Jordan", "PER"),
                             ("Jordan", "LOC"), ("Blair", "ORG"), ("Tony Blair", "PER"), ("Blair", "PER")])
    assert names[("Henry", "PER")] == "Thierry Henry" and names[("Arsenal", "ORG")] == "ARSENAL"
    assert names[("Smith", "PER")] == "Smith"  # two Smiths: ambiguous, left alone
    assert (names[("Jordan", "PER")], names[("Jordan", "LOC")]) == ("Jordan", "Jordan (LOC)")
    assert (names[("Blair", "PER")], names[("Blair", "ORG")]) == ("Tony Blair", "Blair")


def test_sentences_are_not_cut_at_abbreviations():
    assert P.sentences_of("Dr. Smith met Mr. Jones in St. Louis. The U.S. Army came. J. Smith left! Then rain.") == [
        "Dr. Smith met Mr. Jones in St. Louis.", "The U.S. Army came.", "J. Smith left!", "Then rain."]


def test_build_graph_merges_sentences_and_exports(tmp_path):
    import networkx as nx  # here: optional (torch brings it), as in tasks.kg.graph

    text = "Arsenal striker Thierry Henry scored in London. Later Henry joined Arsenal again. " \
           "Henry met Tesco boss Terry Leahy."
    GOLD[("Henry", "Arsenal")] = "works_for"  # the surname's mention resolves to the same node and triple
    try:
        graph = build_graph(text, StubNER(), StubRelations())
    finally:
        del GOLD[("Henry", "Arsenal")]
    assert graph.nodes == {"Arsenal": "ORG", "Thierry Henry": "PER", "Tesco": "ORG", "Terry Leahy": "PER"}
    triples = {(t.head, t.relation, t.tail): t for t in graph.triples}
    assert set(triples) == {("Thierry Henry", "works_for", "Arsenal"), ("Terry Leahy", "leader_of", "Tesco")}
    assert len(triples[("Thierry Henry", "works_for", "Arsenal")].evidence) == 2
    graph.write_jsonl(tmp_path / "g.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert {(r["head"], r["head_type"], r["relation"], r["tail_type"]) for r in lines} == {
        ("Thierry Henry", "PER", "works_for", "ORG"), ("Terry Leahy", "PER", "leader_of", "ORG")}
    graph.write_graphml(tmp_path / "g.graphml")
    g = nx.read_graphml(tmp_path / "g.graphml")
    assert g.nodes["Tesco"]["type"] == "ORG" and g.number_of_edges() == 2
    graph.draw(tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 5_000


def test_end_to_end_scores_count_triples_from_found_entities():
    scores = end_to_end_scores(StubNER(), StubRelations(), SENTENCES)
    assert (scores["gold"], scores["predicted"], scores["f1"]) == (2, 2, 100.0)
    extra = {"head": 0, "tail": 2, "type": "org_based_in"}
    missed = [{**SENTENCES[0], "relations": [*SENTENCES[0]["relations"], extra]}]
    scores = end_to_end_scores(StubNER(), StubRelations(), missed)
    assert (scores["precision"], scores["recall"]) == (100.0, 50.0)


def test_relations_task_fits_and_the_kg_command_runs(tmp_path, monkeypatch, capsys):
    """The relation task trains on pairs from a small labelled file (the loader reads the project's file;
    here a copy of SENTENCES), then `gptsuite kg` builds a graph with it and a saved NER task."""
    from backbone.data import loaders
    from tasks.cli import main
    from tasks.task_cli import run_cli
    from tests.helpers import ROOT
    from tests.test_demo import make_demo_artifacts

    path = tmp_path / "rel.jsonl"
    path.write_text("\n".join(json.dumps({**s, "id": f"{s['id']}-{k}"}) for k in range(10) for s in SENTENCES))
    monkeypatch.setattr(loaders, "RELATIONS_FILE", path)
    assert len(loaders.load_benchmark("bbc_relations")["test"]) > 0
    root = make_demo_artifacts(tmp_path / "artifacts")
    run_cli("relations", ["fit", "--config", str(ROOT / "configs/tasks/relations.yaml"),
                          "--model.backbone", str(root / "backbones" / "nano"), "--trainer.max_epochs", "1",
                          "--model.export_dir", str(tmp_path / "rel"), "--trainer.callbacks", "[]",
                          "--model.balanced_loss", "true",
                          "--trainer.enable_checkpointing", "false", "--trainer.default_root_dir", str(tmp_path)])
    assert (tmp_path / "rel" / "task.json").is_file()
    assert main(["kg", "--text", "Arsenal striker Thierry Henry scored.", "--ner", str(root / "tasks" / "ner"),
                 "--relations", str(tmp_path / "rel"), "--out", str(tmp_path / "graph")]) == 0
    assert (tmp_path / "graph" / "graph.graphml").is_file() and (tmp_path / "graph" / "graph.png").is_file()
    capsys.readouterr()
    assert main(["kg", "--eval", "--ner", str(root / "tasks" / "ner"), "--relations", str(tmp_path / "rel"),
                 "--out", str(tmp_path / "graph")]) == 0
    assert json.loads((tmp_path / "graph" / "kg_eval.json").read_text())["sentences"] > 0
    for bad in (["--file", str(tmp_path)], ["--text", "  "], ["--text", "x", "--min-score", "2"]):
        assert main(["kg", *bad, "--ner", str(root / "tasks" / "ner"), "--relations", str(tmp_path / "rel")]) == 2


def test_balanced_loss_weighs_labels_by_inverse_frequency():
    from types import SimpleNamespace

    from tasks.classification.module import SequenceClassifier

    class Data:
        label_column = "label"
        splits = {"train": {"label": [0, 0, 0, 0, 0, 0, 1, 1, 2]}}

        def label_index(self, v):
            return v

    module = SequenceClassifier(backbone="unused", label_names=["none", "a", "b", "c"], balanced_loss=True)
    module._trainer = SimpleNamespace(datamodule=Data())
    weights = module.balanced_weights()
    assert weights.tolist() == pytest.approx([9 / (4 * 6), 9 / (4 * 2), 9 / (4 * 1), 9 / (4 * 1)])  # c unseen: as 1
    module._trainer = None
    assert module.balanced_weights() is None

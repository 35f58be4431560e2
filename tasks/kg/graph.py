"""Text in, a knowledge graph out: entities from the NER task, relations from the relation task, merged over
the sentences of a document.

    graph = build_graph(text, load_task("artifacts/tasks/ner"), load_task("artifacts/tasks/relations"))
    graph.export(Path("graph"))    # graph.jsonl, graph.graphml and graph.png

Per sentence: NER finds PER / ORG / LOC entities; every ordered pair whose types some relation joins is
classified (tasks.kg); a relation other than "none" with probability >= min_score becomes a triple, its
sentence kept as evidence. Across sentences, mentions of one entity become one node: the same name in any
case, and a person's surname alone ("Blair") joins the full name met in the document ("Tony Blair").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backbone.data.parsers import CANDIDATE_PAIRS, relation_pair_text, sentences_of
from tasks.artifact import load_task

ENTITY_TYPES = ("PER", "ORG", "LOC")


@dataclass
class Triple:
    head: str
    relation: str
    tail: str
    score: float
    evidence: list[str] = field(default_factory=list)


@dataclass
class Graph:
    nodes: dict[str, str] = field(default_factory=dict)  # name -> entity type
    triples: list[Triple] = field(default_factory=list)

    def write_jsonl(self, path) -> None:
        """One triple per line: head, relation, tail (with their types), score, evidence sentences."""
        with open(path, "w", encoding="utf-8") as f:
            for t in self.triples:
                f.write(json.dumps({**asdict(t), "head_type": self.nodes[t.head], "tail_type": self.nodes[t.tail]},
                                   ensure_ascii=False) + "\n")

    def to_networkx(self):
        import networkx as nx  # here: optional (torch brings it), and only the GraphML and the drawing need it

        g = nx.MultiDiGraph()
        for name, kind in self.nodes.items():
            g.add_node(name, type=kind)
        for t in self.triples:
            g.add_edge(t.head, t.tail, relation=t.relation, score=round(t.score, 4), evidence=" | ".join(t.evidence))
        return g

    def write_graphml(self, path) -> None:
        import networkx as nx  # here: optional (torch brings it), and only the GraphML and the drawing need it

        nx.write_graphml(self.to_networkx(), path)

    def draw(self, path, title: str = "") -> None:
        """Nodes coloured by type, each edge labelled with its relation."""
        import matplotlib  # here: heavy, and only a plot needs it; the Agg backend is chosen before pyplot loads

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # after matplotlib.use: no display needed
        import networkx as nx  # here: optional (torch brings it), and only the GraphML and the drawing need it

        g = self.to_networkx()
        fig, ax = plt.subplots(figsize=(8, 6))
        if g.number_of_nodes():
            pos = nx.spring_layout(g, seed=0, k=1.2)
            colours = {"PER": "#f4a261", "ORG": "#2a9d8f", "LOC": "#8ab17d"}
            nx.draw_networkx_nodes(g, pos, ax=ax, node_size=900,
                                   node_color=[colours.get(g.nodes[n]["type"], "#cccccc") for n in g])
            nx.draw_networkx_labels(g, pos, ax=ax, font_size=8)
            nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=15, node_size=900,
                                   connectionstyle="arc3,rad=0.1")
            labels = {(u, v): d["relation"] for u, v, d in g.edges(data=True)}
            nx.draw_networkx_edge_labels(g, pos, edge_labels=labels, ax=ax, font_size=7)
            handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in colours.items()]
            ax.legend(handles=handles, loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no relation found", ha="center", va="center")
        ax.set_title(title or f"{g.number_of_nodes()} entities, {len(self.triples)} relations")
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def export(self, folder: Path) -> None:
        """graph.jsonl, graph.graphml and graph.png in `folder` (made when missing)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.write_jsonl(folder / "graph.jsonl")
        self.write_graphml(folder / "graph.graphml")
        self.draw(folder / "graph.png")


def canonical_names(mentions: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(mention, type) -> the name of its node. Mentions of one type that differ only in case share the first
    spelling met; a one-word PER mention that is the last word of exactly one longer PER name joins it
    ("Blair" -> "Tony Blair"); a name met with two types (Jordan the person, Jordan the country) gets its type
    in brackets on the second, so the two stay apart."""
    first: dict[tuple[str, str], str] = {}
    for text, kind in mentions:
        first.setdefault((text.lower(), kind), text)
    full = {first[(t.lower(), k)] for t, k in mentions if k == "PER" and len(t.split()) > 1}
    out, kind_of = {}, {}
    for text, kind in mentions:
        name = first[(text.lower(), kind)]
        if kind == "PER" and len(text.split()) == 1:
            longer = {f for f in full if f.split()[-1].lower() == text.lower()}
            if len(longer) == 1:
                name = longer.pop()
        if kind_of.setdefault(name, kind) != kind:
            name = f"{name} ({kind})"
        out[(text, kind)] = name
    return out


def sentence_entities(ner, sentences: list[str], batch_size: int = 16) -> list[list[tuple[str, str]]]:
    """(text, type) of each sentence's PER / ORG / LOC entities, by the NER task."""
    return [[(e.text, e.type) for e in found.entities if e.type in ENTITY_TYPES]
            for found in ner.predict(sentences, batch_size=batch_size)]


def classify_pairs(relations, sentence: str, entities: list[tuple[str, str]], min_score: float,
                   negative: str = "none") -> list[tuple[tuple[str, str], str, tuple[str, str], float]]:
    """(head, relation, tail, probability) of the sentence's candidate pairs that hold a relation; head and
    tail as (text, type)."""
    pairs = [(h, t) for h in entities for t in entities
             if h[0] != t[0] and (h[1], t[1]) in CANDIDATE_PAIRS]
    if not pairs:
        return []
    texts = [relation_pair_text(sentence, h[0], h[1], t[0], t[1]) for h, t in pairs]
    out = []
    for (h, t), scores in zip(pairs, relations.predict(texts)):
        label = scores.label
        if label != negative and scores.scores[label] >= min_score:
            out.append((h, label, t, scores.scores[label]))
    return out


def build_graph(text: str, ner, relations, min_score: float = 0.5) -> Graph:
    sentences = sentences_of(text)
    per_sentence = sentence_entities(ner, sentences)
    names = canonical_names([m for ents in per_sentence for m in ents])
    graph, found = Graph(), {}
    for sentence, ents in zip(sentences, per_sentence):
        for mention in ents:
            graph.nodes.setdefault(names[mention], mention[1])
        for head, relation, tail, score in classify_pairs(relations, sentence, ents, min_score):
            key = (names[head], relation, names[tail])
            triple = found.setdefault(key, Triple(*key, score))
            triple.score = max(triple.score, score)
            if sentence not in triple.evidence:
                triple.evidence.append(sentence)
    graph.triples = list(found.values())
    linked = {t.head for t in graph.triples} | {t.tail for t in graph.triples}
    graph.nodes = {n: k for n, k in graph.nodes.items() if n in linked}  # the graph shows related entities
    return graph


def end_to_end_scores(ner, relations, records: list[dict], min_score: float = 0.0) -> dict:
    """Relation extraction from raw sentences (entities found by NER, not given): micro precision / recall /
    F1 of (head, relation, tail) triples against the labelled ones, matched by exact entity text."""
    sentences = [r["sentence"] for r in records]
    tp = fp = fn = 0
    for rec, ents in zip(records, sentence_entities(ner, sentences)):
        gold = {(rec["entities"][r["head"]]["text"], r["type"], rec["entities"][r["tail"]]["text"])
                for r in rec["relations"]}
        pred = {(h[0], rel, t[0]) for h, rel, t, _ in classify_pairs(relations, rec["sentence"], ents, min_score)}
        tp, fp, fn = tp + len(gold & pred), fp + len(pred - gold), fn + len(gold - pred)
    precision = tp / (tp + fp) if tp else 0.0
    recall = tp / (tp + fn) if tp else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"sentences": len(records), "gold": tp + fn, "predicted": tp + fp, "precision": 100 * precision,
            "recall": 100 * recall, "f1": 100 * f1}


def evaluate_saved_tasks(ner_dir: str, relations_dir: str, min_score: float, out: Path) -> dict:
    """`gptsuite kg --eval`: end_to_end_scores of the saved NER and relation tasks in these folders on the
    labelled test sentences, with the folders and min_score, also written to out/kg_eval.json."""
    from backbone.data.loaders import relation_sentences  # here: loads `datasets`, which every CLI start would pay

    ner, relations = load_task(ner_dir), load_task(relations_dir)
    scores = end_to_end_scores(ner, relations, relation_sentences()["test"], min_score)
    scores.update(ner=ner_dir, relations=relations_dir, min_score=min_score)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kg_eval.json").write_text(json.dumps(scores, indent=1))
    return scores

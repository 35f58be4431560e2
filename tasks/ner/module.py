"""Named-entity recognition: a tag for every word, scored by seqeval at the entity level.

seqeval's default mode matches conlleval: an entity counts only when its type and both boundaries match.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities
from torch import nn
from torchmetrics import Metric

from tasks.base import LabelledTask
from tasks.confidence import f1_from_counts, precision_from_counts, recall_from_counts
from tasks.data import IGNORE
from tasks.heads import CRF, BidirectionalLayer
from tasks.ner.data import align_words
from tasks.outputs import Entities, Entity


class EntityF1(Metric):
    """Entity-level precision / recall / F1 (seqeval, conlleval-compatible) over word tag sequences."""

    def __init__(self, label_names: list[str]):
        super().__init__()
        self.label_names = list(label_names)
        self.add_state("pred", default=[], dist_reduce_fx="cat")
        self.add_state("gold", default=[], dist_reduce_fx="cat")
        self.add_state("lengths", default=[], dist_reduce_fx="cat")

    def update(self, pred: list[list[int]], gold: list[list[int]]) -> None:
        for p, g in zip(pred, gold):
            self.pred.append(torch.tensor(p, dtype=torch.long))
            self.gold.append(torch.tensor(g, dtype=torch.long))
            self.lengths.append(torch.tensor([len(g)]))

    def compute(self) -> dict[str, float]:
        cat = lambda xs: torch.cat(xs) if isinstance(xs, list) else xs  # noqa: E731
        pred, gold, lengths = cat(self.pred), cat(self.gold), cat(self.lengths)
        to_tags = lambda flat: [[self.label_names[i] for i in seq] for seq in flat.split(lengths.tolist())]  # noqa: E731
        p, g = to_tags(pred), to_tags(gold)
        return {"precision": precision_score(g, p), "recall": recall_score(g, p), "f1": f1_score(g, p)}


def entity_counts(label_names: list[str], pred: list[int], gold: list[int]) -> tuple[int, int, int]:
    """(tp, fp, fn) of one sentence's entities, matched as seqeval's default mode matches them."""
    found = set(get_entities([label_names[i] for i in pred]))
    true = set(get_entities([label_names[i] for i in gold]))
    return len(found & true), len(found - true), len(true - found)


def merge_entities(words: list[str], tags: list[str]) -> list[Entity]:
    """B-X I-X ... runs -> an Entity(X, first word, last word + 1, their text) each."""
    entities, current = [], None  # current: (type, first word) of the run being read
    for i, tag in enumerate([*tags, "O"]):
        kind = tag[2:] if tag[:2] in ("B-", "I-") else None
        continues = current is not None and tag.startswith("I-") and kind == current[0]
        if current is not None and not continues:
            entities.append(Entity(current[0], current[1], i, " ".join(words[current[1] : i])))
            current = None
        if kind is not None and not continues:
            current = (kind, i)
    return entities


class TokenClassifier(LabelledTask):
    """A tag per word, read at the word's last sub-token (the only one that has seen the whole word).

    Its own arguments; the rest are LabelledTask's (passed on as **kwargs).

    Args:
        head_dropout: dropout on the word states and before the tag layer.
        bidirectional: what gives each word its right-hand context, which a causal backbone lacks: "none" (a
            linear layer on each word), "bilstm" or "transformer" (tasks.heads.BidirectionalLayer).
        bidirectional_hidden: width of that layer (per direction for the BiLSTM).
        crf: decode with a linear-chain CRF (tasks.heads.CRF) instead of one argmax per word.
    """

    output_type = Entities

    def __init__(self, head_dropout: float = 0.1, bidirectional: Literal["none", "bilstm", "transformer"] = "none",
                 bidirectional_hidden: int = 256, crf: bool = False, **kwargs):
        super().__init__(**kwargs)
        # built by build_head, once the backbone and the label map are known
        self.bidirectional: BidirectionalLayer | None = None
        self.classifier: nn.Linear | None = None
        self.crf: CRF | None = None  # crf=True
        self.stage_metrics: nn.ModuleDict | None = None  # {stage: EntityF1}

    def build_head(self) -> None:
        h = self.hparams
        self.bidirectional = BidirectionalLayer(h.bidirectional, self.backbone.config.n_embd, h.bidirectional_hidden,
                                                h.head_dropout)
        self.classifier = nn.Linear(self.bidirectional.out_dim, len(self.label_names))
        self.crf = CRF(len(self.label_names)) if h.crf else None
        self.stage_metrics = nn.ModuleDict({s: EntityF1(self.label_names) for s in ("val", "test")})

    def units(self, hidden: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """One unit per word that fits, at its last sub-token: (S, W, ...)."""
        ends = batch["word_end"]
        W = max(1, max(len(e) for e in ends))
        index = torch.zeros(len(ends), W, dtype=torch.long)
        for b, row in enumerate(ends):
            index[b, : len(row)] = torch.tensor([max(p, 0) for p in row], dtype=torch.long)
        mask = torch.tensor([[i < len(row) and row[i] >= 0 for i in range(W)] for row in ends], dtype=torch.bool)
        index, mask = index.to(hidden.device), mask.to(hidden.device)
        return hidden[torch.arange(len(ends), device=hidden.device)[:, None], index], mask

    def feature_spec(self) -> dict:
        return {**super().feature_spec(), "units": "word last sub-token"}

    def emissions(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, W, L) tag scores of every word and the (S, W) mask of the words that fit."""
        states, mask = self.unit_states(batch)
        return self.classifier(self.bidirectional(states, mask)).float(), mask

    def loss(self, batch: dict) -> torch.Tensor:
        scores, mask = self.emissions(batch)
        tags = torch.full(mask.shape, IGNORE, dtype=torch.long, device=mask.device)
        for b, row in enumerate(batch["word_tags"]):
            n = min(len(row), mask.size(1))
            tags[b, :n] = torch.tensor(row[:n], dtype=torch.long)
        tags = tags.masked_fill(~mask, IGNORE)
        if self.crf is not None:
            return self.crf.nll(scores, tags, mask)
        return F.cross_entropy(scores.transpose(1, 2), tags, ignore_index=IGNORE)

    def word_predictions(self, batch: dict) -> list[list[int]]:
        """A tag index per word; O (0) for words cut by truncation."""
        scores, mask = self.emissions(batch)
        best = self.crf.decode(scores, mask) if self.crf is not None else scores.argmax(-1).tolist()
        outside = self.label_names.index("O") if "O" in self.label_names else 0
        return [[row[i] if i < len(row) and keep[i] else outside for i in range(len(words))]
                for row, keep, words in zip(best, mask.tolist(), batch["word_end"])]

    def metrics(self, stage: str) -> dict:
        return {"entities": self.stage_metrics[stage]}

    def update_metrics(self, stage: str, batch: dict) -> None:
        predictions = self.word_predictions(batch)
        self.stage_metrics[stage].update(predictions, batch["word_tags"])
        self.record_example_stats(stage, "entities", [entity_counts(self.label_names, p, g)
                                                      for p, g in zip(predictions, batch["word_tags"])])
        self.record_predictions(stage, [
            {"words": words, "tags": [self.label_names[t] for t in p], "gold": [self.label_names[t] for t in g]}
            for words, p, g in zip(batch["words"], predictions, batch["word_tags"])])

    def interval_metrics(self) -> dict:
        return {"f1": ("entities", f1_from_counts), "precision": ("entities", precision_from_counts),
                "recall": ("entities", recall_from_counts)}

    def test_report(self) -> dict:
        return {**super().test_report(), "test/seqeval": "default mode (conlleval: an entity counts when its type and "
                                "both boundaries match), micro-averaged over entities",
                "test/path": f"word = its last sub-token; bidirectional {self.hparams.bidirectional}"
                             + (", CRF (Viterbi)" if self.crf is not None else ", argmax per word")}

    def predict_batch(self, texts: list[str], batch_size: int = 32) -> list[Entities]:
        """Each text cut into words (runs of word characters, and punctuation), a tag per word, the entities;
        batch_size texts at a time, so a long list never becomes one huge padded batch."""
        device = next(self.backbone.parameters()).device
        out = []
        for start in range(0, len(texts), batch_size):
            sentences = [re.findall(r"\w+(?:[-'.]\w+)*|[^\w\s]", t) for t in texts[start : start + batch_size]]
            ids, ends = align_words(self.tokenizer, sentences, self.max_input_tokens)
            input_ids, mask = self.tokenizer.pad(ids, side="right", device=device)
            tags = self.word_predictions({"input_ids": input_ids, "attention_mask": mask, "word_end": ends})
            for words, seq in zip(sentences, tags):
                names = [self.label_names[t] for t in seq]
                out.append(Entities(words, names, merge_entities(words, names)))
        return out

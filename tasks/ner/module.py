"""Named-entity recognition: a tag for every word, scored by seqeval at the entity level.

seqeval's default mode matches conlleval: an entity counts only when its type and both boundaries match.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score, precision_score, recall_score
from torch import nn
from torchmetrics import Metric

from tasks.adapters import Adapter
from tasks.base import TaskModule
from tasks.heads import TokenHead
from tasks.ner.data import IGNORE, align_words


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


def merge_entities(words: list[str], tags: list[str]) -> list[dict]:
    """B-X I-X ... runs -> [{"type": X, "start": first word, "end": last word + 1, "text": ...}]."""
    entities, current = [], None
    for i, tag in enumerate([*tags, "O"]):
        kind = tag[2:] if tag[:2] in ("B-", "I-") else None
        continues = current is not None and tag.startswith("I-") and kind == current["type"]
        if current is not None and not continues:
            current["text"] = " ".join(words[current["start"] : i])
            current["end"] = i
            entities.append(current)
            current = None
        if kind is not None and not continues:
            current = {"type": kind, "start": i}
    return entities


class TokenClassifier(TaskModule):
    """Args (beyond TaskModule's):
        head_dropout: dropout before the per-token linear head.
    """

    def __init__(self, backbone: str, adapter: Adapter | None = None, label_names: list[str] | None = None,
                 learning_rate: float = 1e-4, weight_decay: float = 0.01, warmup_ratio: float = 0.1,
                 min_lr_ratio: float = 0.0, max_length: int | None = None, export_dir: str | None = None,
                 head_dropout: float = 0.1):
        super().__init__(backbone, adapter, label_names, learning_rate, weight_decay, warmup_ratio, min_lr_ratio,
                         max_length, export_dir)

    def build_head(self) -> None:
        self.head = TokenHead(self.backbone.config.n_embd, len(self.label_names), self.hparams.head_dropout)
        self.stage_metrics = nn.ModuleDict({s: EntityF1(self.label_names) for s in ("val", "test")})

    def token_logits(self, batch: dict) -> torch.Tensor:
        return self.head(self.encode(batch["input_ids"], batch["attention_mask"]))  # (B, T, L)

    def loss(self, batch: dict) -> torch.Tensor:
        logits = self.token_logits(batch).float()
        return F.cross_entropy(logits.transpose(1, 2), batch["labels"], ignore_index=IGNORE)

    def word_predictions(self, batch: dict) -> list[list[int]]:
        """A tag index per word: the argmax at its first sub-token, or O (0) for words cut by truncation."""
        best = self.token_logits(batch).argmax(-1).tolist()
        outside = self.label_names.index("O") if "O" in self.label_names else 0
        return [[row[p] if p >= 0 else outside for p in firsts] for row, firsts in zip(best, batch["first_token"])]

    def metrics(self, stage: str) -> dict:
        return {"entities": self.stage_metrics[stage]}

    def update_metrics(self, stage: str, batch: dict) -> None:
        self.stage_metrics[stage].update(self.word_predictions(batch), batch["word_tags"])
        if stage == "test":
            self._test_examples = getattr(self, "_test_examples", 0) + len(batch["word_tags"])

    def test_report(self) -> dict:
        return {**super().test_report(), "test/seqeval": "default mode (conlleval: an entity counts when its type and both boundaries "
                                "match), micro-averaged over entities; word tag = tag of its first sub-token"}

    @torch.no_grad()
    def predict(self, texts: list[str]) -> list[dict]:
        """For each text: its words, a tag per word, and the merged entities."""
        self.eval()
        sentences = [re.findall(r"\w+(?:[-'.]\w+)*|[^\w\s]", t) for t in texts]
        for i, words in enumerate(sentences):
            if not words:
                raise ValueError(f"text {i} is empty")
        ids, firsts = align_words(self.tokenizer, sentences, self.max_input_tokens)
        device = next(self.backbone.parameters()).device
        input_ids, mask = self.tokenizer.pad(ids, side="right", device=device)
        tags = self.word_predictions({"input_ids": input_ids, "attention_mask": mask, "first_token": firsts})
        out = []
        for words, seq in zip(sentences, tags):
            names = [self.label_names[t] for t in seq]
            out.append({"words": words, "tags": names, "entities": merge_entities(words, names)})
        return out

"""Text classification (BBC News topics) and sentiment (movie reviews): one label per text.

Two ways to get label scores from the same backbone, so they can be compared on the same benchmark:
    head="sequence"  a linear layer on the last real token's hidden state (GPT-1 fine-tuning)
    head="prompt"    the text in a template, label words scored by the language model (zero-/few-shot, or
                     trained through a PromptTuning soft prompt)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import BinaryF1Score, MulticlassAccuracy, MulticlassF1Score

from tasks.adapters import FrozenLayers
from tasks.base import LabelledTask
from tasks.classification.data import encode_texts
from tasks.confidence import f1_from_counts, label_counts, macro_f1_from_label_counts, micro_f1_without, ratio
from tasks.heads import LabelWordScorer, Pooling, SequenceHead, pool
from tasks.outputs import LabelScores


class SequenceClassifier(LabelledTask):
    """Its own arguments; the rest are LabelledTask's (passed on as **kwargs).

    Args:
        head: "sequence" (a trained linear head) or "prompt" (label words scored by the LM).
        pooling: "last" real token (GPT-1), "mean" of the real tokens, or "mean+last" (both), for the sequence head.
        head_dropout: dropout before the linear head.
        head_hidden: width of a hidden layer before the linear head (0: none).
        template: prompt path: the query with "{text}"; the label word follows it.
        label_words: prompt path: one verbalisation per label (default: " " + label name).
        few_shot: prompt path: number of solved training examples put before each query.
        few_shot_examples: prompt path: the demonstrations themselves, [[text, label index], ...]; filled in
            from the training split when few_shot > 0 (and saved with the task, so a reload scores the same).
        negative_label: the label that means "nothing" (a relation set's "none"): adds micro_f1, the F1 over
            every other label (tasks.confidence.micro_f1_without).
        balanced_loss: weigh each label's examples by n / (labels x its count in the training split), so a
            rare label counts as much as a frequent one in the loss (sklearn's "balanced" class weights);
            for sets where one label dominates (a relation set's "none").
    """

    output_type = LabelScores

    def __init__(self, head: Literal["sequence", "prompt"] = "sequence", pooling: Pooling = "last",
                 head_dropout: float = 0.1, head_hidden: int = 0, template: str = "{text}\nLabel:",
                 label_words: list[str] | None = None, few_shot: int = 0,
                 few_shot_examples: list[tuple[str, int]] | None = None, negative_label: str | None = None,
                 balanced_loss: bool = False, **kwargs):
        super().__init__(**kwargs)
        if head not in ("sequence", "prompt"):
            raise ValueError(f"head must be 'sequence' or 'prompt', got {head!r}")
        if pooling not in ("last", "mean", "mean+last"):
            raise ValueError(f"pooling must be 'last', 'mean' or 'mean+last', got {pooling!r}")
        # built by build_head, once the backbone and the label map are known
        self.head: SequenceHead | None = None  # head="sequence"
        self.scorer: LabelWordScorer | None = None  # head="prompt"
        self.loss_weights: torch.Tensor | None = None  # balanced_loss, with a data module attached
        self.stage_metrics: nn.ModuleDict | None = None  # {stage: {name: metric}}

    def build_head(self) -> None:
        h, n = self.hparams, len(self.label_names)
        if h.head == "sequence":
            self.head = SequenceHead(self.backbone.config.n_embd, n, len(h.pooling.split("+")), h.head_dropout,
                                     h.head_hidden)
        elif isinstance(self.adapter, FrozenLayers):
            raise ValueError("head=prompt scores label words with the LM head, which reads the final layer as it is: "
                             "use tasks.adapters.Frozen (or PromptTuning), not FrozenLayers (mixed, normalised layers)")
        else:
            words = h.label_words or [" " + name for name in self.label_names]
            if len(words) != n:
                raise ValueError(f"label_words has {len(words)} entries for {n} labels {self.label_names}")
            self.scorer = LabelWordScorer(h.template, words)
            datamodule = self.attached_datamodule
            if h.few_shot and not h.few_shot_examples and datamodule is not None:
                h.few_shot_examples = [(r["text"], r["label"]) for r in datamodule.examples_per_label(h.few_shot)]
            self.scorer.examples = [(text, int(label)) for text, label in (h.few_shot_examples or [])]
        self.loss_weights = self.balanced_weights() if h.balanced_loss else None
        metrics = lambda: nn.ModuleDict({  # noqa: E731
            "accuracy": MulticlassAccuracy(n, average="micro"), "macro_f1": MulticlassF1Score(n, average="macro"),
            **({"f1": BinaryF1Score()} if n == 2 else {}),  # binary: F1 of the positive (second) label
            **({"micro_f1": MicroF1Without(n, self.negative_index)} if h.negative_label else {}),
        })
        self.stage_metrics = nn.ModuleDict({"val": metrics(), "test": metrics()})

    @property
    def negative_index(self) -> int:
        if self.hparams.negative_label not in self.label_names:
            raise ValueError(f"negative_label {self.hparams.negative_label!r} is not one of {self.label_names}")
        return self.label_names.index(self.hparams.negative_label)

    def units(self, hidden: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = pool(hidden, batch["attention_mask"], self.hparams.pooling)  # (B, P, ...)
        return pooled, torch.ones(pooled.shape[:2], dtype=torch.bool, device=pooled.device)

    def feature_spec(self) -> dict:
        return {**super().feature_spec(), "units": self.hparams.pooling}

    # --- scores ----------------------------------------------------------------------------------------
    def logits(self, batch: dict) -> torch.Tensor:
        """(B, L) label scores; both paths return the same shape."""
        if self.hparams.head == "sequence":
            return self.head(self.unit_states(batch)[0])
        return self.scorer(self.encode, self.backbone.lm_logits, self.tokenizer, batch["texts"], self.max_input_tokens,
                           device=batch["input_ids"].device)

    def loss(self, batch: dict) -> torch.Tensor:
        logits = self.logits(batch).float()
        weights = self.loss_weights.to(logits.device) if self.loss_weights is not None else None
        return F.cross_entropy(logits, batch["labels"], weight=weights)

    def balanced_weights(self) -> torch.Tensor | None:
        """n / (L x count) per label over the training split (None when no data module is attached, as when
        a saved task is loaded to predict: the weights only matter to training)."""
        datamodule = self.attached_datamodule
        if datamodule is None:
            return None
        train = datamodule.splits["train"]
        counts = torch.bincount(torch.tensor([datamodule.label_index(v) for v in train[datamodule.label_column]]),
                                minlength=len(self.label_names)).float()
        return counts.sum() / (len(counts) * counts.clamp(min=1))

    def metrics(self, stage: str) -> dict:
        return dict(self.stage_metrics[stage])

    def update_metrics(self, stage: str, batch: dict) -> None:
        preds = self.logits(batch).argmax(-1)
        for metric in self.stage_metrics[stage].values():
            metric.update(preds, batch["labels"])
        if stage == "test":
            n, gold, pred = len(self.label_names), batch["labels"].tolist(), preds.tolist()
            self.record_predictions(stage, [{"text": t, "label": self.label_names[p], "gold": self.label_names[g]}
                                            for t, p, g in zip(batch["texts"], pred, gold)])
            self.record_example_stats(stage, "correct", [(g == p, 1) for g, p in zip(gold, pred)])
            self.record_example_stats(stage, "labels", [label_counts(n, g, p) for g, p in zip(gold, pred)])

    def interval_metrics(self) -> dict:
        n = len(self.label_names)
        out = {"accuracy": ("correct", ratio(0, 1)), "macro_f1": ("labels", macro_f1_from_label_counts(n))}
        if n == 2:  # F1 of the positive (second) label: its (tp, fp, fn) are entries 1, 3 and 5 of the counts
            out["f1"] = ("labels", lambda s: f1_from_counts(s[[1, 3, 5]]))
        if self.hparams.negative_label:
            out["micro_f1"] = ("labels", micro_f1_without(n, self.negative_index))
        return out

    def test_report(self) -> dict:
        h = self.hparams
        if h.head == "sequence":
            return {**super().test_report(), "test/path": f"sequence head ({h.pooling} pooling)"}
        scorer, c = self.scorer, self.scorer.counts
        return {**super().test_report(),
                "test/path": f"prompt: {len(scorer.examples)} demonstrations, "
                             f"{c['shots_kept'] / max(c['queries'], 1):.1f} per query fit whole in "
                             f"{self.max_input_tokens} tokens ({c['queries_cut']} of {c['queries']} "
                             f"queries cut at the end); template {scorer.template!r}, label words {scorer.label_words}"}

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        if self.hparams.head == "prompt":
            self.scorer.reset_counts()  # the report counts what the test set's queries kept

    # --- use -------------------------------------------------------------------------------------------
    def predict_batch(self, texts: list[str], batch_size: int = 16) -> list[LabelScores]:
        """Label probabilities of each text (softmax over the head's logits or the label-word scores)."""
        results = []
        device = next(self.backbone.parameters()).device
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            ids, mask = encode_texts(self.tokenizer, chunk, self.max_input_tokens, device)
            probs = self.logits({"input_ids": ids, "attention_mask": mask, "texts": chunk}).float().softmax(-1)
            results.extend(LabelScores({name: float(p) for name, p in zip(self.label_names, row)}) for row in probs)
        return results


class MicroF1Without(Metric):
    """Micro F1 over every label but one (tasks.confidence.micro_f1_without), as a torchmetrics Metric."""

    def __init__(self, num_labels: int, negative: int):
        super().__init__()
        self.num_labels, self.negative = num_labels, negative
        self.add_state("counts", default=torch.zeros(3, num_labels, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        n, right = self.num_labels, preds == target
        self.counts[0] += torch.bincount(target[right], minlength=n)  # true positives of each label
        self.counts[1] += torch.bincount(preds[~right], minlength=n)  # false positives
        self.counts[2] += torch.bincount(target[~right], minlength=n)  # misses

    def compute(self) -> torch.Tensor:
        score = micro_f1_without(self.num_labels, self.negative)(self.counts.flatten().cpu().numpy())
        return torch.tensor(score)

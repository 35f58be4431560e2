"""The layer probe: how well each layer's frozen states predict a task's labels, read by a linear classifier.

For every layer k = 0 (the embeddings) ... n_layer (after the final norm), the backbone's states are read
once, unchanged, and a multinomial logistic regression is trained on the training rows' states of that
layer alone (standardised per dimension, L2-regularised, full-batch L-BFGS). Its test score says how much of
the task is *linearly* readable at that depth (Alain & Bengio, 2016; Tenney et al., 2019):

    ner        a word is its last sub-token's state; score: entity F1 (seqeval's default matching), with a
               bootstrap interval over sentences
    sentiment  a text is the mean of its tokens' states; score: accuracy, with a bootstrap interval over texts

The probe chooses nothing: every layer is scored on the same test rows, and the table reports them all.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from backbone.data.loaders import load_benchmark
from backbone.model import GPT
from tasks.classification.data import encode_texts
from tasks.confidence import bootstrap_interval, f1_from_counts, ratio
from tasks.heads import pool
from tasks.ner.data import align_words
from tasks.ner.module import entity_counts

ProbeTask = Literal["ner", "sentiment"]


@dataclass
class LayerScore:
    layer: int
    score: float  # entity F1 (ner) or accuracy (sentiment), in [0, 1]
    ci95: tuple[float, float]
    n: int  # test sentences or texts


@dataclass
class Examples:
    """Rows for a probe: NER sentences (words, tags) or sentiment texts (text, label)."""

    inputs: list  # list[list[str]] of words, or list[str] of texts
    labels: list  # list[list[str]] of tags, or list[str] of labels


@torch.no_grad()
def ner_states(model: GPT, tokenizer, sentences: list[list[str]], batch_size: int = 16,
               progress: bool = False) -> tuple[torch.Tensor, list[int]]:
    """Every layer's state at each word's last sub-token: (words, n_layer + 1, C), and the words per sentence
    (a word cut by the block size keeps a zero state: it is scored as the probe predicts it)."""
    n, out, lengths = model.config.n_layer, [], []
    ids, ends = align_words(tokenizer, sentences, model.config.block_size)
    for start in tqdm(range(0, len(ids), batch_size), desc="layer states", disable=not progress):
        rows, row_ends = ids[start:start + batch_size], ends[start:start + batch_size]
        batch, mask = tokenizer.pad(rows, side="right")
        states = model.layer_states(batch, mask, list(range(n + 1))).half()  # (B, T, n+1, C)
        for b, word_ends in enumerate(row_ends):
            picked = states[b, [max(e, 0) for e in word_ends]]  # (words, n+1, C)
            picked[[i for i, e in enumerate(word_ends) if e < 0]] = 0
            out.append(picked)
            lengths.append(len(word_ends))
    return torch.cat(out), lengths


@torch.no_grad()
def text_states(model: GPT, tokenizer, texts: list[str], batch_size: int = 16,
                progress: bool = False) -> torch.Tensor:
    """Every layer's mean state over each text's tokens: (texts, n_layer + 1, C)."""
    n, out = model.config.n_layer, []
    for start in tqdm(range(0, len(texts), batch_size), desc="layer states", disable=not progress):
        ids, mask = encode_texts(tokenizer, texts[start:start + batch_size], model.config.block_size)
        states = model.layer_states(ids, mask, list(range(n + 1)))  # (B, T, n+1, C)
        out.append(pool(states, mask, "mean")[:, 0].half())  # (B, n+1, C)
    return torch.cat(out)


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float = 1e-3,
                     iterations: int = 100) -> Callable[[torch.Tensor], torch.Tensor]:
    """A softmax regression on x (N, C) -> y (N,), standardised with the training rows' mean and spread;
    returns predict(x) -> labels. Deterministic: the weights start at zero and L-BFGS draws nothing."""
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    weight = torch.zeros(z.size(1), classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    weight, bias = weight.detach(), bias.detach()
    return lambda rows: (((rows.float() - mean) / std) @ weight + bias).argmax(-1)


def probe_layers(model: GPT, tokenizer, task: ProbeTask, train: Examples, test: Examples,
                 progress: bool = False) -> list[LayerScore]:
    """Each layer's test score for `task`, the probe trained on `train` (see the module docstring)."""
    if task == "ner":
        names = sorted({t for tags in train.labels for t in tags} | {t for tags in test.labels for t in tags})
        index = {name: i for i, name in enumerate(names)}
        x_train, _ = ner_states(model, tokenizer, train.inputs, progress=progress)
        x_test, lengths = ner_states(model, tokenizer, test.inputs, progress=progress)
        y_train = torch.tensor([index[t] for tags in train.labels for t in tags])
        gold = [[index[t] for t in tags] for tags in test.labels]
    elif task == "sentiment":
        names = sorted(set(train.labels) | set(test.labels))
        index = {name: i for i, name in enumerate(names)}
        x_train = text_states(model, tokenizer, train.inputs, progress=progress)
        x_test = text_states(model, tokenizer, test.inputs, progress=progress)
        y_train = torch.tensor([index[label] for label in train.labels])
        gold = [index[label] for label in test.labels]
    else:
        raise ValueError(f"the probe reads 'ner' or 'sentiment', got {task!r}")
    scores = []
    for layer in tqdm(range(x_train.size(1)), desc="probes", disable=not progress):
        predict = fit_linear_probe(x_train[:, layer], y_train, len(names))
        pred = predict(x_test[:, layer]).tolist()
        if task == "ner":
            per_sentence, k = [], 0
            for tags, n_words in zip(gold, lengths):
                per_sentence.append(entity_counts(names, pred[k:k + n_words], tags))
                k += n_words
            stats, metric = np.array(per_sentence, dtype=float), f1_from_counts
        else:
            stats, metric = np.array([(p == g, 1) for p, g in zip(pred, gold)], dtype=float), ratio(0, 1)
        scores.append(LayerScore(layer, metric(stats.sum(0)), bootstrap_interval(stats, metric), len(stats)))
    return scores


def benchmark_examples(task: ProbeTask, split: str, limit: int | None = None, seed: int = 0) -> Examples:
    """A seeded random subset of a benchmark split as probe rows: CoNLL-2003 (ner) or MR (sentiment)."""
    dataset = load_benchmark({"ner": "conll2003", "sentiment": "mr_sentiment"}[task])[split]
    if limit is not None and limit < len(dataset):
        dataset = dataset.shuffle(seed=seed).select(range(limit))
    if task == "ner":
        names = dataset.features["ner_tags"].feature.names
        return Examples([row["tokens"] for row in dataset], [[names[t] for t in row["ner_tags"]] for row in dataset])
    names = dataset.features["label"].names
    return Examples(list(dataset["text"]), [names[label] for label in dataset["label"]])


def probe_table(scores: list[LayerScore], task: ProbeTask) -> str:
    """A Markdown table of the scores, in percent."""
    what = "entity F1" if task == "ner" else "accuracy"
    lines = [f"| layer | {what} | 95% CI |", "|---|---|---|"]
    lines += [f"| {s.layer} | {100 * s.score:.1f} | [{100 * s.ci95[0]:.1f}, {100 * s.ci95[1]:.1f}] |" for s in scores]
    return "\n".join(lines)


def write_probe_report(scores: list[LayerScore], task: ProbeTask, out: Path, about: dict) -> str:
    """probe.json (the scores and what was probed) and probe.md (the table) in `out`; returns the table."""
    out.mkdir(parents=True, exist_ok=True)
    table = probe_table(scores, task)
    (out / "probe.json").write_text(json.dumps({**about, "task": task, "scores": [asdict(s) for s in scores]},
                                               indent=2) + "\n")
    lines = [f"# Layer probe: {task}", "", ", ".join(f"{k}: {v}" for k, v in about.items()), "", table, ""]
    (out / "probe.md").write_text("\n".join(lines))
    return table

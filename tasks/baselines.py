"""Simple baselines, computed on the same split as our scores, so every number in the table has a floor.

Every task's baselines are found the same way: `tasks/<task>/baselines.py` defines
`score_baselines(datamodule) -> BaselineScores` ({baseline name: {metric: value}}, scored on the task's test
examples, on the scale of the task's metrics), and the task's TaskSpec names it (`baselines=`). The scorers
several tasks share are here:

    majority            the most frequent training label for every example
    bow_logreg          bag-of-words logistic regression (binary word presence, L2), trained with L-BFGS
    most_frequent_tag   NER: each word's most frequent training tag (unseen words: O)
    sliding_window      QA: the span whose surrounding window shares most words with the question
    copy_source         translation: the source sentence as the "translation"
    word_dictionary     translation: each source word replaced by its most associated target word (Dice)
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from backbone.text import words
from tasks.confidence import label_counts, micro_f1_without
from tasks.translation.lattice import Lexicon

BaselineScores = dict[str, dict[str, float]]  # {baseline name: {metric: value}}

STOPWORDS = set("a an the of in on at to for by with from and or but is was were are be been it its this that "
                "these those as he she they his her their which who whom what when where why how".split())


def classification_scores(pred: list[int], gold: list[int], num_labels: int,
                          negative: int | None = None) -> dict[str, float]:
    """accuracy, macro F1, binary F1 of label 1 (two labels), and micro F1 without the `negative` label."""
    p, g = torch.tensor(pred), torch.tensor(gold)
    scores = {"accuracy": float(multiclass_accuracy(p, g, num_labels, average="micro")),
              "macro_f1": float(multiclass_f1_score(p, g, num_labels, average="macro"))}
    if num_labels == 2:
        tp = int(((p == 1) & (g == 1)).sum())
        scores["f1"] = 2 * tp / max(int((p == 1).sum()) + int((g == 1).sum()), 1)
    if negative is not None:
        sums = sum(label_counts(num_labels, a, b) for a, b in zip(gold, pred))
        scores["micro_f1"] = micro_f1_without(num_labels, negative)(sums)
    return scores


def majority(train_labels: list[int], test_labels: list[int], num_labels: int,
             negative: int | None = None) -> dict[str, float]:
    top = Counter(train_labels).most_common(1)[0][0]
    return classification_scores([top] * len(test_labels), test_labels, num_labels, negative)


def bow_logreg(train_texts, train_labels, test_texts, test_labels, num_labels: int, max_vocab: int = 20000,
               l2: float = 1e-3, negative: int | None = None) -> dict[str, float]:
    # sorted: a set's order changes with the per-process string hash seed, and ties in most_common() would
    # then pick a different vocabulary (and score) on every run
    counts = Counter(w for t in train_texts for w in sorted(set(words(t))))
    vocab = {w: i for i, (w, _) in enumerate(counts.most_common(max_vocab))}

    def featurize(texts):
        x = torch.zeros(len(texts), len(vocab))
        for row, text in enumerate(texts):
            cols = [vocab[w] for w in set(words(text)) if w in vocab]
            x[row, cols] = 1.0
        return x

    x, y = featurize(train_texts), torch.tensor(train_labels)
    torch.manual_seed(0)
    linear = torch.nn.Linear(len(vocab), num_labels)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(x), y) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        pred = linear(featurize(test_texts)).argmax(-1).tolist()
    return classification_scores(pred, test_labels, num_labels, negative)


def most_frequent_tag(train_tokens, train_tags, test_tokens, test_tags, label_names: list[str]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score  # why: imports scikit-learn (~1 s)

    by_word: dict[str, Counter] = defaultdict(Counter)
    for sentence, tags in zip(train_tokens, train_tags):
        for word, tag in zip(sentence, tags):
            by_word[word][tag] += 1
    outside = label_names.index("O")
    pred = [[label_names[by_word[w].most_common(1)[0][0] if w in by_word else outside] for w in s] for s in test_tokens]
    gold = [[label_names[t] for t in tags] for tags in test_tags]
    # A lone I- after O is read by conlleval as a new entity; keep the baseline's tags as they are.
    return {"precision": precision_score(gold, pred), "recall": recall_score(gold, pred), "f1": f1_score(gold, pred)}


def sliding_window(question: str, context: str, window: int = 12, max_span: int = 4) -> str:
    """Richardson et al. (2013)'s sliding window, adapted to spans: score each candidate span (up to max_span
    words, none of them a question word, not starting or ending with a stopword) by how many question
    content words occur in the window around it."""
    tokens = context.split()
    q = set(words(question)) - STOPWORDS
    stripped = [re.sub(r"^\W+|\W+$", "", t).lower() for t in tokens]
    best, best_score = "", -1.0
    for i in range(len(tokens)):
        for n in range(1, max_span + 1):
            if i + n > len(tokens) or any(s in q or not s for s in stripped[i : i + n]):
                break
            if stripped[i] in STOPWORDS or stripped[i + n - 1] in STOPWORDS:
                continue
            around = stripped[max(0, i - window) : i] + stripped[i + n : i + n + window]
            score = sum(1 for w in around if w in q) - 0.01 * n
            if score > best_score:
                best, best_score = " ".join(tokens[i : i + n]), score
    return re.sub(r"^\W+|\W+$", "", best)


def copy_source(sources: list[str]) -> list[str]:
    return list(sources)


def word_dictionary(train_src: list[str], train_tgt: list[str], test_src: list[str],
                    max_pairs: int | None = None) -> list[str]:
    """Translate word by word with the target word of highest Dice coefficient 2 c(s,t) / (c(s) + c(t))
    (tasks.translation.lattice.Lexicon.word_by_word), learned from the first max_pairs training pairs (None:
    all, the default: a smaller lexicon translates fewer words). Words it never saw and punctuation are copied;
    the output is lower case."""
    lexicon = Lexicon(list(train_src)[:max_pairs], list(train_tgt)[:max_pairs])
    return [lexicon.word_by_word(s) for s in test_src]

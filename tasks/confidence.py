"""95% confidence intervals by the bootstrap over test examples (Efron 1979).

Every metric here is a function of per-example statistics *summed* over the test set: accuracy of
(correct, 1), entity F1 of (tp, fp, fn), macro F1 of per-label (tp, fp, fn), SQuAD of (em, f1, 1), BLEU and
chrF of sacreBLEU's per-sentence n-gram counts, pass@k of (each problem's estimate, 1). A bootstrap
resample draws n examples with replacement; its sums are counts @ stats, with the counts drawn from a
multinomial, so 1,000 resamples of thousands of examples cost one matrix product.

    interval = the 2.5th and 97.5th percentiles of the metric over the resamples (percentile bootstrap)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

RESAMPLES = 1000


def bootstrap_interval(stats: np.ndarray, metric: Callable[[np.ndarray], float], resamples: int = RESAMPLES,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """stats (n, k) per-example statistics; metric(sums (k,)) -> score. -> (low, high)."""
    stats = np.asarray(stats, dtype=np.float64)
    n = len(stats)
    if n == 0:
        raise ValueError("no examples to resample")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)  # (R, n) how often each example is drawn
    sums = counts @ stats  # (R, k)
    scores = np.array([metric(row) for row in sums])
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def ratio(numerator: int, denominator: int) -> Callable[[np.ndarray], float]:
    """sums -> sums[numerator] / sums[denominator] (accuracy, EM, mean F1)."""
    return lambda s: float(s[numerator] / s[denominator]) if s[denominator] else 0.0


def f1_from_counts(s: np.ndarray) -> float:
    """(tp, fp, fn) -> F1 = 2 tp / (2 tp + fp + fn)."""
    tp, fp, fn = s[:3]
    return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def precision_from_counts(s: np.ndarray) -> float:
    tp, fp = s[:2]
    return float(tp / (tp + fp)) if tp else 0.0


def recall_from_counts(s: np.ndarray) -> float:
    tp, _, fn = s[:3]
    return float(tp / (tp + fn)) if tp else 0.0


def label_counts(num_labels: int, gold: int, pred: int) -> np.ndarray:
    """One example's (tp, fp, fn) for every label, flattened (3 L): the statistics of macro F1."""
    counts = np.zeros((3, num_labels))
    if gold == pred:
        counts[0, gold] = 1
    else:
        counts[1, pred] = counts[2, gold] = 1
    return counts.ravel()


def macro_f1_from_label_counts(num_labels: int) -> Callable[[np.ndarray], float]:
    """summed label_counts -> F1 averaged over the labels that occur (gold or predicted), as torchmetrics'
    macro F1 averages them."""
    def metric(s: np.ndarray) -> float:
        tp, fp, fn = s.reshape(3, num_labels)
        denom = 2 * tp + fp + fn
        seen = denom > 0
        return float(np.mean(2 * tp[seen] / denom[seen])) if seen.any() else 0.0
    return metric


def micro_f1_without(num_labels: int, negative: int) -> Callable[[np.ndarray], float]:
    """summed label_counts -> micro F1 over every label but `negative` (relation extraction's convention,
    as TACRED scores it): predicting the negative label for a positive gold is a miss, a positive label for
    a negative gold a false alarm, and negatives predicted as negatives count for nothing."""
    keep = [i for i in range(num_labels) if i != negative]

    def metric(s: np.ndarray) -> float:
        tp, fp, fn = (row[keep].sum() for row in s.reshape(3, num_labels))
        return f1_from_counts(np.array([tp, fp, fn]))

    return metric

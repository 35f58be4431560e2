"""The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models Trained on Code".

With n samples per problem of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance that at least one
of k samples drawn without replacement from the n passes. Binomials overflow for realistic n, so, as in the
paper's numpy snippet, the ratio is computed as the product prod_{i=n-c+1..n} (1 - k/i).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k for one problem with `n` samples of which `c` are correct. Raises ValueError if n < k."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= num_correct <= num_samples, got c={c}, n={n}")
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:  # every draw of k contains a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k(num_samples: int | Sequence[int] | np.ndarray, num_correct: Sequence[int] | np.ndarray,
              k: int) -> np.ndarray:
    """pass@k per problem; `num_samples` is one n for all problems or one per problem. Average it for the score.

    Raises ValueError when a problem has fewer than k samples: callers report pass@k only where n >= k.
    """
    correct = np.asarray(num_correct, dtype=np.int64).reshape(-1)
    if np.ndim(num_samples) == 0:
        samples = np.full(len(correct), int(num_samples), dtype=np.int64)
    else:
        samples = np.asarray(num_samples, dtype=np.int64).reshape(-1)
        if len(samples) != len(correct):
            raise ValueError(f"{len(samples)} sample counts for {len(correct)} correct counts")
    return np.array([estimate_pass_at_k(int(n), int(c), k) for n, c in zip(samples, correct)])

"""What a set of generated texts is like, in numbers.

Diversity (high = varied):
    distinct-n     unique n-grams / all n-grams over the whole set (after Li et al. 2016, who divide by the
                   number of generated tokens instead)
    self-BLEU      mean BLEU of each text against the others as references (Zhu et al. 2018, Texygen):
                   high when the texts resemble each other, so lower is more diverse; sacreBLEU's sentence
                   BLEU (exponential smoothing), so not comparable with Texygen's NLTK figures
Coherence (low = fluent, on topic):
    repetition     share of a text's word 4-grams that repeat an earlier 4-gram of the same text
                   (seq-rep-4, Welleck et al. 2019), averaged over texts: degenerate loops score near 1
    perplexity     exp(NLL / tokens) of the continuations given their prompts under a judge model: how
                   likely a language model finds the text (backbone.perplexity.continuation_nll)

Words are lower-cased whitespace tokens with punctuation split off, so "end." and "end" are one word.
"""

from __future__ import annotations

import math
from collections import Counter

import sacrebleu

from backbone.perplexity import continuation_nll
from backbone.text import words


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Unique n-grams over all n-grams of the set (0 when the texts are too short to have any)."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition(text: str, n: int = 4) -> float:
    """Share of the text's n-grams that already occurred earlier in it (0 for a text without n-grams)."""
    grams = ngrams(words(text), n)
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(texts: list[str], n: int = 4) -> float:
    return sum(repetition(t, n) for t in texts) / len(texts) if texts else 0.0


def self_bleu(texts: list[str]) -> float:
    """Mean sentence BLEU (0-100) of each text against all the others; needs at least two texts."""
    if len(texts) < 2:
        raise ValueError("self-BLEU needs at least two texts")
    scores = [sacrebleu.sentence_bleu(t, texts[:i] + texts[i + 1 :]).score for i, t in enumerate(texts)]
    return sum(scores) / len(scores)


def judge_perplexity(judge, tokenizer, prompts: list[str], texts: list[str]) -> float:
    """Per-token perplexity of the texts given their prompts under the judge model, pooled over all tokens."""
    scored = continuation_nll(judge, tokenizer, prompts, texts)
    nll, count = sum(s for s, _ in scored), sum(c for _, c in scored)
    return math.exp(nll / count) if count else float("nan")


def describe(texts: list[str], prompts: list[str] | None = None, judge=None, tokenizer=None) -> dict:
    """Every figure of the module for one set of texts (perplexity only when a judge is given)."""
    out = {"texts": len(texts), "mean_words": sum(len(words(t)) for t in texts) / max(len(texts), 1),
           "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
           "repetition_4": repetition_rate(texts, 4)}
    if len(texts) >= 2:
        out["self_bleu"] = self_bleu(texts)
    if judge is not None:
        out["perplexity"] = judge_perplexity(judge, tokenizer, prompts or [""] * len(texts), texts)
    top = Counter(g for t in texts for g in ngrams(words(t), 4)).most_common(1)
    out["most_repeated_4gram"] = " ".join(top[0][0]) if top and top[0][1] > 1 else ""
    return out

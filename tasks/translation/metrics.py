"""sacreBLEU corpus scores on detokenised text: BLEU (13a tokenisation, exp smoothing) and chrF (char 6-grams, beta 2).

Scores are on sacreBLEU's 0-100 scale; the signature says exactly how they were computed, so it is reported
next to every score.
"""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF

from tasks.generative import ListMetric


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict:
    """{"bleu", "chrf": corpus scores, "bleu_signature", "chrf_signature": sacreBLEU's signatures}."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    hyps, refs = [h.strip() for h in hypotheses], [[r.strip() for r in references]]
    return {"bleu": bleu.corpus_score(hyps, refs).score, "chrf": chrf.corpus_score(hyps, refs).score,
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}


def sentence_statistics(hypotheses: list[str], references: list[str]) -> tuple[list, list]:
    """Per-sentence sufficient statistics of BLEU and chrF (n-gram matches and totals, lengths): the corpus
    score is computed from their sums, so a bootstrap resamples sentences and sums again (sacreBLEU's own
    paired bootstrap does the same)."""
    hyps, refs = [h.strip() for h in hypotheses], [[r.strip() for r in references]]
    return BLEU()._extract_corpus_statistics(hyps, refs), CHRF()._extract_corpus_statistics(hyps, refs)


def bleu_from_statistics(sums) -> float:
    return float(BLEU()._compute_score_from_stats([int(round(v)) for v in sums]).score)


def chrf_from_statistics(sums) -> float:
    return float(CHRF()._compute_score_from_stats([int(round(v)) for v in sums]).score)


class TranslationScores(ListMetric):
    """Collects (hypothesis, reference) pairs; compute() -> {"bleu": ..., "chrf": ...} (0-100). The signatures
    of the last computation stay in `signatures` (sacreBLEU knows them only once it has scored)."""

    def __init__(self):
        super().__init__()
        self.signatures: dict[str, str] = {}

    def update(self, hypotheses: list[str], references: list[str]) -> None:  # type: ignore[override]
        self.items.extend(zip(hypotheses, references))

    def compute(self) -> dict[str, float]:
        if not self.items:
            return {}
        hyps, refs = zip(*self.items)
        scores = corpus_scores(list(hyps), list(refs))
        self.signatures = {k: scores[k] for k in ("bleu_signature", "chrf_signature")}
        return {"bleu": scores["bleu"], "chrf": scores["chrf"]}

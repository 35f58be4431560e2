"""Safe output: what a GPT application does when asked for, or about to produce, toxic text.

Three layers, each measured (`gptsuite safety --eval`):

    1. the prompt is moderated: a flagged prompt is refused, with the reason
    2. decoding runs with a block list: banned token sequences are never sampled (GenerationConfig.banned)
    3. the output is moderated sentence by sentence: a flagged sentence is masked, with the reason

A moderator scores texts in [0, 1] and flags those at or above its threshold:

    ClassifierModerator   P(toxic) from the suite's toxicity task (a saved classification artifact)
    ProfanityCheck        alt-profanity-check, a maintained word n-gram SVM (optional: `pip install .[safety]`)
    WordList              1.0 when the text holds a listed word (whole words, any case), else 0.0
    AnyOf                 the highest score of several (flags what any of them flags)

The default block list is learned, not typed: the words whose share of the toxicity training set's toxic
texts most exceeds their share of its non-toxic texts (smoothed log-odds, at least `min_count` toxic uses),
so the repository holds no list of slurs and the list follows the data.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

SENTENCE = re.compile(r"[^.!?\n]+[.!?]*\s*|\n")


@dataclass
class Verdict:
    flagged: bool
    score: float
    reason: str = ""


class Moderator:
    name = "moderator"
    threshold = 0.5

    def scores(self, texts: list[str]) -> list[float]:
        raise NotImplementedError

    def check(self, texts: list[str]) -> list[Verdict]:
        out = []
        for s in self.scores(list(texts)):
            flagged = s >= self.threshold
            out.append(Verdict(flagged, s, f"{self.name}: {s:.2f} >= {self.threshold}" if flagged else ""))
        return out


class ClassifierModerator(Moderator):
    """P(toxic) from a saved toxicity task (tasks.artifact.load_task), label `toxic_label`."""

    def __init__(self, task, threshold: float = 0.5, toxic_label: str = "toxic", batch_size: int = 32):
        self.task, self.threshold, self.toxic_label, self.batch_size = task, threshold, toxic_label, batch_size
        self.name = "toxicity classifier"

    def scores(self, texts):
        out = []
        for first in range(0, len(texts), self.batch_size):
            out += [p.scores[self.toxic_label] for p in self.task.predict(texts[first : first + self.batch_size])]
        return out


class ProfanityCheck(Moderator):
    name = "alt-profanity-check"

    def __init__(self, threshold: float = 0.5):
        from tasks.toxicity.baselines import profanity_check_scores

        if profanity_check_scores(["test"]) is None:
            raise ImportError("alt-profanity-check is not installed: pip install -e '.[safety]'")
        self.threshold, self._scores = threshold, profanity_check_scores

    def scores(self, texts):
        return self._scores(texts)


class WordList(Moderator):
    name = "block list"

    def __init__(self, words, threshold: float = 0.5):
        self.words = sorted({w.lower() for w in words if w.strip()})
        self.threshold = threshold
        self._pattern = re.compile(r"\b(" + "|".join(map(re.escape, self.words)) + r")\b", re.I) if self.words else None

    def scores(self, texts):
        return [1.0 if self._pattern and self._pattern.search(t) else 0.0 for t in texts]


class AnyOf(Moderator):
    def __init__(self, *moderators: Moderator):
        self.moderators = moderators
        self.name = " + ".join(m.name for m in moderators)

    def check(self, texts):
        verdicts = [m.check(texts) for m in self.moderators]
        out = []
        for row in zip(*verdicts):
            hit = [v for v in row if v.flagged]
            out.append(Verdict(bool(hit), max(v.score for v in row), "; ".join(v.reason for v in hit)))
        return out

    def scores(self, texts):
        return [v.score for v in self.check(texts)]


def learn_block_list(texts: list[str], labels: list[int], k: int = 40, min_count: int = 5) -> list[str]:
    """The k words most over-represented in the toxic texts (label 1): smoothed log-odds of a word's share
    of toxic word uses against its share of non-toxic ones, among words used at least min_count times in
    toxic texts."""
    from tasks.apps.quality import words

    toxic, clean = Counter(), Counter()
    for text, label in zip(texts, labels):
        (toxic if label == 1 else clean).update(w for w in words(text) if w.isalpha() and len(w) > 2)
    n_toxic, n_clean = sum(toxic.values()), sum(clean.values())
    odds = {w: math.log((c + 0.5) / n_toxic) - math.log((clean[w] + 0.5) / n_clean)
            for w, c in toxic.items() if c >= min_count}
    return sorted(odds, key=lambda w: -odds[w])[:k]


@dataclass
class SafeReply:
    text: str
    refused: bool = False
    masked: int = 0
    reasons: list[str] = field(default_factory=list)


REFUSAL = "I can't help with that: the request was flagged ({reason})."
MASK = "[removed: {reason}]"


class SafeGenerator:
    """Generation with the three layers around it. `block_words` go into every GenerationConfig as banned
    token sequences; `moderator` checks the prompt and each output sentence (None: no moderation)."""

    def __init__(self, model, tokenizer, moderator: Moderator | None = None, block_words=()):
        from backbone.generate import banned_sequences

        self.model, self.tokenizer, self.moderator = model, tokenizer, moderator
        self.block_words = list(block_words)
        self.banned = banned_sequences(tokenizer, self.block_words)

    def check_prompt(self, prompt: str) -> Verdict:
        return self.moderator.check([prompt])[0] if self.moderator else Verdict(False, 0.0)

    def clean(self, text: str) -> SafeReply:
        """The text with its flagged sentences masked."""
        if not self.moderator or not text.strip():
            return SafeReply(text)
        parts = SENTENCE.findall(text) or [text]
        checked = [(p, v) for p, v in zip(parts, self.moderator.check([p.strip() or "." for p in parts]))]
        out, reasons = [], []
        for part, verdict in checked:
            if verdict.flagged and part.strip():
                out.append(MASK.format(reason=verdict.reason) + (" " if part.endswith(" ") else ""))
                reasons.append(verdict.reason)
            else:
                out.append(part)
        return SafeReply("".join(out), masked=len(reasons), reasons=reasons)

    def respond(self, prompt: str, config=None) -> SafeReply:
        from backbone.generate import GenerationConfig, generate_text

        verdict = self.check_prompt(prompt)
        if verdict.flagged:
            return SafeReply(REFUSAL.format(reason=verdict.reason), refused=True, reasons=[verdict.reason])
        cfg = (config or GenerationConfig()).replace(banned=self.banned + (config.banned if config else ()))
        return self.clean(generate_text(self.model, self.tokenizer, prompt, cfg)[0])


# --------------------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------------------
def filter_scores(moderator: Moderator, texts: list[str], labels: list[int]) -> dict:
    """Precision, recall and F1 of the moderator's flags against labels (1 = toxic), each with a 95%
    bootstrap interval over the texts."""
    import numpy as np

    from tasks.confidence import bootstrap_interval, f1_from_counts, precision_from_counts, recall_from_counts

    flags = [v.flagged for v in moderator.check(texts)]
    stats = np.array([(f and y == 1, f and y == 0, (not f) and y == 1) for f, y in zip(flags, labels)], dtype=float)
    sums = stats.sum(0)
    out = {"texts": len(texts), "flagged": int(sum(flags))}
    for name, metric in (("precision", precision_from_counts), ("recall", recall_from_counts),
                         ("f1", f1_from_counts)):
        out[name] = 100 * metric(sums)
        low, high = bootstrap_interval(stats, metric)
        out[f"{name}_interval"] = (100 * low, 100 * high)
    return out


def blocked_share(generator: SafeGenerator, prompts: list[str], config) -> dict:
    """Continue each prompt (the prompt itself not moderated: the question is what the model adds) and
    report the share of continuations with a masked sentence, and the share that would be flagged whole."""
    from backbone.generate import generate_text

    cfg = config.replace(banned=generator.banned + config.banned)
    texts = generate_text(generator.model, generator.tokenizer, prompts, cfg)
    replies = [generator.clean(t) for t in texts]
    flagged = generator.moderator.check(texts) if generator.moderator else []
    return {"prompts": len(prompts), "masked_share": 100 * sum(r.masked > 0 for r in replies) / len(prompts),
            "flagged_share": 100 * sum(v.flagged for v in flagged) / len(prompts),
            "example": texts[0][:200]}

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

The default block list is read from a maintained model, not typed: the words alt-profanity-check's linear
model weighs most towards "profane", less identity terms and everyday words (NEVER_BAN), so the repository
holds no list of slurs (default_block_list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SENTENCE_END = re.compile(r"[.!?]+\s*|\n+")


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
        return [p.scores[self.toxic_label] for p in self.task.predict(texts, batch_size=self.batch_size)]


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


# Never on the default block list, whatever a model's weights say. Identity terms: a list that removes
# "gay" or "Muslim" from generation erases the people moderation is meant to protect (toxicity models learn
# such words as toxic because abuse mentions them; the bias probe measures the same effect). Everyday words
# that are insults only in context: banning "stupid" or "hell" outright blocks innocent text, and the
# moderation step judges the context.
NEVER_BAN = frozenset("""
    gay gays lesbian lesbians homosexual homosexuals queer bisexual trans transgender black blacks white whites
    jew jews jewish muslim muslims islam islamic christian christians catholic god woman women girl girls man
    men boy boys african asian mexican arab arabs immigrant immigrants
    hell damn shut stupid stupidity dumb idiot idiots moron morons moronic pathetic hypocrite jerk loser liar
    ignorant pig fool coward scum stinks boobs kill die dead sucks crap
""".split())


def default_block_list(k: int = 60) -> list[str]:
    """The k words alt-profanity-check's linear model weighs most towards "profane" (a maintained model,
    trained on its authors' labelled toxic comments), less NEVER_BAN and non-words; [] when the package is
    not installed (`pip install -e '.[safety]'`)."""
    try:
        from pathlib import Path

        import joblib
        import numpy as np
        import profanity_check
    except ImportError:
        return []
    data = Path(profanity_check.__file__).parent / "data"
    vectorizer, model = joblib.load(data / "vectorizer.joblib"), joblib.load(data / "model.joblib")
    weights = np.mean([c.estimator.coef_[0] for c in model.calibrated_classifiers_], axis=0)
    names = vectorizer.get_feature_names_out()
    words = [str(names[i]) for i in np.argsort(-weights)]
    return [w for w in words if w.isalpha() and len(w) >= 3 and w not in NEVER_BAN][:k]


def moderator_of(task, words, threshold: float = 0.5) -> Moderator:
    """The moderation step from what there is: a toxicity task (a saved classification artifact, or None)
    and block-list words; both when both are given. ValueError when neither is."""
    layers = ([ClassifierModerator(task, threshold)] if task is not None else []) + ([WordList(words)] if words else [])
    if not layers:
        raise ValueError("nothing to moderate with: train the toxicity classifier (`gptsuite toxicity fit`) or "
                         "give block-list words")
    return AnyOf(*layers) if len(layers) > 1 else layers[0]


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
        """The text with its flagged sentences masked; the rest of it, separators included, as it was."""
        if not self.moderator or not text.strip():
            return SafeReply(text)
        parts = split_sentences(text)
        verdicts = self.moderator.check([p.strip() for p in parts if p.strip()])
        out, reasons = [], []
        for part in parts:
            if not part.strip():
                out.append(part)
                continue
            verdict = verdicts.pop(0)
            if verdict.flagged:
                trail = part[len(part.rstrip()):]  # keep the space or newline after the sentence
                out.append(MASK.format(reason=verdict.reason) + trail)
                reasons.append(verdict.reason)
            else:
                out.append(part)
        return SafeReply("".join(out), masked=len(reasons), reasons=reasons)

    def respond(self, user_text: str, config=None, prompt: str | None = None) -> SafeReply:
        """Moderate what the person wrote (`user_text`), then generate from `prompt` (the same text put in a
        chat template, say; default: user_text itself) and moderate the reply."""
        from backbone.generate import GenerationConfig, generate_text

        verdict = self.check_prompt(user_text)
        if verdict.flagged:
            return SafeReply(REFUSAL.format(reason=verdict.reason), refused=True, reasons=[verdict.reason])
        cfg = (config or GenerationConfig()).replace(banned=self.banned + (config.banned if config else ()))
        return self.clean(generate_text(self.model, self.tokenizer, prompt or user_text, cfg)[0])


def split_sentences(text: str) -> list[str]:
    """Sentences with their trailing punctuation and whitespace (and runs of newlines): "".join() of the
    parts is the text itself."""
    parts, start = [], 0
    for match in SENTENCE_END.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        parts.append(text[start:])
    return parts


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

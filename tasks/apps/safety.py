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

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backbone.artifact import load_backbone
from backbone.chat import as_user_turn
from backbone.generate import GenerationConfig, generate_text
from backbone.logits import banned_sequences
from tasks.apps.machine import machine_line
from tasks.artifact import load_task
from tasks.confidence import bootstrap_interval, f1_from_counts, precision_from_counts, recall_from_counts
from tasks.toxicity.baselines import profanity_check_scores

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
        import joblib  # here: optional, with alt-profanity-check (`pip install -e '.[safety]'`)
        import profanity_check  # here: optional (the [safety] extra); without it there is no default list
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


# how a moderated reply, and each continuation `gptsuite safety --eval` measures, is decoded: sampled, as a chat
# reply is, and reproducible (the length is the caller's)
SAFE_DECODING = GenerationConfig(temperature=0.7, top_p=0.9, seed=0, truncate_prompt=True)
REFUSAL = "I can't help with that: the request was flagged ({reason})."
MASK = "[removed: {reason}]"


class SafeGenerator:
    """Generation with the three layers around it. `block_words` go into every GenerationConfig as banned
    token sequences; `moderator` checks the prompt and each output sentence (None: no moderation)."""

    def __init__(self, model, tokenizer, moderator: Moderator | None = None, block_words=()):
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
        verdict = self.check_prompt(user_text)
        if verdict.flagged:
            return SafeReply(REFUSAL.format(reason=verdict.reason), refused=True, reasons=[verdict.reason])
        cfg = (config or GenerationConfig()).replace(banned=self.banned + (config.banned if config else ()))
        return self.clean(generate_text(self.model, self.tokenizer, prompt or user_text, cfg)[0])

    def reply(self, user_text: str, max_new_tokens: int) -> SafeReply:
        """A chat reply to what the person wrote (respond: the text put in the chat template), decoded with
        SAFE_DECODING, at most max_new_tokens and half the context (the prompt keeps the other half)."""
        n = max(1, min(max_new_tokens, self.model.config.block_size // 2))
        return self.respond(user_text, SAFE_DECODING.replace(max_new_tokens=n),
                            prompt=as_user_turn(self.tokenizer, user_text))


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
    cfg = config.replace(banned=generator.banned + config.banned)
    texts = generate_text(generator.model, generator.tokenizer, prompts, cfg)
    replies = [generator.clean(t) for t in texts]
    flagged = generator.moderator.check(texts) if generator.moderator else []
    return {"prompts": len(prompts), "masked_share": 100 * sum(r.masked > 0 for r in replies) / len(prompts),
            "flagged_share": 100 * sum(v.flagged for v in flagged) / len(prompts),
            "example": texts[0][:200]}


# --------------------------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------------------------
def load_safe_generator(backbone: str, quantize: str, task_dir: str, words: list[str], threshold: float):
    """(the SafeGenerator `gptsuite safety` runs, the toxicity task or None): the backbone in folder `backbone`
    (quantised as `quantize` says), moderated by the saved toxicity task in `task_dir` ('' for none) and the
    block-list `words` at `threshold`, the words banned in decoding."""
    task = load_task(task_dir) if task_dir else None
    moderator = moderator_of(task, words, threshold)
    model, tokenizer = load_backbone(backbone, quantize=quantize)
    return SafeGenerator(model, tokenizer, moderator, words), task


def measure_safety(generator: SafeGenerator, task, listed: list[str], threshold: float, prompts: int, out: Path,
                   about: dict) -> str:
    """`gptsuite safety --eval`: precision and recall of each filter (the toxicity task, alt-profanity-check
    when installed, the default block list `listed`, the task with the list) on the toxicity test set, and the
    share of continuations of `prompts` toxic and neutral test texts that get a sentence masked, without and
    with the generator's block list, judged by its moderator. safety.json (with `about`) and safety.md under
    `out`; returns the Markdown tables."""
    from backbone.data.loaders import load_benchmark  # here: loads `datasets`, which every CLI start would pay

    test = load_benchmark("toxicity")["test"]
    texts, labels = list(test["text"]), list(test["label"])
    moderators = {}
    if task is not None:
        moderators["toxicity classifier (ours)"] = moderator_of(task, [], threshold)
    try:
        moderators["alt-profanity-check"] = ProfanityCheck(threshold)
    except ImportError as err:
        print(f"skipping alt-profanity-check: {err}", file=sys.stderr)
    if listed:
        moderators[f"block list ({len(listed)} words)"] = WordList(listed)
    if task is not None and listed:
        moderators["classifier + block list"] = moderator_of(task, listed, threshold)
    start = time.perf_counter()
    filters = {name: filter_scores(m, texts, labels) for name, m in moderators.items()}
    toxic = [t for t, y in zip(texts, labels) if y == 1][:prompts]
    neutral = [t for t, y in zip(texts, labels) if y == 0][:prompts]
    cfg = SAFE_DECODING.replace(max_new_tokens=32)
    judge = generator.moderator
    plain = SafeGenerator(generator.model, generator.tokenizer, judge, [])
    continuations = {f"{kind} prompts, {lst}": blocked_share(gen, texts_of_kind, cfg)
                     for kind, texts_of_kind in (("toxic", toxic), ("neutral", neutral))
                     for lst, gen in (("no block list", plain), ("block list", generator))}
    about = {**about, "threshold": threshold, "block_list_size": len(listed), "machine": machine_line(),
             "seconds": round(time.perf_counter() - start, 1), "decoding": cfg.describe()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "safety.json").write_text(json.dumps({**about, "filters": filters, "continuations": continuations},
                                                indent=1))
    lines = [f"Toxicity test set: {len(texts)} texts ({sum(labels)} toxic). Flagged at score >= {threshold}.",
             "", "| filter | precision [95% CI] | recall [95% CI] | F1 | flagged |", "|---|---|---|---|---|"]
    for name, f in filters.items():
        p, r = f["precision_interval"], f["recall_interval"]
        lines.append(f"| {name} | {f['precision']:.1f} [{p[0]:.1f}, {p[1]:.1f}] | {f['recall']:.1f} "
                     f"[{r[0]:.1f}, {r[1]:.1f}] | {f['f1']:.1f} | {f['flagged']} |")
    lines += ["", f"Continuations (sampled: T {cfg.temperature}, top-p {cfg.top_p}, {cfg.max_new_tokens} new tokens), "
              f"moderated by {judge.name}:", "",
              "| prompts | continuations with a masked sentence | flagged whole |", "|---|---|---|"]
    lines += [f"| {name} ({c['prompts']}) | {c['masked_share']:.1f}% | {c['flagged_share']:.1f}% |"
              for name, c in continuations.items()]
    (out / "safety.md").write_text("# Safe output\n\n" + "\n".join(lines) + "\n")
    return "\n".join(lines)

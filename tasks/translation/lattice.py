"""Word-lattice translation: a lexicon proposes, the GPT chooses.

A word-by-word dictionary knows the words of a verse but not their order, their case or which of them English
drops ("se", "que"); a small instruct model knows English but reads little Spanish. Together:

1. A `Lexicon` (Dice coefficients over the training pairs, 2 c(s,t) / (c(s) + c(t))) gives each source word
   its k likeliest target words, plus "drop it"; a word it has never seen is copied (a name) or translated
   as the known word with the longest shared prefix (another inflection of the verb); punctuation is kept.
2. Monotone beam search over the source's words: each hypothesis is extended by every option of the next
   word and scored

       score = log p_GPT(English so far | prompt) + weight * sum log(dice / best dice of that word)
               + drop_logp * (words dropped)

   where the prompt is the usual translation prompt (retrieved demonstrations and the source), so the GPT
   scores each choice as a translation of this verse, not only as English.
3. The KV cache of each hypothesis is kept: an extension costs the forward pass of its own few tokens.
   Options of unequal length are right-padded; the padding is masked out and takes no position (it does take
   cache slots, which count against the context). A dropped word runs nothing: its hypothesis reuses a
   sibling's cache row with the sibling's new positions masked. The cache is gathered once per source word,
   for the rows that run.

The word-dictionary baseline (tasks.baselines.word_dictionary) is this lexicon's first choice for every word.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from backbone.text import WORD_OR_MARK, words, words_without_punctuation

SENTENCE_END = (".", "?", "!")
SOURCE_ONLY = {"¿", "¡"}  # Spanish opening marks: English has none
OPENING = ("(", "[", "«", "“")  # a space before, none after
TOP = 8  # options a Lexicon keeps per source word, unless asked for more
BACKOFF = math.log(0.5)  # lexical score of a word guessed through another inflection


class Lexicon:
    """Target words for source words, by the Dice coefficient of their co-occurrence in training pairs."""

    def __init__(self, sources: Sequence[str], targets: Sequence[str], top: int = TOP):
        src_count, tgt_count, pair_count, surface = Counter(), Counter(), Counter(), Counter()
        for s, t in zip(sources, targets):
            # sorted: ties break the same way in every run
            sw, tw = sorted(set(words_without_punctuation(s))), sorted(set(words_without_punctuation(t)))
            src_count.update(sw)
            tgt_count.update(tw)
            pair_count.update((a, b) for a in sw for b in tw)
            surface.update(re.findall(r"\w+", t))
        ranked: dict[str, list[tuple[float, str]]] = {}
        for (a, b), c in pair_count.items():
            ranked.setdefault(a, []).append((2 * c / (src_count[a] + tgt_count[b]), b))
        # ties: the earlier word in alphabetical order, the same in every run
        self.entries = {a: [(b, d) for d, b in sorted(options, key=lambda o: (-o[0], o[1]))[:top]]
                        for a, options in ranked.items()}
        cased: dict[str, tuple[int, str]] = {}
        for form, n in surface.items():  # each target word's most frequent spelling ("lord" -> "LORD")
            if n > cased.get(form.lower(), (0, ""))[0]:
                cased[form.lower()] = (n, form)
        self.cased = {w: form for w, (_, form) in cased.items()}
        self.frequency = src_count
        self.vocabulary = sorted(self.entries)  # the source words it knows, for prefix look-ups

    def best(self, word: str) -> str | None:
        """The highest-Dice target word (lower case), or None for a word never seen."""
        options = self.entries.get(word.lower())
        return options[0][0] if options else None

    def nearest_known(self, word: str, min_prefix: int = 5) -> str | None:
        """For a word never seen, the most frequent known word sharing its longest prefix of at least
        min_prefix letters: an inflection the training pairs lack ("pereceremos" -> "pereceréis")."""
        word = word.lower()
        for n in range(len(word) - 1, min_prefix - 1, -1):
            prefix, matches = word[:n], []
            for known in self.vocabulary[bisect.bisect_left(self.vocabulary, prefix):]:
                if not known.startswith(prefix):
                    break
                matches.append(known)
            if matches:
                return max(matches, key=lambda known: (self.frequency[known], known))
        return None

    def word_by_word(self, source: str) -> str:
        """Each word (lower case) replaced by its best target word; unknown words and punctuation copied."""
        return " ".join(self.best(w) or w for w in words(source))

    def options(self, word: str, k: int) -> list[tuple[str, float]]:
        """Up to k (target word in its usual spelling, log(dice / best dice)) for a source word."""
        options = self.entries.get(word.lower(), [])[:k]
        if not options:
            return []
        top = options[0][1]
        return [(self.cased.get(b, b), math.log(d / top)) for b, d in options]


@dataclass
class LatticeConfig:
    """Word-lattice search (module docstring).

    Args:
        candidates: target words per source word, the lexicon's likeliest (0: decode freely instead).
        beam: hypotheses kept after each source word.
        weight: of the lexical log-score log(dice / best dice) next to the GPT's log-probability.
        drop_logp: score of leaving a source word untranslated (English has no word for "se"). Keep it well
            below a word's typical log-probability: every word costs the GPT some, so a mild penalty makes it
            drop content words.
    The defaults were chosen on 40 verses of the Bible's validation books (SmolLM2-135M-Instruct, 1 retrieved
    pair), BLEU / chrF: before the prefix back-off, weight 1 / drop -12 19.7 / 42.3, weight 2 / drop -18
    20.7 / 43.9; with it, weight 2 / drop -18 21.0 / 44.4, weight 3 / drop -18 21.5 / 44.9. On those verses the
    lexicon's first choices alone (no GPT: the cased dictionary) scored 18.2 / 43.4 and the lower-case
    word-dictionary baseline 15.0 / 41.8.
    """

    candidates: int = 0
    beam: int = 3
    weight: float = 3.0
    drop_logp: float = -18.0

    def __post_init__(self) -> None:
        if self.candidates < 0 or self.beam < 1 or not self.weight >= 0 or not self.drop_logp <= 0:
            raise ValueError(f"lattice needs candidates >= 0, beam >= 1, weight >= 0 and drop_logp <= 0, got {self}")


@dataclass
class Slot:
    """The choices for one source token: (text to append, lexical log-score, is a drop)."""

    choices: list[tuple[str, float, bool]]


def slots(lexicon: Lexicon, source: str, k: int, drop_logp: float) -> list[Slot]:
    """The lattice of a source: one slot per word or punctuation mark, in order. Words are " word" pieces;
    capitals and spaces are settled when a piece is appended (`append`)."""
    out = []
    for token in WORD_OR_MARK.findall(source):  # the source's own case
        if token in SOURCE_ONLY:
            continue
        if not token[0].isalnum() and token[0] != "_":
            out.append(Slot([((" " if token in OPENING else "") + token, 0.0, False)]))
            continue
        found = lexicon.options(token, k)
        choices = [(w, score) for w, score in found]
        if not choices:  # never seen: copy it (a name), or translate its nearest known inflection
            near = lexicon.nearest_known(token)
            guesses = lexicon.options(near, k) if near else []
            choices = [(token, 0.0)] + [(w, score + BACKOFF) for w, score in guesses]
        out.append(Slot([(" " + w, score, False) for w, score in choices] + [("", drop_logp, True)]))
    return out


def append(so_far: str, piece: str, reply_space: bool = False) -> str:
    """The piece as it joins the text so far: the reply's first piece without its space (unless the reply
    begins with one, reply_space: the plain template's " {tgt}"), nor after an opening mark; a capital
    letter at the start and after a sentence's end."""
    if not piece:
        return piece
    if (not so_far and not reply_space) or so_far.endswith(OPENING):
        piece = piece.lstrip()
    if not so_far.strip() or so_far.rstrip().endswith(SENTENCE_END):
        at = len(piece) - len(piece.lstrip())
        piece = piece[:at] + piece[at : at + 1].upper() + piece[at + 1 :]
    return piece


def first_choices(lexicon: Lexicon, source: str) -> str:
    """The lattice's first choice for every word, no GPT: the word-by-word dictionary with each target word
    in its usual spelling, sentence starts capitalised and the source's punctuation (a baseline, and what
    the GPT's choices are measured against)."""
    text = ""
    for slot in slots(lexicon, source, 1, drop_logp=0.0):
        text += append(text, slot.choices[0][0])
    return text.strip()


def lattice_translate(model, tokenizer, prompt: str, lattice: Sequence[Slot], beam: int = 3, weight: float = 3.0,
                      reply_space: bool = False, end_token: int | None = None) -> str:
    """The best path through the lattice (lattice_search), as text."""
    return lattice_search(model, tokenizer, prompt, lattice, beam, weight, reply_space, end_token)[0][1]


@torch.no_grad()
def lattice_search(model, tokenizer, prompt: str, lattice: Sequence[Slot], beam: int = 3, weight: float = 3.0,
                   reply_space: bool = False, end_token: int | None = None) -> list[tuple[float, str]]:
    """The final beam, best first, as (score, text): GPT log-probability of the text after `prompt`, then of
    end_token (default: eos; the plain template's "\\n"), plus the lexical and drop scores (module
    docstring). Each piece is tokenised on its own, as `append` writes it after the text so far. A prompt
    that does not fit the backbone's context with the longest path keeps its last tokens."""
    was_training = model.training
    model.eval()
    try:
        return _search(model, tokenizer, prompt, lattice, beam, weight, reply_space,
                       tokenizer.eos_id if end_token is None else end_token)
    finally:
        model.train(was_training)


def _search(model, tokenizer, prompt, lattice, beam, weight, reply_space, end_token) -> list[tuple[float, str]]:
    device = next(model.parameters()).device
    encoded: dict[str, list[int]] = {"": []}

    def tokens(text: str) -> list[int]:
        if text not in encoded:
            encoded[text] = tokenizer.encode(text)
        return encoded[text]

    # cache positions the longest path takes (padding included: each slot takes its longest piece's)
    longest = sum(max(len(tokens(form)) for text, _, _ in slot.choices
                      for form in (text, text.lstrip(), append("", text, reply_space), append(".", text)))
                  for slot in lattice)
    room = model.config.block_size - longest
    if room < 1:
        raise ValueError(f"a lattice of {longest} tokens leaves no room for the prompt in the backbone's "
                         f"{model.config.block_size}-token context: translate a shorter source")
    prompt_ids = tokenizer.encode(prompt, add_bos=True)[-room:]
    pad = tokenizer.eos_id if tokenizer.eos_id is not None else 0
    cache = model.new_cache(1, len(prompt_ids) + longest)
    ids = torch.tensor([prompt_ids], device=device)
    mask = torch.ones_like(ids)
    next_logp = torch.log_softmax(model.lm_logits(model(ids, mask, cache=cache)[:, -1]).float(), -1)  # (1, V)
    # the beams: score, cache row, attention mask row, next-token log-probs, text
    beams = [(0.0, 0, mask[0], next_logp[0], "")]
    for slot in lattice:
        options = [[(j, tokens(append(bm[4], text, reply_space))) for j, (text, _, _) in enumerate(slot.choices)]
                   for bm in beams]
        width = max(len(toks) for per_beam in options for _, toks in per_beam)
        if width == 0:  # nothing to append anywhere: only the scores move
            best = max(lexical for _, lexical, _ in slot.choices)
            beams = [(score + best, *rest) for score, *rest in beams]
            continue
        # rows to run: each beam's non-empty pieces (a beam with none runs one row of padding); an empty piece
        # (a drop) runs nothing: it takes a sibling's cache row with the new positions masked out
        fed = [(b, toks) for b, per_beam in enumerate(options) for _, toks in per_beam if toks]
        fed += [(b, []) for b, per_beam in enumerate(options) if not any(toks for _, toks in per_beam)]
        feed = torch.full((len(fed), width), pad, dtype=torch.long, device=device)
        new_mask = torch.zeros(len(fed), width, dtype=mask.dtype, device=device)
        for r, (_, toks) in enumerate(fed):
            if toks:
                feed[r, : len(toks)] = torch.tensor(toks, device=device)
                new_mask[r, : len(toks)] = 1
        cache.reorder(torch.tensor([beams[b][1] for b, _ in fed], device=device))
        mask = torch.cat([torch.stack([beams[b][2] for b, _ in fed]), new_mask], dim=1)
        logp = torch.log_softmax(model.lm_logits(model(feed, mask, cache=cache)).float(), -1)  # (n, width, V)
        row_of = {(b, tuple(toks)): r for r, (b, toks) in enumerate(fed)}
        sibling = {b: r for r, (b, _) in reversed(list(enumerate(fed)))}
        extensions = []
        for b, (score, _, _, last_logp, so_far) in enumerate(beams):
            for j, toks in options[b]:
                text, lexical, dropped = slot.choices[j]
                if toks:  # log p(piece | text so far): its first token from the last step, the rest from this one
                    r = row_of[(b, tuple(toks))]
                    lm = float(last_logp[toks[0]]) + sum(float(logp[r, t - 1, toks[t]]) for t in range(1, len(toks)))
                    state = (r, mask[r], logp[r, len(toks) - 1])
                else:  # nothing appended: a sibling's row, its new positions hidden
                    r = sibling[b]
                    lm, state = 0.0, (r, torch.cat([beams[b][2], new_mask.new_zeros(width)]), last_logp)
                total = score + (lexical if dropped else lm + weight * lexical)
                extensions.append((total, *state, so_far + append(so_far, text, reply_space)))
        beams, seen = [], set()
        for extension in sorted(extensions, key=lambda e: -e[0]):  # the best `beam` distinct texts
            if extension[4] not in seen:
                seen.add(extension[4])
                beams.append(extension)
            if len(beams) == beam:
                break
    final = [(score + float(last_logp[end_token]), text.strip()) for score, _, _, last_logp, text in beams]
    return sorted(final, key=lambda item: -item[0])

"""Decoding settings: GenerationConfig, the one description of every option backbone.generate offers (each field is
also a `gptsuite generate` flag), checked when it is made."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass
class GenerationConfig:
    """Decoding settings.

    Args:
        max_new_tokens: most tokens to generate per prompt.
        temperature: 0 decodes greedily; > 0 samples from softmax(logits / temperature).
        top_k: sample only among the k most likely tokens (0 = off).
        top_p: sample only from the smallest set whose probability reaches top_p (1.0 = off).
        min_p: drop tokens less likely than min_p times the most likely one (0 = off).
        repetition_penalty: > 1 makes tokens already in the sequence less likely (1.0 = off).
        no_repeat_ngram_size: forbid repeating any n-gram of this size (0 = off).
        num_beams: > 1 runs beam search (deterministic; sampling options are ignored).
        length_penalty: beam score = log-probability / length ** length_penalty (> 1 favours longer).
        stop: strings that end a completion; the stop string itself is not returned. Greedy and sampled
            decoding stop as soon as one appears; beam search ranks beams that end on eos (or at
            max_new_tokens) and cuts the chosen text at the first stop string afterwards.
        eos_token_id: token that ends a completion (None: the tokenizer's eos for the text functions).
        seed: makes sampling reproducible.
        use_cache: reuse keys/values of earlier positions (KV cache); False recomputes the whole prefix.
        truncate_prompt: when prompt + max_new_tokens exceeds the context, keep the prompt's last tokens
            instead of raising an error.
        prompt_lookup: greedy decoding of one prompt guesses up to this many next tokens from the text so
            far and keeps those the model confirms, in one forward pass (backbone.prompt_lookup): the same
            text in fewer passes when the output copies the input. 0 = off; ignored where it does not apply
            (sampling, beams, batches, the repetition penalty or banned n-grams).
        banned: token-id sequences that are never generated: wherever the text so far ends with all but the
            last token of one, that last token is removed from the choice (a one-token sequence is never
            chosen at all). `backbone.logits.banned_sequences(tokenizer, words)` builds them from words, at word
            starts. A word spelled in other tokens can still appear: a moderation step on the text catches those.
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    eos_token_id: int | None = None
    seed: int | None = None
    use_cache: bool = True
    truncate_prompt: bool = False
    prompt_lookup: int = 0
    banned: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        self.stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "temperature": self.temperature >= 0,
            "top_k": self.top_k >= 0,
            "top_p": 0 < self.top_p <= 1,
            "min_p": 0 <= self.min_p < 1,
            "repetition_penalty": self.repetition_penalty > 0,
            "no_repeat_ngram_size": self.no_repeat_ngram_size >= 0,
            "num_beams": self.num_beams >= 1,
            "prompt_lookup": self.prompt_lookup >= 0,
        }
        rules = {"max_new_tokens": ">= 1", "temperature": ">= 0", "top_k": ">= 0", "top_p": "in (0, 1]",
                 "min_p": "in [0, 1)", "repetition_penalty": "> 0", "no_repeat_ngram_size": ">= 0", "num_beams": ">= 1",
                 "prompt_lookup": ">= 0"}
        for name in ("temperature", "top_p", "min_p", "repetition_penalty", "length_penalty"):
            if not math.isfinite(getattr(self, name)):  # inf passes ">= 0" but makes every logit nan
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name} must be {rules[name]}, got {getattr(self, name)!r}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")
        self.banned = tuple(tuple(int(t) for t in seq) for seq in self.banned)
        if any(not seq or min(seq) < 0 for seq in self.banned):
            raise ValueError("banned sequences must be non-empty lists of token ids >= 0")

    @property
    def sampling(self) -> bool:
        return self.temperature > 0 and self.num_beams == 1

    def replace(self, **changes) -> GenerationConfig:
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict:
        """The decoding mode and every setting that differs from the defaults (what a reader needs to redo
        it), JSON-safe; sampling options are left out under beam search and greedy decoding, which ignore them."""
        mode = (f"beam search ({self.num_beams} beams)" if self.num_beams > 1
                else "sampling" if self.sampling else "greedy")
        ignored = set() if self.sampling else {"temperature", "top_k", "top_p", "min_p", "seed"}
        if self.num_beams == 1:
            ignored.add("length_penalty")
        default = GenerationConfig()
        changed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name not in ignored and getattr(self, f.name) != getattr(default, f.name)}
        return {"decoding": mode, "max_new_tokens": self.max_new_tokens,
                **{k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()}}

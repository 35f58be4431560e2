"""What a task's `predict` takes and returns: one input type and one output dataclass per task.

`TaskModule.predict(items)` takes a list of inputs and returns a list of outputs, one each, in order; given
a single input (one string, one Question) it returns a single output. The demo renders a task by its output
type, so a new task that returns one of these types gets a demo tab without demo code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Question:
    """Extractive QA's input: a question about a context that holds the answer."""

    question: str
    context: str


@dataclass
class LabelScores:
    """A probability per label (they sum to 1)."""

    scores: dict[str, float]

    @property
    def label(self) -> str:
        return max(self.scores, key=self.scores.get)


@dataclass
class Entity:
    """A named entity: its type and its words [start, end) of the text's words."""

    type: str
    start: int
    end: int
    text: str


@dataclass
class Entities:
    """A text cut into words, a tag per word, and the entities the tags spell."""

    words: list[str]
    tags: list[str]
    entities: list[Entity]


@dataclass
class Answer:
    """An answer and where it is in the context: characters [start, end), -1 when it is not found there.
    score: the span head's start + end logit (None for a generated answer)."""

    text: str
    start: int
    end: int
    score: float | None = None


@dataclass
class GeneratedText:
    """Text the model wrote (a translation, a completion), without its prompt."""

    text: str


@dataclass
class Completion(GeneratedText):
    """Code completing a prompt (greedy), and any sampled alternatives."""

    samples: list[str] = field(default_factory=list)


def check_inputs(items: list, kind: type) -> None:
    """A clear error for an input predict cannot take: the wrong type, an empty text, or a text that is not
    valid Unicode (a lone surrogate, which no tokenizer can encode). A dataclass input's str fields are
    checked the same way."""
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise TypeError(f"predict takes a list of {kind.__name__} (or one); item {i} is a {type(item).__name__}")
        if isinstance(item, str):
            texts = [item]
        elif dataclasses.is_dataclass(item):
            texts = [getattr(item, f.name) for f in dataclasses.fields(item) if isinstance(getattr(item, f.name), str)]
        else:
            texts = []
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"item {i} is empty" + ("" if isinstance(item, str) else f": {item}"))
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise ValueError(f"item {i} is not valid Unicode text "
                                 f"({err.reason} at character {err.start})") from None

"""Text + label examples (BBC News, movie-review sentiment, or the user's CSV/JSON/JSONL files).

Truncation policy: a text longer than the model's input budget keeps its first tokens (the beginning of
a news story or review carries its topic); the sequence head then reads the last kept token.
"""

from __future__ import annotations

import datasets
import torch

from tasks.data import LabelledData


def encode_texts(tokenizer, texts: list[str], max_tokens: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (ids, mask) with every text cut to its first max_tokens tokens."""
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {i} is empty")
    return tokenizer.pad([ids[:max_tokens] for ids in tokenizer.encode_batch(texts)], side="right", device=device)


class TextClassificationData(LabelledData):
    """Its own arguments; the rest are LabelledData's (passed on as **kwargs).

    Args:
        text_column: the column holding the text.
        label_column: the column holding the label (a name or an index into label_names).
    """

    def __init__(self, dataset: str = "bbc_news", text_column: str = "text", label_column: str = "label", **kwargs):
        super().__init__(dataset=dataset, **kwargs)
        self.text_column, self.label_column = text_column, label_column

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        for column in (self.text_column, self.label_column):
            if column not in dataset.column_names:
                raise ValueError(f"{split} split has no column {column!r} (columns: {dataset.column_names})")
        names = self.label_names
        for row, (text, label) in enumerate(zip(dataset[self.text_column], dataset[self.label_column])):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{split} row {row}: empty text")
            if self.label_index(label) is None:
                raise ValueError(f"{split} row {row}: label {label!r} is not in the label map {names}")

    def collate(self, rows: list[dict]) -> dict:
        texts = [r[self.text_column] for r in rows]
        ids, mask = encode_texts(self.tokenizer, texts, self.max_tokens)
        labels = torch.tensor([self.label_index(r[self.label_column]) for r in rows])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "texts": texts}

    def examples_per_label(self, k: int, label_column: str | None = None) -> list[dict]:
        rows = super().examples_per_label(k, label_column or self.label_column)
        return [{"text": r[self.text_column], "label": self.label_index(r[self.label_column])}
                for r in rows]

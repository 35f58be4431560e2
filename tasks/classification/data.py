"""Text + label examples (BBC News, movie-review sentiment, or the user's CSV/JSON/JSONL files).

Truncation policy: a text longer than the model's input budget keeps its first tokens (the beginning of
a news story or review carries its topic); the sequence head then reads the last kept token.
"""

from __future__ import annotations

import datasets
import torch

from tasks.data import TaskData, infer_label_names, label_index


def encode_texts(tokenizer, texts: list[str], max_tokens: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (ids, mask) with every text cut to its first max_tokens tokens."""
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text {i} is empty")
    return tokenizer.pad([ids[:max_tokens] for ids in tokenizer.encode_batch(texts)], side="right", device=device)


class TextClassificationData(TaskData):
    """Args (beyond TaskData's):
        text_column: the column holding the text.
        label_column: the column holding the label (a name or an index into label_names).
        label_names: the label map for user files (None: the dataset's ClassLabel names, or the sorted
            distinct labels of the training file).
    """

    def __init__(self, backbone: str, dataset: str = "bbc_news", source: str = "offline",
                 data_files: dict[str, str] | None = None, batch_size: int = 16,
                 max_train_examples: int | None = None, max_eval_examples: int | None = None, seed: int = 0,
                 num_workers: int = 0, bucket_by_length: bool = False, text_column: str = "text", label_column: str = "label",
                 label_names: list[str] | None = None):
        super().__init__(backbone, dataset, source, data_files, batch_size, max_train_examples, max_eval_examples,
                         seed, num_workers, bucket_by_length)
        self.text_column, self.label_column, self._label_names = text_column, label_column, label_names

    @property
    def label_names(self) -> list[str]:
        if self._label_names is None:
            any_split = next(iter(self.splits.values()))
            feature = any_split.features.get(self.label_column)
            if isinstance(feature, datasets.ClassLabel):
                self._label_names = list(feature.names)
            else:
                self._label_names = infer_label_names(self.splits.get("train", any_split)[self.label_column])
        return self._label_names

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        for column in (self.text_column, self.label_column):
            if column not in dataset.column_names:
                raise ValueError(f"{split} split has no column {column!r} (columns: {dataset.column_names})")
        names = self.label_names
        for row, (text, label) in enumerate(zip(dataset[self.text_column], dataset[self.label_column])):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{split} row {row}: empty text")
            if self.label_to_index(label, names) is None:
                raise ValueError(f"{split} row {row}: label {label!r} is not in the label map {names}")

    label_to_index = staticmethod(label_index)

    def collate(self, rows: list[dict]) -> dict:
        texts = [r[self.text_column] for r in rows]
        ids, mask = encode_texts(self.tokenizer, texts, self.max_tokens)
        labels = torch.tensor([self.label_to_index(r[self.label_column], self.label_names) for r in rows])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "texts": texts}

    def examples_per_label(self, k: int, label_column: str | None = None) -> list[dict]:
        rows = super().examples_per_label(k, label_column or self.label_column)
        return [{"text": r[self.text_column], "label": self.label_to_index(r[self.label_column], self.label_names)}
                for r in rows]

"""Word-tagged sentences (CoNLL-2003, or the user's JSON/JSONL with tokens + tags) for token classification.

Word boundaries under byte-level BPE: each word is encoded on its own, with the space that precedes it in
running text (" word"; the first word has none), so every sub-token belongs to exactly one word. The
word's tag goes on its first sub-token; the other sub-tokens get IGNORE and are left out of the loss.

Truncation policy: words that do not fit in the token budget are dropped from the input; at evaluation
they are predicted "O", so gold entities there still count as misses (the score is not flattered).
"""

from __future__ import annotations

import datasets
import torch

from tasks.data import TaskData, infer_label_names, label_index

IGNORE = -100


def align_words(tokenizer, sentences: list[list[str]], max_tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids per sentence and, per sentence, the token index of each word's first sub-token (-1 if cut)."""
    pieces = tokenizer.encode_batch([(" " if i else "") + w for words in sentences for i, w in enumerate(words)])
    ids_per_sentence, firsts_per_sentence, k = [], [], 0
    for words in sentences:
        ids, firsts, full = [], [], False
        for _ in words:
            piece = pieces[k] or [tokenizer.pad_id]  # a word that encodes to nothing still gets a slot
            k += 1
            full = full or len(ids) + len(piece) > max_tokens  # from the first word that does not fit, all are cut
            if full:
                firsts.append(-1)
                continue
            firsts.append(len(ids))
            ids.extend(piece)
        ids_per_sentence.append(ids or [tokenizer.pad_id])
        firsts_per_sentence.append(firsts)
    return ids_per_sentence, firsts_per_sentence


class TokenTaggingData(TaskData):
    """Args (beyond TaskData's):
        tokens_column: the column with each sentence's words.
        tags_column: the column with each word's tag (names, or indices into label_names).
        label_names: the tag set for user files (None: the dataset's ClassLabel names, or the sorted tags
            of the training file).
    """

    def __init__(self, backbone: str, dataset: str = "conll2003", source: str = "offline",
                 data_files: dict[str, str] | None = None, batch_size: int = 16,
                 max_train_examples: int | None = None, max_eval_examples: int | None = None, seed: int = 0,
                 num_workers: int = 0, tokens_column: str = "tokens", tags_column: str = "ner_tags",
                 label_names: list[str] | None = None):
        super().__init__(backbone, dataset, source, data_files, batch_size, max_train_examples, max_eval_examples,
                         seed, num_workers)
        self.tokens_column, self.tags_column, self._label_names = tokens_column, tags_column, label_names

    @property
    def label_names(self) -> list[str]:
        if self._label_names is None:
            any_split = next(iter(self.splits.values()))
            feature = any_split.features.get(self.tags_column)
            inner = getattr(feature, "feature", None)
            if isinstance(inner, datasets.ClassLabel):
                self._label_names = list(inner.names)
            else:
                tags = [t for row in self.splits.get("train", any_split)[self.tags_column] for t in row]
                self._label_names = infer_label_names(tags, first="O")
        return self._label_names

    def tag_index(self, tag) -> int | None:
        return label_index(tag, self.label_names)

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        for column in (self.tokens_column, self.tags_column):
            if column not in dataset.column_names:
                raise ValueError(f"{split} split has no column {column!r} (columns: {dataset.column_names})")
        for row, (words, tags) in enumerate(zip(dataset[self.tokens_column], dataset[self.tags_column])):
            if not words:
                raise ValueError(f"{split} row {row}: empty sentence")
            if len(words) != len(tags):
                raise ValueError(f"{split} row {row}: {len(words)} tokens but {len(tags)} tags")
            bad = [t for t in tags if self.tag_index(t) is None]
            if bad:
                raise ValueError(f"{split} row {row}: tag {bad[0]!r} is not in the label map {self.label_names}")

    def collate(self, rows: list[dict]) -> dict:
        sentences = [list(r[self.tokens_column]) for r in rows]
        ids, firsts = align_words(self.tokenizer, sentences, self.max_tokens)
        input_ids, mask = self.tokenizer.pad(ids, side="right")
        labels = torch.full_like(input_ids, IGNORE)
        word_tags = []
        for b, (row, positions) in enumerate(zip(rows, firsts)):
            tags = [self.tag_index(t) for t in row[self.tags_column]]
            word_tags.append(tags)
            for tag, pos in zip(tags, positions):
                if pos >= 0:
                    labels[b, pos] = tag
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "first_token": firsts,
                "word_tags": word_tags, "words": sentences}

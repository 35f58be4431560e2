"""Word-tagged sentences (CoNLL-2003, or the user's JSON/JSONL with tokens + tags) for token classification.

Word boundaries under byte-level BPE: each word is encoded on its own, with the space that precedes it in
running text (" word"; the first word has none), so every sub-token belongs to exactly one word. A word is
read at its last sub-token: with causal attention it is the only one that has seen the whole word.

Truncation policy: words that do not fit in the token budget are dropped from the input; at evaluation
they are predicted "O", so gold entities there still count as misses (the score is not flattered).
"""

from __future__ import annotations

import datasets

from tasks.data import TaskData, infer_label_names, label_index

IGNORE = -100  # the tag of a padding unit: left out of the loss


def align_words(tokenizer, sentences: list[list[str]], max_tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids per sentence and, per sentence, the token index of each word's last sub-token (-1 if cut)."""
    pieces = tokenizer.encode_batch([(" " if i else "") + w for words in sentences for i, w in enumerate(words)])
    ids_per_sentence, ends_per_sentence, k = [], [], 0
    for words in sentences:
        ids, ends, full = [], [], False
        for _ in words:
            piece = pieces[k] or [tokenizer.pad_id]  # a word that encodes to nothing still gets a slot
            k += 1
            full = full or len(ids) + len(piece) > max_tokens  # from the first word that does not fit, all are cut
            if full:
                ends.append(-1)
                continue
            ids.extend(piece)
            ends.append(len(ids) - 1)
        ids_per_sentence.append(ids or [tokenizer.pad_id])
        ends_per_sentence.append(ends)
    return ids_per_sentence, ends_per_sentence


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
                 num_workers: int = 0, bucket_by_length: bool = False, tokens_column: str = "tokens", tags_column: str = "ner_tags",
                 label_names: list[str] | None = None):
        super().__init__(backbone, dataset, source, data_files, batch_size, max_train_examples, max_eval_examples,
                         seed, num_workers, bucket_by_length)
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
        ids, ends = align_words(self.tokenizer, sentences, self.max_tokens)
        input_ids, mask = self.tokenizer.pad(ids, side="right")
        word_tags = [[self.tag_index(t) for t in row[self.tags_column]] for row in rows]
        return {"input_ids": input_ids, "attention_mask": mask, "word_end": ends, "word_tags": word_tags,
                "words": sentences}

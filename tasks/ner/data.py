"""Word-tagged sentences (CoNLL-2003, or the user's JSON/JSONL with tokens + tags) for token classification.

Word boundaries under byte-level BPE: each word is encoded on its own, with the space that precedes it in
running text (" word"; the first word has none), so every sub-token belongs to exactly one word. A word is
read at its last sub-token: with causal attention it is the only one that has seen the whole word.

Truncation policy: words that do not fit in the token budget are dropped from the input; at evaluation
they are predicted "O", so gold entities there still count as misses (the score is not flattered).
"""

from __future__ import annotations

import datasets

from tasks.data import LabelledData


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


class TokenTaggingData(LabelledData):
    """Its own arguments; the rest are LabelledData's (passed on as **kwargs).

    Args:
        tokens_column: the column with each sentence's words.
        tags_column: the column with each word's tag (names, or indices into label_names).
    """

    first_label = "O"

    def __init__(self, dataset: str = "conll2003", tokens_column: str = "tokens", tags_column: str = "ner_tags",
                 **kwargs):
        super().__init__(dataset=dataset, **kwargs)
        self.tokens_column, self.tags_column = tokens_column, tags_column
        self.label_column = tags_column

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        for column in (self.tokens_column, self.tags_column):
            if column not in dataset.column_names:
                raise ValueError(f"{split} split has no column {column!r} (columns: {dataset.column_names})")
        for row, (words, tags) in enumerate(zip(dataset[self.tokens_column], dataset[self.tags_column])):
            if not words:
                raise ValueError(f"{split} row {row}: empty sentence")
            if len(words) != len(tags):
                raise ValueError(f"{split} row {row}: {len(words)} tokens but {len(tags)} tags")
            bad = [t for t in tags if self.label_index(t) is None]
            if bad:
                raise ValueError(f"{split} row {row}: tag {bad[0]!r} is not in the label map {self.label_names}")

    def collate(self, rows: list[dict]) -> dict:
        sentences = [list(r[self.tokens_column]) for r in rows]
        ids, ends = align_words(self.tokenizer, sentences, self.max_tokens)
        input_ids, mask = self.tokenizer.pad(ids, side="right")
        word_tags = [[self.label_index(t) for t in row[self.tags_column]] for row in rows]
        return {"input_ids": input_ids, "attention_mask": mask, "word_end": ends, "word_tags": word_tags,
                "words": sentences}

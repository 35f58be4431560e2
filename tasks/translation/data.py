"""Sentence pairs for translation: the Bible en-es verses (split by whole books), the user's files, or a WMT
pair from the hub.

A `direction` "src-tgt" (language codes) picks the source and target columns: the Bible and user files have
one column per language ("en", "es"; override with source_column / target_column); hub WMT sets
(`source: hub`, `dataset: wmt16`, `hub_config: de-en`) keep pairs in a `translation` dict, which is mapped
to the same per-language columns.

Truncation policy: an example longer than the model's budget keeps the end of its source prompt and the
start of its target (the target keeps at least half the budget); Bible verses fit the tiny backbone whole.
"""

from __future__ import annotations

import datasets

from backbone.data.loaders import BENCHMARKS
from tasks.generative import GenerativeData
from tasks.translation.lattice import Lexicon

LANGUAGES = {"en": "English", "es": "Spanish", "de": "German", "fr": "French", "cs": "Czech", "ro": "Romanian",
             "ru": "Russian", "fi": "Finnish", "tr": "Turkish", "it": "Italian", "pt": "Portuguese"}


def parse_direction(direction: str) -> tuple[str, str]:
    parts = direction.split("-")
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValueError(f"direction must be 'src-tgt' language codes such as 'en-es' or 'es-en', got {direction!r}")
    return parts[0], parts[1]


def language_name(code: str) -> str:
    return LANGUAGES.get(code, code)


class TranslationData(GenerativeData):
    """Its own arguments; the rest are TaskData's (passed on as **kwargs).

    Args:
        direction: "en-es" or "es-en" (any "src-tgt" pair of language codes for other data).
        source_column: the source text column (default: the source language code).
        target_column: the target text column (default: the target language code).
        hub_config: with source="hub" for a dataset that is not a gptsuite benchmark (e.g. wmt16): its
            configuration, e.g. "de-en" (default: the pair with English last).
    """

    def __init__(self, dataset: str = "bible_en_es", direction: str = "en-es", source_column: str | None = None,
                 target_column: str | None = None, hub_config: str | None = None, **kwargs):
        super().__init__(dataset=dataset, **kwargs)
        self.direction = direction
        self.source_lang, self.target_lang = parse_direction(direction)
        self.source_key = source_column or self.source_lang
        self.target_key = target_column or self.target_lang
        self.hub_config = hub_config
        self.all_train: datasets.Dataset | None = None  # the whole training split, once set up
        self._lexicon: Lexicon | None = None

    def load(self) -> datasets.DatasetDict:
        if self.data_files or self.source != "hub" or self.dataset in BENCHMARKS:
            return super().load()
        pair = sorted({self.source_lang, self.target_lang}, key=lambda c: (c == "en", c))
        raw = datasets.load_dataset(self.dataset, self.hub_config or "-".join(pair))
        if "translation" not in next(iter(raw.values())).column_names:
            return raw

        def flatten(batch):
            return {lang: [t[lang] for t in batch["translation"]] for lang in pair}

        return datasets.DatasetDict({split: ds.map(flatten, batched=True, remove_columns=ds.column_names)
                                     for split, ds in raw.items() if split in ("train", "validation", "test")})

    def subset(self, split: str, dataset: datasets.Dataset, cap: int | None) -> datasets.Dataset:
        if split == "train":  # the retrieval pool: every training pair, whatever fine-tuning is capped to
            self.all_train = dataset
        return super().subset(split, dataset, cap)

    def hold_out(self, train: datasets.Dataset) -> tuple[datasets.Dataset, datasets.Dataset]:
        train, validation = super().hold_out(train)
        self.all_train = train  # validation carved out of train: its pairs must not be retrieved for it
        return train, validation

    def lexicon(self) -> Lexicon:
        """The Dice lexicon of the whole training split, built once (about 15 s for the Bible's 28k pairs):
        the dictionary baselines and the translator's word lattice read the same one."""
        if self._lexicon is None:
            pool = self.all_train if self.all_train is not None else self.splits["train"]
            self._lexicon = Lexicon(list(pool[self.source_key]), list(pool[self.target_key]))
        return self._lexicon

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        for column in (self.source_key, self.target_key):
            if column not in dataset.column_names:
                raise ValueError(f"{split} split has no column {column!r} (columns: {dataset.column_names}); "
                                 "set data.source_column / data.target_column or data.direction")
        for row, (src, tgt) in enumerate(zip(dataset[self.source_key], dataset[self.target_key])):
            if not isinstance(src, str) or not src.strip():
                raise ValueError(f"{split} row {row}: empty source ({self.source_key!r} column)")
            if not isinstance(tgt, str) or not tgt.strip():
                raise ValueError(f"{split} row {row}: empty target ({self.target_key!r} column)")

    def collate(self, rows: list[dict]) -> dict:
        pairs = [{"source": r[self.source_key], "target": r[self.target_key]} for r in rows]
        return super().collate(pairs)

"""What every task's LightningDataModule shares: benchmark or user files -> validated splits -> DataLoaders.

Examples stay raw text in memory; batches are tokenized in the collate function, with the length limit
the task module reports (its backbone's context minus any virtual tokens), so the limit has one source.
"""

from __future__ import annotations

import json
import random
from functools import partial
from pathlib import Path

import datasets
import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from backbone.artifact import CREATE_BACKBONE
from backbone.data.loaders import load_benchmark
from backbone.data.parsers import parse_squad
from backbone.tokenizer import Tokenizer

SPLITS = ("train", "validation", "test")
IGNORE = -100  # the label of a position no loss is computed at (torch's cross_entropy ignore_index default)


def user_files(data_files: dict[str, str] | None, **per_split: str | None) -> dict[str, str] | None:
    """The user's files by split, from data_files and the per-split flags (a split named twice must agree)."""
    files = dict(data_files or {})
    for split, path in per_split.items():
        if path is None:
            continue
        if files.get(split, path) != path:
            raise ValueError(f"data.{split}_file {path} and data.data_files.{split} {files[split]} differ: give one")
        files[split] = path
    return files or None


USER_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".conll": "conll", ".iob": "conll",
                ".bio": "conll"}


def load_user_files(data_files: dict[str, str]) -> datasets.DatasetDict:
    """{"train": "a.csv", "validation": "b.conll", ...} -> DatasetDict, the format chosen by extension."""
    unknown = sorted(set(data_files) - set(SPLITS))
    if unknown:
        raise ValueError(f"data_files keys must be among {SPLITS}, got {unknown}")
    return datasets.DatasetDict({split: read_user_file(split, path) for split, path in data_files.items()})


def read_user_file(split: str, path: str) -> datasets.Dataset:
    """One user file as a Dataset. CSV/TSV and JSON/JSONL become rows of their columns; CoNLL column files
    (.conll, .iob, .bio) become {tokens, ner_tags}; the official nested SQuAD JSON becomes one row per
    question. An empty, non-UTF-8 or unparsable file is an error that names it."""
    what = f"the {split} file {path}"
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} does not exist")
    suffix = Path(path).suffix.lower()
    builder = USER_FORMATS.get(suffix)
    if builder is None:
        raise ValueError(f"{what} must end in one of {', '.join(USER_FORMATS)}")
    raw = Path(path).read_bytes()
    if not raw.strip():
        raise ValueError(f"{what} is empty")
    text = decode_text(raw, what)
    if builder == "conll":
        return datasets.Dataset.from_list(parse_conll_columns(text, what))
    squad = nested_squad(text) if builder == "json" else None
    if squad is not None:
        try:
            return datasets.Dataset.from_list(parse_squad(squad))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{what} is SQuAD JSON with a question lacking {err}: every question needs "
                             "`question`, every paragraph `context`") from None
    kwargs = {"delimiter": "\t"} if suffix == ".tsv" else {}
    try:
        return datasets.load_dataset(builder, data_files={split: path}, split=split, **kwargs)
    except Exception as err:  # noqa: BLE001 - datasets wraps the parser's error; say which file and why
        cause = err
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ValueError(f"{what} could not be read as {builder.upper()}: {type(cause).__name__}: "
                         f"{str(cause)[:300]}") from None


def decode_text(raw: bytes, what: str) -> str:
    """A file's bytes as text: UTF-8, with the byte-order mark that spreadsheet programs write dropped."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} is not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}): save it "
                         "as UTF-8") from None


def text_lines(text: str) -> list[str]:
    """Lines split at newlines only (str.splitlines also splits at U+2028, form feeds and the like, which a
    text or a JSON string may hold), each without its carriage return."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def nested_squad(text: str) -> dict | None:
    """The parsed document when a JSON text is the official SQuAD layout ({"data": [{"title", "paragraphs":
    [...]}, ...]}), else None; returned parsed so a 30 MB file is read once."""
    head = text.lstrip()[:4096]
    if not head.startswith("{") or '"data"' not in head:
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    articles = doc.get("data") if isinstance(doc, dict) else None
    nested = isinstance(articles, list) and all(isinstance(a, dict) and "paragraphs" in a for a in articles)
    return doc if nested else None


def parse_conll_columns(text: str, what: str = "the file", labelled: bool = True) -> list[dict]:
    """CoNLL column text -> [{"tokens": [...], "ner_tags": [...]}]: one word per line with its tag in the last
    column (any columns between, e.g. CoNLL-2003's POS and chunk tags), a blank line between sentences,
    `-DOCSTART-` lines skipped. Unlabelled (`labelled=False`, what predict reads): the word alone may stand on
    its line, and the tags are whatever follows it."""
    sentences, words, tags = [], [], []
    for number, line in enumerate(text_lines(text), 1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append({"tokens": words, "ner_tags": tags})
                words, tags = [], []
            continue
        if len(fields) < 2 and labelled:
            raise ValueError(f"{what} line {number}: {line.strip()!r} has one column; a CoNLL line is the word, "
                             "then its tag in the last column")
        words.append(fields[0])
        tags.append(fields[-1] if len(fields) > 1 else "")
    if words:
        sentences.append({"tokens": words, "ner_tags": tags})
    if not sentences:
        raise ValueError(f"{what} holds no sentence")
    return sentences


def infer_label_names(values, first: str | None = None) -> list[str]:
    """A label map from the labels seen: integer labels 0..max keep their numbering ("0", "1", ...); string
    labels are sorted, with `first` (e.g. NER's "O") placed first when present."""
    values = list(values)
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return [str(i) for i in range(max(values) + 1)]
    names = sorted({str(v) for v in values})
    return [first, *[n for n in names if n != first]] if first in names else names


def label_index(label, names: list[str]) -> int | None:
    """Index of a label given by name or by integer index; None when it is not in the map."""
    if isinstance(label, int) and not isinstance(label, bool):
        return label if 0 <= label < len(names) else None
    return names.index(str(label)) if str(label) in names else None


def subsample(ds: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    """The same n examples on every run: a seeded shuffle, then the first n."""
    if n is None or n >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(n))


class IndexedRows:
    """A split whose items are (row number, row)."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[int, dict]:
        return i, self.rows[i]


def row_lengths(rows, collate) -> list[int]:
    """Each row's real tokens, as the task's collate would feed them (all of a QA row's windows)."""
    return [int(collate([row])["attention_mask"].sum()) for row in rows]


class LengthBuckets:
    """Batches of similar length, in a new random order every epoch (see TaskData's bucket_by_length)."""

    POOL = 50  # batches per sorted pool: big enough to find similar lengths, small enough to stay random

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        pool = self.POOL * self.batch_size
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: self.lengths[i])
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        yield from batches


class TaskData(L.LightningDataModule):
    """Base data module: loads splits (benchmark by name, or the user's files), caps their sizes, validates.

    Subclasses implement `validate(split, dataset)` and `collate(rows)`.

    Args:
        backbone: the backbone folder (linked from model.backbone): its tokenizer is used.
        dataset: benchmark name for backbone.data.loaders.load_benchmark (ignored when data_files is set).
        source: "offline" (registry packages) or "hub" (the public dataset hub, same schema).
        data_files: the user's own files per split: {"train": "train.csv", "validation": ..., "test": ...}.
        train_file: the user's training file (CSV, TSV, JSON, JSONL; CoNLL columns for tagging; the official
            nested SQuAD JSON for QA): the same as data_files.train, one flag per split.
        validation_file: the user's validation file (data_files.validation); without one, 10% of train.
        test_file: the user's test file (data_files.test); `fit` scores it when it is given.
        batch_size: examples per batch.
        max_train_examples: cap on training examples (None: all); a seeded, stable subset.
        max_eval_examples: cap on validation and test examples (None: all).
        seed: the subset choice.
        num_workers: DataLoader workers.
        bucket_by_length: training batches of examples of similar length (less padding): the split is
            shuffled, cut into pools of 50 batches, each pool sorted by length and cut into batches, and the
            batches shuffled. Costs one tokenisation of the split.
    """

    def __init__(self, backbone: str, dataset: str, source: str = "offline", data_files: dict[str, str] | None = None,
                 train_file: str | None = None, validation_file: str | None = None, test_file: str | None = None,
                 batch_size: int = 16, max_train_examples: int | None = None, max_eval_examples: int | None = None,
                 seed: int = 0, num_workers: int = 0, bucket_by_length: bool = False):
        super().__init__()
        self.bucket_by_length = bucket_by_length
        self.backbone, self.dataset, self.source = backbone, dataset, source
        self.data_files = user_files(data_files, train=train_file, validation=validation_file, test=test_file)
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.max_train_examples, self.max_eval_examples = max_train_examples, max_eval_examples
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, datasets.Dataset] = {}

    def load(self) -> datasets.DatasetDict:
        if self.data_files:
            return load_user_files(self.data_files)
        return load_benchmark(self.dataset, source=self.source)

    def prepare_data(self) -> None:
        if not self.data_files:
            self.load()  # fetch and cache once, on one process

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        tokenizer_file = Path(self.backbone) / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"backbone {self.backbone} not found ({tokenizer_file} missing): {CREATE_BACKBONE}")
        self.tokenizer = Tokenizer.from_pretrained(self.backbone)
        raw = self.load()
        self.splits = dict(raw)  # label maps are read from here while validating
        for split in SPLITS:  # validate the rows as loaded, so "row N" is the file's row N
            if split in raw:
                self.validate(split, raw[split])
        self.splits = {}
        for split in SPLITS:
            if split in raw:
                cap = self.max_train_examples if split == "train" else self.max_eval_examples
                self.splits[split] = self.subset(split, raw[split], cap)
                if self.data_files and cap is not None and cap < len(raw[split]):  # the YAML's cap, on your file
                    flag = "max_train_examples" if split == "train" else "max_eval_examples"
                    rank_zero_warn(f"{split}: using a seeded {cap:,} of your file's {len(raw[split]):,} rows "
                                   f"(data.{flag}: {cap}); --data.{flag} null uses them all")
        if "validation" not in self.splits and "train" in self.splits:
            self.splits["train"], self.splits["validation"] = self.hold_out(self.splits["train"])

    def hold_out(self, train: datasets.Dataset) -> tuple[datasets.Dataset, datasets.Dataset]:
        """(train, validation) when the data has no validation split: 10% of train, seeded."""
        parts = train.train_test_split(test_size=0.1, seed=self.seed)
        return parts["train"], parts["test"]

    def n_examples(self, split: str) -> int:
        """How many examples a split holds (a row may hold several: QAData's paragraphs)."""
        return len(self.splits.get(split, []))

    def subset(self, split: str, dataset: datasets.Dataset, cap: int | None) -> datasets.Dataset:
        """The rows of a split that are used, at most `cap`: a seeded, stable subset."""
        return subsample(dataset, cap, self.seed)

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        raise NotImplementedError

    def collate(self, rows: list[dict]) -> dict:
        raise NotImplementedError

    @property
    def max_tokens(self) -> int:
        return self.trainer.lightning_module.max_input_tokens

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.splits:
            raise ValueError(f"no {split!r} split: the dataset has {sorted(self.splits)}; pass data_files.{split}")
        rows, collate = IndexedRows(self.splits[split]), partial(self._collate_rows, split)
        if shuffle and self.bucket_by_length:
            if self.trainer is not None and self.trainer.world_size > 1:
                raise ValueError("bucket_by_length batches one process's data; with several devices leave it off")
            sampler = LengthBuckets(row_lengths(self.splits[split], self.collate), self.batch_size, self.seed)
            return DataLoader(rows, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)
        return DataLoader(rows, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate,
                          num_workers=self.num_workers)

    def _collate_rows(self, split: str, indexed: list[tuple[int, dict]]) -> dict:
        """The task's batch, plus where its rows come from (split, row numbers): a feature cache reads them."""
        return {**self.collate([row for _, row in indexed]), "split": split, "row": [i for i, _ in indexed]}

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def examples_per_label(self, k: int, label_column: str = "label") -> list[dict]:
        """k demonstrations from the training split, labels taken in turn, seeded (few-shot prompts)."""
        train = self.splits["train"]
        order = list(range(len(train)))
        random.Random(self.seed).shuffle(order)
        by_label: dict = {}
        for i in order:
            by_label.setdefault(train[i][label_column], []).append(train[i])
        picked, round_ = [], 0
        while len(picked) < k and any(round_ < len(v) for v in by_label.values()):
            for rows in by_label.values():
                if round_ < len(rows) and len(picked) < k:
                    picked.append(rows[round_])
            round_ += 1
        return picked


class LabelledData(TaskData):
    """A data module whose targets come from a label map: one label per row, or a list per row (a tag per
    word). Subclasses set `label_column`.

    Its own arguments; the rest are TaskData's (passed on as **kwargs).

    Args:
        label_names: the label map for user files (None: the dataset's ClassLabel names, or the sorted
            distinct labels of the training split).
    """

    label_column: str
    first_label: str | None = None  # put first in an inferred map (NER's "O")

    def __init__(self, label_names: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._label_names = label_names

    @property
    def label_names(self) -> list[str]:
        if self._label_names is None:
            any_split = next(iter(self.splits.values()))
            feature = any_split.features.get(self.label_column)
            feature = getattr(feature, "feature", feature)  # the labels of a list column
            if isinstance(feature, datasets.ClassLabel):
                self._label_names = list(feature.names)
            else:
                values = self.splits.get("train", any_split)[self.label_column]
                flat = [v for row in values for v in row] if values and isinstance(values[0], list) else values
                self._label_names = infer_label_names(flat, first=self.first_label)
            if len(self._label_names) < 2:
                raise ValueError(f"the label map is {self._label_names} (column {self.label_column!r}): a model "
                                 "needs at least two labels to choose from; check the data, or pass data.label_names")
        return self._label_names

    def label_index(self, label) -> int | None:
        """The index of a label (a name, or an index) in this data's label map; None when it is not in it."""
        return label_index(label, self.label_names)

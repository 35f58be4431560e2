"""Python code to fine-tune on, and HumanEval-style problems to evaluate on.

Training text, in order of precedence:
    data_files.train   the user's CSV/JSON/JSONL with a `text_column` of code
    code_files         glob patterns of the user's .py files
    corpus_sources     a code subset of the pretraining corpus (default: "stdlib", the interpreter's standard
                       library, decontaminated against the evaluation sets), at most max_train_documents files
Each file is cut at line boundaries into chunks that fit the model's budget; the chunks are the examples
(prompt empty: the loss covers the whole chunk). Without a validation file, 10% of the chunks are held out.

Test problems (columns task_id, prompt, test, entry_point; HumanEval's `check(candidate)` convention):
`dataset` "openai_humaneval" or "mbpp", or data_files.test. Rows are kept as they are: a problem without
tests is reported and skipped by the evaluation, never a crash of the whole run.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

import datasets
import torch

from backbone.data.corpus import iter_corpus_documents
from backbone.data.loaders import load_benchmark
from tasks.data import load_user_files
from tasks.generative import GenerativeData

PROBLEM_COLUMNS = ("task_id", "prompt", "test", "entry_point")


def chunk_lines(tokenizer, text: str, max_tokens: int) -> list[str]:
    """Cut a file at line boundaries into pieces of at most ~max_tokens tokens (a longer line is its own piece)."""
    lines = text.splitlines(keepends=True)
    counts = [len(ids) for ids in tokenizer.encode_batch(lines)] if lines else []
    chunks, current, size = [], [], 0
    for line, n in zip(lines, counts):
        if current and size + n > max_tokens:
            chunks.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        chunks.append("".join(current))
    return [c for c in chunks if c.strip()]


class CodeData(GenerativeData):
    """Its own arguments; the rest are TaskData's (passed on as **kwargs).

    Args:
        corpus_sources: corpus sources of code to train on (backbone.data.corpus; "stdlib" is Python's).
        max_train_documents: at most this many files from each corpus source.
        code_files: glob patterns of the user's .py files to train on (instead of the corpus).
        text_column: the code column of data_files.train / validation.
    """

    def __init__(self, dataset: str = "openai_humaneval", batch_size: int = 8, corpus_sources: list[str] | None = None,
                 max_train_documents: int = 100, code_files: list[str] | None = None, text_column: str = "text",
                 **kwargs):
        super().__init__(dataset=dataset, batch_size=batch_size, **kwargs)
        self.corpus_sources = list(corpus_sources) if corpus_sources is not None else ["stdlib"]
        self.max_train_documents, self.code_files, self.text_column = max_train_documents, code_files, text_column
        self._stage: str | None = None

    def prepare_data(self) -> None:
        if not (self.data_files or {}).get("test"):
            load_benchmark(self.dataset, source=self.source)

    def setup(self, stage: str | None = None) -> None:
        self._stage = stage
        super().setup(stage)

    # --- loading ---------------------------------------------------------------------------------------
    def _budget(self) -> int:
        """Tokens per chunk: the model's max_length or context (read before the backbone is built), minus
        room for the bos and eos around a chunk."""
        block = json.loads((Path(self.backbone) / "config.json").read_text()).get("block_size", 256)
        module = self.trainer.lightning_module if self.trainer is not None else None
        max_length = getattr(getattr(module, "hparams", None), "max_length", None) if module is not None else None
        return min(block, max_length or block) - 2

    def _training_texts(self, files: datasets.DatasetDict) -> dict[str, list[str]]:
        if "train" in files:
            return {split: list(files[split][self.text_column]) for split in ("train", "validation") if split in files}
        if self.code_files:
            paths = sorted({p for pattern in self.code_files for p in glob.glob(pattern, recursive=True)})
            if not paths:
                raise FileNotFoundError(f"data.code_files {self.code_files} match no file")
            return {"train": [Path(p).read_text(encoding="utf-8", errors="replace") for p in paths]}
        if not self.corpus_sources or not self.max_train_documents:
            return {}
        return {"train": list(iter_corpus_documents(self.corpus_sources, max_docs_per_source=self.max_train_documents,
                                                     workers=1))}

    def load(self) -> datasets.DatasetDict:
        files = load_user_files(self.data_files) if self.data_files else datasets.DatasetDict()
        parts = {}
        if "test" in files:
            parts["test"] = files["test"]
        else:
            bench = load_benchmark(self.dataset, source=self.source)
            parts["test"] = bench["test"] if "test" in bench else next(iter(bench.values()))
        if self._stage in (None, "fit", "validate"):  # test only needs the problems
            budget = self._budget()
            for split, texts in self._training_texts(files).items():
                chunks = [c for text in texts if isinstance(text, str)
                          for c in chunk_lines(self.tokenizer, text, budget)]
                parts[split] = datasets.Dataset.from_dict({"text": chunks})
        return datasets.DatasetDict(parts)

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        if split != "test":
            if not len(dataset):
                raise ValueError(f"{split} split has no code to train on (check data.corpus_sources / code_files)")
            return
        missing = [c for c in PROBLEM_COLUMNS if c not in dataset.column_names]
        if missing:
            raise ValueError(f"test problems lack columns {missing} (columns: {dataset.column_names}); "
                             f"each problem needs {list(PROBLEM_COLUMNS)}")

    def collate(self, rows: list[dict]) -> dict:
        if rows and "entry_point" in rows[0]:  # evaluation problems: kept as rows, decoded by the module
            ids = torch.zeros(len(rows), 1, dtype=torch.long)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.full_like(ids, -100),
                    "rows": rows}
        return super().collate(rows)

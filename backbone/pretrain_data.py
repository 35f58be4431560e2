"""The pretraining LightningDataModule: a packed, memory-mapped token corpus cut into block_size windows.

prepare_data (once, rank 0): train or load the tokenizer, tokenize and pack the corpus, fetch PTB.
setup (every process): memory-map the packed tokens.
train windows start at offsets drawn from a seeded generator; sample i is always the same window, and a
resumed run starts at sample global_step x samples_per_step, so it sees exactly the data it would have seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from backbone.data.corpus import build_corpus, iter_corpus_documents
from backbone.data.loaders import load_benchmark
from backbone.perplexity import collate_windows, ptb_word_count, token_windows
from backbone.tokenizer import Tokenizer

TRAIN_FILE, VAL_FILE, MANIFEST_FILE = "train.bin", "val.bin", "manifest.json"


class RandomWindows(Dataset):
    """Sample i = tokens[o_i : o_i + block_size + 1] with o_i drawn once from a seeded generator."""

    def __init__(self, tokens: np.ndarray, block_size: int, num_samples: int, seed: int):
        if len(tokens) <= block_size + 1:
            raise ValueError(f"corpus of {len(tokens)} tokens is shorter than one window of {block_size + 1}")
        rng = np.random.default_rng(seed)
        self.offsets = rng.integers(0, len(tokens) - block_size, size=num_samples)  # o + block_size + 1 <= len
        self.tokens, self.block_size = tokens, block_size

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> torch.Tensor:
        o = int(self.offsets[i])
        return torch.from_numpy(self.tokens[o : o + self.block_size + 1].astype(np.int64))


class FromCurrentStep(Sampler[int]):
    """Window indices from the first one the current optimizer step has not seen, read each time an epoch
    starts. So a resumed run continues exactly where training left off, and so does the epoch Lightning
    begins after resuming a run that was stopped early (by a time budget, say): an offset fixed when the
    loader was built would replay windows there."""

    def __init__(self, num_samples: int, first_unseen: Callable[[], int]):
        self.num_samples, self.first_unseen = num_samples, first_unseen

    def __iter__(self) -> Iterator[int]:
        return iter(range(min(self.first_unseen(), self.num_samples), self.num_samples))

    def __len__(self) -> int:
        return max(0, self.num_samples - self.first_unseen())


class ConsecutiveWindows(Dataset):
    """Non-overlapping windows from the start of a token array (the validation slice)."""

    def __init__(self, tokens: np.ndarray, block_size: int, max_windows: int | None = None):
        n = (len(tokens) - 1) // block_size
        self.n = min(n, max_windows) if max_windows else n
        self.tokens, self.block_size = tokens, block_size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        o = i * self.block_size
        return torch.from_numpy(self.tokens[o : o + self.block_size + 1].astype(np.int64))


def pack_documents(tokenizer: Tokenizer, documents: list[str], out_dir: Path, val_fraction: float = 0.05,
                   min_val_tokens: int = 0) -> dict:
    """Tokenize documents (eos after each) into one stream; its last val_fraction (at least min_val_tokens)
    is the validation slice. Writes train.bin / val.bin (renamed into place) and manifest.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32
    ids = np.asarray([i for doc in tokenizer.encode_batch(documents) for i in [*doc, tokenizer.eos_id]], dtype=dtype)
    n_val = min(len(ids) // 2, max(int(len(ids) * val_fraction), min_val_tokens))
    for name, part in ((TRAIN_FILE, ids[: len(ids) - n_val]), (VAL_FILE, ids[len(ids) - n_val :])):
        part.tofile(out_dir / (name + ".tmp"))
        (out_dir / (name + ".tmp")).replace(out_dir / name)
    manifest = {"dtype": np.dtype(dtype).name, "documents": len(documents),
                "tokens": {"train": len(ids) - n_val, "val": n_val}}
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_text_documents(paths: list[str]) -> list[str]:
    """User text files: each file split into documents at blank lines."""
    docs = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        docs.extend(d.strip() for d in text.split("\n\n") if d.strip())
    if not docs:
        raise ValueError(f"no text found in {paths}")
    return docs


class PretrainData(L.LightningDataModule):
    """Packed corpus for causal-LM pretraining.

    Args:
        tokenizer: "gpt2" (the 50,257-token GPT-2 BPE), "bpe-N" (a byte-level BPE of N tokens trained on the
            corpus), or a folder holding a tokenizer.json.
        corpus_dir: where tokenizers and packed corpora are cached (one sub-folder per tokenizer).
        text_files: use these plain-text files instead of the offline corpus (documents split at blank lines).
        max_docs_per_source: cap on documents read from each corpus source (small runs build faster).
        block_size: context length (linked from the model's preset and overrides).
        batch_size: windows per optimizer step per device.
        seed: fixes the window order.
        val_windows: validation windows of block_size tokens (None: all of the held-out slice).
        ptb: evaluate PTB test perplexity (`test` stage and the exported metrics).
        ptb_max_lines: score only the first lines of PTB test (None: all 3,761).
        num_workers: DataLoader workers.
        tokenizer_train_chars: characters of corpus text a "bpe-N" tokenizer is trained on.
    """

    def __init__(
        self,
        tokenizer: str = "bpe-8192",
        corpus_dir: str = "artifacts/corpus",
        text_files: list[str] | None = None,
        max_docs_per_source: int | None = None,
        block_size: int = 256,
        batch_size: int = 16,
        seed: int = 1337,
        val_windows: int | None = 64,
        ptb: bool = True,
        ptb_max_lines: int | None = None,
        num_workers: int = 0,
        tokenizer_train_chars: int = 30_000_000,
    ):
        super().__init__()
        self.tokenizer_spec, self.text_files = tokenizer, text_files
        self.corpus_dir, self.max_docs_per_source = Path(corpus_dir), max_docs_per_source
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed
        self.val_windows, self.ptb, self.ptb_max_lines, self.num_workers = val_windows, ptb, ptb_max_lines, num_workers
        self.tokenizer_train_chars = tokenizer_train_chars
        self.tokenizer: Tokenizer | None = None
        self.train_tokens: np.ndarray | None = None  # the packed corpus's token ids (memory-mapped by setup)
        self.val_tokens: np.ndarray | None = None
        self.test_words = 0

    @property
    def data_dir(self) -> Path:
        name = Path(self.tokenizer_spec).name if Path(self.tokenizer_spec).is_dir() else self.tokenizer_spec
        corpus = ("files-" + _digest(self.text_files) if self.text_files
                  else f"offline-{self.max_docs_per_source or 'all'}")
        return self.corpus_dir / corpus / name

    # --- preparation -----------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if (self.data_dir / MANIFEST_FILE).is_file():
            return
        documents = self._documents()
        tokenizer = self._make_tokenizer(documents)
        tokenizer.save(self.data_dir)
        if self.text_files:
            pack_documents(tokenizer, documents, self.data_dir, min_val_tokens=4 * (self.block_size + 1))
        else:
            build_corpus(tokenizer, self.data_dir, max_docs_per_source=self.max_docs_per_source)
        if self.ptb:
            self.ptb_test_text()  # fetch now, not in the middle of fit

    def _documents(self) -> list[str] | None:
        if self.text_files:
            return read_text_documents(self.text_files)
        return None  # the offline corpus streams its own documents

    def _make_tokenizer(self, documents: list[str] | None) -> Tokenizer:
        spec = self.tokenizer_spec
        if spec == "gpt2":
            return Tokenizer.gpt2()
        if Path(spec).is_dir():
            return Tokenizer.from_pretrained(spec)
        if not spec.startswith("bpe-") or not spec[4:].isdigit():
            raise ValueError(f"tokenizer must be 'gpt2', 'bpe-N' or a folder with tokenizer.json, got {spec!r}")
        if documents is None:
            documents = iter_corpus_documents(max_docs_per_source=self.max_docs_per_source, split="train")
        return Tokenizer.train(_first_chars(documents, self.tokenizer_train_chars), vocab_size=int(spec[4:]))

    def setup(self, stage: str | None = None) -> None:
        manifest_path = self.data_dir / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} is missing: prepare_data did not run (or failed)")
        manifest = json.loads(manifest_path.read_text())
        self.tokenizer = Tokenizer.from_pretrained(self.data_dir)
        dtype = np.dtype(manifest["dtype"])
        self.train_tokens = np.memmap(self.data_dir / TRAIN_FILE, dtype=dtype, mode="r")
        self.val_tokens = np.memmap(self.data_dir / VAL_FILE, dtype=dtype, mode="r")

    def ptb_test_text(self) -> str | None:
        if not self.ptb:
            return None
        lines = [t for t in load_benchmark("ptb")["test"]["sentence"] if t.strip()]
        return "\n".join(line.strip() for line in lines[: self.ptb_max_lines])

    # --- loaders ---------------------------------------------------------------------------------------
    def samples_per_step(self, trainer) -> int:
        return self.batch_size * trainer.world_size * trainer.accumulate_grad_batches

    def tokens_per_step(self, trainer) -> int:
        return self.samples_per_step(trainer) * self.block_size

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        if trainer.max_steps > 0:
            num_samples = trainer.max_steps * self.samples_per_step(trainer)
        else:  # epoch-based: one epoch = as many windows as fit in the corpus
            num_samples = len(self.train_tokens) // self.block_size
        dataset = RandomWindows(self.train_tokens, self.block_size, num_samples, self.seed)
        per_step = self.samples_per_step(trainer)
        steps_per_epoch = max(1, num_samples // per_step)  # step mode: one epoch of max_steps steps
        sampler = FromCurrentStep(num_samples, lambda: (trainer.global_step % steps_per_epoch) * per_step)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          drop_last=True)

    def val_dataloader(self) -> DataLoader:
        dataset = ConsecutiveWindows(self.val_tokens, self.block_size, self.val_windows)
        if len(dataset) == 0:
            raise ValueError(f"the validation slice ({len(self.val_tokens)} tokens) is shorter than one window")
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        text = self.ptb_test_text()
        if text is None:
            raise ValueError("test scores PTB perplexity; set data.ptb=true")
        self.test_words = ptb_word_count(text)
        windows = token_windows(self.tokenizer.encode(text), self.block_size)
        return DataLoader(windows, batch_size=self.batch_size,
                          collate_fn=partial(collate_windows, pad_id=self.tokenizer.pad_id))


def _first_chars(documents, limit: int):
    """Documents until `limit` characters: a BPE's merges settle long before the whole corpus is read."""
    total = 0
    for doc in documents:
        yield doc
        total += len(doc)
        if total >= limit:
            return


def _digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(Path(p).resolve()).encode())
        h.update(str(Path(p).stat().st_mtime_ns).encode())
    return h.hexdigest()[:12]

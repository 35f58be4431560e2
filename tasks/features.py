"""The feature cache: a frozen backbone's hidden states, computed once per split and memory-mapped.

A frozen backbone gives every example the same features in every epoch, whatever the head, its learning
rate or the number of epochs. So they are computed once (no gradients, the trainer's precision, batches of
similar length so little is spent on padding), stored in fp16 and read back for every epoch and every
head that is trained on them.

What is stored per example is the task's *units* (TaskModule.units): the hidden state of every token (QA
windows), of each word's last sub-token (NER: the only sub-token that has seen the whole word), or pooled
vectors (classification: mean and last token). Each unit keeps the chosen layers separately, (nL, C), so
a learned mix of them (tasks.adapters.FrozenLayers.mix) trains on the cache. An adapter that trains the top
blocks (tasks.adapters.TopBlocks, `caches_tokens`) stores every token's state entering its first block
instead: each step runs the blocks on them, and the task picks its units from their output.

Layout of one split's cache, in a folder named by a digest of everything the features depend on (backbone
weights, dataset fingerprint, split, layers, echo, unit rule, max length, precision):
    values.f16    (units, nL, C) float16, all sequences' units end to end, in length order
    index.npz     seq_start, seq_units (one per sequence); row_seqs (one per row + 1): a row's sequences are
                  row_seqs[r]:row_seqs[r + 1] (a QA question can have several context windows)
    meta.json     what the digest covers, and how long extraction took

A task module holds its splits' caches in a FeatureCaches, which builds them when a stage starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from tqdm.auto import tqdm

from backbone.data.download import cache_dir
from backbone.precision import set_inference_precision
from tasks.data import row_lengths

BATCH_TOKENS = 4096  # padded tokens per extraction batch: big enough for fast matmuls, small for memory
_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) within the process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def rows_digest(rows) -> str:
    """sha256 of a split's content (every row, in order): the same rows name the same cache, whichever file or
    split they came from, and a changed row names a new one."""
    h = hashlib.sha256()
    if hasattr(rows, "iter"):  # a datasets.Dataset: read in batches
        for batch in rows.iter(batch_size=1000):
            h.update(json.dumps(batch, sort_keys=True, default=str).encode())
    else:
        for row in rows:
            h.update(json.dumps(row, sort_keys=True, default=str).encode())
    return h.hexdigest()


def features_dir() -> Path:
    return cache_dir() / "features"


class FeatureCache:
    """One split's cached units. gather(rows) -> (S, U, nL, C) float32 and a (S, U) unit mask, for the
    sequences of those rows in order (what the data module's collate would have produced)."""

    def __init__(self, directory: Path, built: bool = False):
        self.built = built  # computed by this process (False: found on disk)
        index = np.load(directory / "index.npz")
        self.seq_start, self.seq_units, self.row_seqs = index["seq_start"], index["seq_units"], index["row_seqs"]
        meta = json.loads((directory / "meta.json").read_text())
        self.meta = meta
        shape = (int(self.seq_units.sum()), meta["n_layers"], meta["n_embd"])
        self.values = (np.memmap(directory / "values.f16", dtype=np.float16, mode="r", shape=shape)
                       if shape[0] else np.zeros(shape, np.float16))

    def __len__(self) -> int:
        return len(self.row_seqs) - 1

    def gather(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = [s for r in rows for s in range(self.row_seqs[r], self.row_seqs[r + 1])]
        longest = max((int(self.seq_units[s]) for s in seqs), default=0)
        out = torch.zeros(len(seqs), max(longest, 1), *self.values.shape[1:])
        mask = torch.zeros(len(seqs), max(longest, 1), dtype=torch.bool)
        for i, s in enumerate(seqs):
            start, n = int(self.seq_start[s]), int(self.seq_units[s])
            out[i, :n] = torch.from_numpy(np.asarray(self.values[start : start + n], dtype=np.float32))
            mask[i, :n] = True
        return out, mask

    def gather_tokens(self, rows: list[int], attention_mask: torch.Tensor) -> torch.Tensor:
        """(S, T, nL, C) the cached token states of these rows, laid out as their right-padded batch is
        (attention_mask (S, T)); a mismatch (other rows, left padding, other lengths) is a clear error."""
        cached, real = self.gather(rows)  # (S, U, nL, C), U <= T
        lengths = attention_mask.sum(1).cpu()
        right_padded = torch.equal(attention_mask.bool().cpu(), torch.arange(attention_mask.size(1))[None]
                                   < lengths[:, None])
        if not right_padded or len(cached) != len(lengths) or not torch.equal(real.sum(1), lengths):
            raise ValueError(f"the cached states of rows {list(rows)[:5]} do not match the batch: cached token "
                             "states need right-padded rows of the same sequences")
        pad = attention_mask.size(1) - cached.size(1)
        return torch.nn.functional.pad(cached, (0, 0, 0, 0, 0, pad)).to(attention_mask.device)


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def build_cache(key_parts: dict, rows, collate, states, units, sequence_rows, desc: str,
                root: Path | None = None) -> FeatureCache:
    """The cache for one split, built unless it exists.

    rows: the split (a sequence of examples); collate(list of rows) -> batch (input_ids, attention_mask, ...);
    states(batch) -> (S, T, nL, C) hidden states of the batch's sequences; units(states, batch) -> ((S, U, nL,
    C), (S, U) mask); sequence_rows(batch) -> the row (within the batch) of each sequence. Rows are batched by
    token count after sorting them by length.
    """
    directory = (root or features_dir()) / cache_key(key_parts)
    if (directory / "meta.json").is_file():
        return FeatureCache(directory)
    tmp = directory.with_name(f"{directory.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_cache(tmp, key_parts, rows, collate, states, units, sequence_rows, desc)
    except BaseException:  # an interrupted build leaves nothing behind (a QA split's states are gigabytes)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        tmp.rename(directory)  # atomic: no half-written cache ever has the real name
    except OSError:  # another process finished the same cache first
        shutil.rmtree(tmp, ignore_errors=True)
    return FeatureCache(directory, built=True)


def _write_cache(tmp: Path, key_parts: dict, rows, collate, states, units, sequence_rows, desc: str) -> None:
    start = time.perf_counter()
    lengths = row_lengths(rows, collate)  # tokenizing is cheap next to the backbone
    order = sorted(range(len(rows)), key=lambda i: lengths[i])
    seq_units: dict[int, list[int]] = {}
    seq_start: dict[int, list[int]] = {}
    written, real, padded, shape = 0, 0, 0, None
    bar = tqdm(total=sum(lengths), desc=desc, unit=" tok", unit_scale=True, leave=False)
    with (tmp / "values.f16").open("wb") as out:
        i = 0
        while i < len(order):
            j = i + 1  # grow the batch while its padded size stays within BATCH_TOKENS (lengths ascend)
            while j < len(order) and (j - i + 1) * lengths[order[j]] <= BATCH_TOKENS:
                j += 1
            chosen = order[i:j]
            batch = collate([rows[r] for r in chosen])
            hidden = states(batch)  # (S, T, nL, C)
            unit_states, unit_mask = units(hidden, batch)
            shape = tuple(unit_states.shape[2:])
            seq_of_row = sequence_rows(batch)
            for s in range(unit_states.size(0)):
                n = int(unit_mask[s].sum())
                out.write(unit_states[s, :n].to(torch.float16).numpy().tobytes())
                row = chosen[seq_of_row[s]]
                seq_start.setdefault(row, []).append(written)
                seq_units.setdefault(row, []).append(n)
                written += n
            real += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
            bar.update(sum(lengths[r] for r in chosen))
            i = j
    bar.close()
    row_seqs, flat_start, flat_units = [0], [], []
    for r in range(len(rows)):
        flat_start += seq_start.get(r, [])
        flat_units += seq_units.get(r, [])
        row_seqs.append(len(flat_units))
    np.savez(tmp / "index.npz", seq_start=np.array(flat_start, np.int64), seq_units=np.array(flat_units, np.int64),
             row_seqs=np.array(row_seqs, np.int64))
    seconds = time.perf_counter() - start
    n_layers, n_embd = shape if shape else (key_parts.get("n_layers", 1), key_parts.get("n_embd", 1))
    meta = {**key_parts, "n_layers": n_layers, "n_embd": n_embd, "rows": len(rows), "units": written,
            "tokens": real, "padding_share": round(1 - real / max(padded, 1), 4), "seconds": round(seconds, 1),
            "tokens_per_s": round(real / max(seconds, 1e-9), 1)}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


class FeatureCaches:
    """The feature caches a task module reads, one per split (FrozenLayers with cache=True): built, or found on
    disk, when a stage starts; in a multi-process run rank 0 builds them while the others wait, then they find
    them on disk.

    The module supplies what the units depend on: its adapter (layers, echo), its units rule and
    sequence_rows (TaskModule.units, .sequence_rows) and feature_spec() (what else the units depend on)."""

    def __init__(self):
        self.by_split: dict[str, FeatureCache] = {}

    def get(self, split: str | None) -> FeatureCache | None:
        return self.by_split.get(split)

    def prepare(self, module, splits: list[str]) -> None:
        """Compute (or find) the caches of these splits of the module's data module."""
        datamodule = module.attached_datamodule
        if not module.adapter.cache or datamodule is None:
            return
        trainer = module.trainer
        folder = Path(module.hparams.backbone)  # weights, shape and tokenizer: what the features depend on
        backbone_digest = [file_digest(folder / name)
                           for name in ("model.safetensors", "config.json", "tokenizer.json")]
        precision = str(trainer.precision)
        previous = module.backbone.autocast_dtype
        set_inference_precision(module.backbone, precision)
        strategy = trainer.strategy
        try:
            if strategy.world_size > 1 and not trainer.is_global_zero:
                strategy.barrier("features")  # rank 0 builds the caches; the others then find them on disk
            for split in splits:
                if split in self.by_split or split not in datamodule.splits:
                    continue
                rows = datamodule.splits[split]
                same = [c for other, c in self.by_split.items() if datamodule.splits.get(other) is rows]
                if same:  # the same rows under another split name (SQuAD's dev set: validation and test)
                    self.by_split[split] = same[0]
                    continue
                # the rows' content names them: two splits of the same rows (SQuAD's dev set, used for
                # validation and test) share one cache
                key = {"backbone": backbone_digest, "data": rows_digest(rows),
                       **module.adapter.cache_key(), "precision": precision, **module.feature_spec()}
                self.by_split[split] = module_cache(module, key, rows, datamodule.collate, f"features {split}")
                meta = self.by_split[split].meta
                rank_zero_info(f"feature cache {split}: {meta['rows']} rows, {meta['tokens']} tokens, "
                               f"{meta['tokens_per_s']} tokens/s when built ({meta['seconds']} s)")
            if strategy.world_size > 1 and trainer.is_global_zero:
                strategy.barrier("features")
        finally:
            module.backbone.autocast_dtype = previous

    def report(self) -> dict:
        """Extraction facts of the caches in use (the benchmark shows them); `built`: computed in this run, not
        found on disk (a split whose rows another split already had is found)."""
        return {split: {**{k: c.meta[k] for k in ("rows", "tokens", "seconds", "tokens_per_s", "padding_share")},
                        "built": c.built} for split, c in self.by_split.items()}


def module_cache(module, key_parts: dict, rows, collate, desc: str, root: Path | None = None) -> FeatureCache:
    """build_cache with a task module's own states (its adapter's cached_states, on the CPU), units (every
    real token where the adapter caches tokens) and sequence_rows."""

    def states(batch: dict) -> torch.Tensor:
        device = next(module.backbone.parameters()).device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        segments = batch["segment_ids"].to(device) if "segment_ids" in batch else None
        return module.adapter.cached_states(module.backbone, ids, mask, segments).cpu()

    def units(hidden: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if module.adapter.caches_tokens:  # right-padded rows: a row's real tokens come first
            return hidden, batch["attention_mask"].bool().cpu()
        return tuple(t.cpu() for t in module.units(hidden, batch))

    return build_cache(key_parts, rows, collate, states, units, module.sequence_rows, desc, root)

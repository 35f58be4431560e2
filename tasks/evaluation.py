"""What a test run leaves behind: the scored examples, their bootstrap intervals, and the files written.

A test epoch keeps, beyond the torchmetrics, one JSON-safe record per scored example (what it was, what the
model said, the gold) and per-example statistics for the bootstrap intervals (tasks.confidence). At its end
the scores, the intervals and how they were computed go to test_metrics.json, the records to
test_predictions.jsonl; after a fit that exported the task, the scores are copied beside it, so the demo shows
them with the model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from tasks.artifact import METRICS_FILE, PREDICTIONS_FILE, TASK_FILE
from tasks.confidence import bootstrap_interval


class ScoredExamples:
    """One test epoch's scored examples: `records` (test_predictions.jsonl, and the example count reported
    next to the scores) and `stats`, {statistics name: one row of floats per example} for the intervals."""

    def __init__(self):
        self.records: list[dict] = []
        self.stats: dict[str, list[list[float]]] = {}

    def clear(self) -> None:
        """Forget an earlier test epoch's examples."""
        self.records = []
        self.stats = {}

    def add_records(self, records: list[dict]) -> None:
        self.records.extend(records)

    def add_stats(self, name: str, rows) -> None:
        self.stats.setdefault(name, []).extend([list(map(float, r)) for r in rows])

    def intervals(self, interval_metrics: dict, world_size: int = 1) -> dict[str, list[float]]:
        """95% bootstrap interval of every metric of interval_metrics ({metric: (statistics name, f(sums) ->
        score)}) that has statistics: {metric: [low, high]}. With several processes, each scored a shard: the
        rows of all of them are resampled together."""
        stats = self.stats
        if world_size > 1:
            shards = [None] * world_size
            torch.distributed.all_gather_object(shards, stats)
            stats = {name: [row for shard in shards for row in shard.get(name, [])] for name in stats}
        out = {}
        for metric, (name, fn) in interval_metrics.items():
            rows = stats.get(name)
            if rows:
                out[metric] = [round(v, 6) for v in bootstrap_interval(np.array(rows), fn)]
        return out


def write_test_files(out_dir: Path, scores: dict, records: list[dict], is_global_zero: bool) -> None:
    """test_metrics.json (the scores, shown in the log too) and test_predictions.jsonl in out_dir; only the
    first process writes."""
    written = json.dumps(scores, indent=2)
    rank_zero_info(written)
    out_dir.mkdir(parents=True, exist_ok=True)
    if is_global_zero:
        (out_dir / METRICS_FILE).write_text(written + "\n")
        (out_dir / PREDICTIONS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
        rank_zero_info(f"test metrics and predictions written to {out_dir / METRICS_FILE}, {PREDICTIONS_FILE}")


def join_test_scores(trainer, model) -> None:
    """Copy the test scores just written beside the exported task (the model that was just trained and
    tested): the demo shows them with the model."""
    export_dir = model.hparams.get("export_dir")
    scores = Path(trainer.log_dir or trainer.default_root_dir) / METRICS_FILE
    if export_dir and trainer.is_global_zero and scores.is_file() and (Path(export_dir) / TASK_FILE).is_file():
        shutil.copyfile(scores, Path(export_dir) / METRICS_FILE)
        rank_zero_info(f"test scores joined the task folder: {Path(export_dir) / METRICS_FILE}")

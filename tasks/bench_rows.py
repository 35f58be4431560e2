"""What a bench run records: a row per method and metric (its scores, recipe and stamp), the run's facts, and the
results files they are merged into (results.json, .csv, .md, .png). tasks/bench.py runs the stages."""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from tasks.bench_table import markdown_table, plot, write_csv
from tasks.catalog import TASKS
from tasks.recipes import PROJECT_DIR, Method
from tasks.spec import TaskSpec

OUT_DIR = Path("benchmarks")
REFERENCE_DIR = PROJECT_DIR / "benchmarks"  # the committed table a run is compared with, from any directory


def anchors(task: str, metric: str, benchmark: str | None = None) -> list[dict]:
    """The task's published anchors for a metric on a benchmark, as table rows hold them (a task no longer
    registered: none)."""
    spec = TASKS.get(task)
    return [dataclasses.asdict(a) for a in (spec.anchors if spec else ())
            if a.metric == metric and a.benchmark in (None, benchmark)]


def rows_for(spec: TaskSpec, method: Method, result: dict, baselines: dict, backbone: str,
             preset: str | None = None, stamp: dict | None = None) -> list[dict]:
    """The table's rows of one method, a row per metric: the test score with its interval, the validation
    score the headline chooses by, the recipe (files and their hash) and the run's stamp (machine, torch,
    date, commit)."""
    rows = []
    for metric in spec.metrics:
        interval = result["intervals"].get(metric)
        rows.append({
            "task": spec.name, "dataset": result["benchmark"], "split": spec.split, "n_eval": result["n_eval"],
            "backbone": backbone, "method": method.name, "preset": preset, "ablation": method.ablation,
            "metric": metric, "score": _pct(result["metrics"].get(f"test/{metric}"), spec),
            "ci95": [_pct(v, spec) for v in interval] if interval else None,
            "val_score": _pct(result["validation"].get(f"val/{metric}"), spec), "n_val": result["n_val"],
            "baselines": {name: _pct(vals.get(metric), spec) for name, vals in baselines.items() if metric in vals},
            "anchors": anchors(spec.name, metric, result["benchmark"]),
            "recipe": result["recipe"], "run": stamp or {},
            "settings": {"backbone": backbone, "n_train": result["n_train"], **result["settings"]},
            "spent": result["spent"], "scoring": result["scoring"], "wall_s": result["wall_s"],
        })
    return rows


def _pct(value, spec: TaskSpec) -> float | None:
    """Scores in the table are percentages (0-100) like the published anchors."""
    if value is None:
        return None
    return round(float(value) * (100 if spec.fraction else 1), 2)


def write_results(rows: list[dict], meta: dict, out_dir: Path = OUT_DIR) -> None:
    """Merge this run into out_dir's table: rows of other backbones and methods stay, so they compare side by
    side (a fresh run folder starts empty, so it holds exactly this run)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    replaced = {(r["backbone"], r["task"], r["method"]) for r in rows}
    kept = [r for r in old.get("rows", []) if (r["backbone"], r["task"], r["method"]) not in replaced]
    for r in kept:  # anchors are the spec's, not a measurement: kept rows show the current ones
        r["anchors"] = anchors(r["task"], r["metric"], r["dataset"])
    live = {(r["backbone"], r["task"]) for r in kept}
    runs = [m for m in old.get("runs", []) if m.get("started") != meta["started"]
            and any((m["backbone"], t) in live for t in m["tasks"])] + [meta]
    order = {task: i for i, task in enumerate(TASKS)}
    rank = {task: {m: i for i, m in enumerate(spec.metrics)} for task, spec in TASKS.items()}  # preference order
    rows = sorted(kept + rows, key=lambda r: (order.get(r["task"], len(order)),
                                              rank.get(r["task"], {}).get(r["metric"], len(rank)), r["metric"],
                                              r["backbone"], -(r["score"] or 0)))
    path.write_text(json.dumps({"runs": runs, "rows": rows}, indent=2) + "\n")
    write_csv(rows, out_dir / "results.csv")
    (out_dir / "results.md").write_text(markdown_table(rows, runs, read_json(REFERENCE_DIR / "overlap.json")))
    plot(rows, out_dir / "results.png")


def run_meta(preset_name: str, backbone: str, tasks: list[str], start: float, notes: list[str],
             machine: dict | None = None, backbone_spent: dict | None = None, started: str = "",
             commit: str | None = None) -> dict:
    """The facts of one run; `started` (its wall-clock start) tells its meta apart from earlier runs'. `commit`:
    the code's, taken when the run began (later the run's own results files differ from it)."""
    return {"preset": preset_name, "backbone": backbone, "tasks": list(tasks), "commit": commit or git_commit(),
            "wall_s": round(time.perf_counter() - start, 1),
            "started": started or time.strftime("%Y-%m-%dT%H:%M:%S"),
            "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                        f"{'CUDA' if torch.cuda.is_available() else 'CPU only'}",
            "machine": machine or {}, "backbone_spent": backbone_spent or {},
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "notes": list(notes)}


def run_stamp(machine: dict) -> dict:
    """What every row of a run carries: the machine (CPU, capability, threads, the precision auto chose),
    torch, the date and the code's commit."""
    return {"machine": f"{machine.get('cpu')}, {machine.get('capability')}, {machine.get('threads')} threads",
            "precision": machine.get("precision"), "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
            "commit": git_commit()}


def git_commit() -> str | None:
    """The checkout's commit, with "+changes" when files differ from it; None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PROJECT_DIR,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}

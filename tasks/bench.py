"""`gptsuite bench --preset smoke|quick|full`: every task fine-tuned and scored, one comparison table.

For each task: fit with the preset's budget, test on the benchmark split, and, where the task has one, the
prompt path (few-shot label words, no training) on the same examples; then the simple baselines on the same
split. Results land in benchmarks/results.{md,csv,json} and a bar chart, with the settings that produced them.
"""

from __future__ import annotations

import csv
import importlib
import json
import platform
import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from backbone.budget import TimeBudget
from backbone.precision import AUTO, machine_summary
from tasks.base import LIGHTNINGCLI_ARGS_WARNING
from tasks.bench_specs import ANCHORS, PRESETS, TASKS

OUT_DIR = Path("benchmarks")
RUNS_DIR = Path("runs/bench")  # each task's logs and test predictions
PROJECT_DIR = Path(__file__).resolve().parents[1]


def project_file(path: str) -> str:
    """A config the project ships, found from any working directory (a local file of that name wins)."""
    return path if Path(path).is_file() else str(PROJECT_DIR / path)


def budget_args(seconds: float | None) -> list[str]:
    """The flags that put a fit on a wall-clock budget (appended to the config's own callbacks)."""
    if seconds is None:
        return []
    return ["--trainer.callbacks+=backbone.budget.TimeBudget", f"--trainer.callbacks.seconds={seconds:g}"]


def precision_args(precision: str) -> list[str]:
    return [] if precision == AUTO else ["--trainer.precision", precision]


def ensure_backbone(preset: dict, backbone: str | None, precision: str = AUTO,
                    budget_s: float | None = None) -> tuple[str, dict]:
    """The backbone folder to use (the one given, an existing artifact, or a fresh pretraining run within
    `budget_s` seconds of training) and what making it spent (empty when it existed)."""
    if backbone:
        if not (Path(backbone) / "config.json").is_file():
            raise FileNotFoundError(f"--backbone {backbone} has no config.json")
        return backbone, {}
    directory = Path(preset["backbone"])
    if (directory / "config.json").is_file():
        return str(directory), {}
    start = time.perf_counter()
    if preset.get("import") == "smollm2":
        from backbone.gguf import import_smollm2

        import_smollm2(directory)
        return str(directory), {"made_by": "import smollm2", "wall_s": round(time.perf_counter() - start, 1)}
    from backbone.lit import cli_main

    cli = cli_main(["fit", "--config", project_file(preset["pretrain_config"]), "--trainer.enable_progress_bar", "false",
                    *precision_args(precision), *budget_args(budget_s), *preset.get("pretrain_args", [])])
    metrics = json.loads((directory / "metrics.json").read_text())
    return str(directory), {"made_by": f"pretrain {preset['pretrain_config']}", "precision": str(cli.trainer.precision),
                            "steps": metrics["steps"], "tokens": metrics["tokens_seen"],
                            "train_s": metrics["train_seconds"], "wall_s": round(time.perf_counter() - start, 1),
                            **_budget_report(cli.trainer),
                            **{k: round(metrics[k], 2) for k in ("val/loss", "ptb_test/ppl_token") if k in metrics}}


def _budget_report(trainer) -> dict:
    """What the TimeBudget callback of a fit planned and did (empty without one)."""
    for callback in trainer.callbacks:
        if isinstance(callback, TimeBudget) and callback.report:
            r = callback.report
            return {"budget_s": r["budget_s"], "planned_steps": r["planned_steps"],
                    "stopped_by_budget": bool(r.get("stopped_by_budget")) or r["fitted_steps"] < r["planned_steps"]}
    return {}


def task_args(task: str, spec: dict, budget: dict, backbone: str, run_dir: Path, extra: list[str]) -> list[str]:
    args = ["--config", project_file(spec["config"]), "--model.backbone", backbone,
            "--trainer.default_root_dir", str(run_dir / task), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
            "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "null"]
    for key, value in budget.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return args + extra


def run_task(task: str, spec: dict, budget: dict, backbone: str, run_dir: Path, precision: str = AUTO,
             budget_s: float | None = None) -> dict:
    """Fit (within budget_s seconds) + test through the task's own LightningCLI, in this process; then the
    prompt path. `spent` says what the fit used: optimizer steps, real tokens, seconds."""
    module = importlib.import_module(spec["module"])
    start = time.perf_counter()
    fits = budget.get("trainer.max_epochs", 1) > 0
    cli = module.cli_main(task_args(task, spec, budget, backbone, run_dir,
                                    precision_args(precision) + (budget_args(budget_s) if fits else [])), run=False)
    if fits:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_s = time.perf_counter() - start
    head = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    spent = {"steps": cli.trainer.global_step, "train_tokens": cli.model.train_tokens, "fit_s": round(fit_s, 1),
             "test_s": round(time.perf_counter() - start - fit_s, 1), **_budget_report(cli.trainer)}
    scoring = {"ours: head": _plain(cli.model.test_report())}
    prompt = {}
    if spec.get("prompt_args"):
        p_cli = module.cli_main(task_args(f"{task}-prompt", spec, {**budget, "trainer.max_epochs": 0}, backbone,
                                          run_dir, spec["prompt_args"] + precision_args(precision)), run=False)
        prompt = p_cli.trainer.test(p_cli.model, datamodule=p_cli.datamodule, verbose=False)[0]
        scoring["ours: prompt"] = _plain(p_cli.model.test_report())
    baselines, notes = {}, []
    try:
        baselines = spec["baselines"](cli.datamodule) if spec.get("baselines") else {}
    except Exception as err:  # a broken baseline must not hide our own scores
        notes.append(f"{task} baselines failed: {type(err).__name__}: {err}")
    return {"head": head, "prompt": prompt, "baselines": baselines, "wall_s": round(time.perf_counter() - start, 1),
            "n_eval": int(head.get("test/examples", 0)), "n_train": len(cli.datamodule.splits.get("train", [])),
            "settings": {"seed": cli.config.get("seed_everything"), "precision": str(cli.trainer.precision), **budget},
            "spent": spent, "scoring": scoring, "notes": notes}


def _plain(report: dict) -> dict:
    """A task's test report with the "test/" prefix dropped (the table says which split)."""
    return {key.removeprefix("test/"): value for key, value in report.items()}


def rows_for(task: str, spec: dict, result: dict, backbone: str) -> list[dict]:
    rows = []
    for metric in spec["metrics"]:
        key = f"test/{metric}"
        rows.append({
            "task": task, "dataset": spec["dataset"], "split": spec["split"], "n_eval": result["n_eval"], "backbone": backbone,
            "metric": metric, "ours_head": _pct(result["head"].get(key), spec), "ours_prompt": _pct(result["prompt"].get(key), spec),
            "baselines": {name: _pct(vals.get(metric), spec) for name, vals in result["baselines"].items() if metric in vals},
            "anchors": [a for a in ANCHORS.get(task, []) if a["metric"] == metric],
            "settings": {"backbone": backbone, "adapter": result["scoring"]["ours: head"]["adapter"],
                         "n_train": result["n_train"], **result["settings"]},
            "spent": result["spent"], "scoring": result["scoring"], "wall_s": result["wall_s"],
        })
    return rows


def _pct(value, spec) -> float | None:
    """Scores in the table are percentages (0-100) like the published anchors."""
    if value is None:
        return None
    return round(float(value) * (100 if spec.get("fraction", True) else 1), 2)


def write_results(rows: list[dict], meta: dict, out_dir: Path = OUT_DIR) -> None:
    """Merge this run into the table: rows of other backbones stay, so backbones compare side by side."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    if isinstance(old.get("runs"), dict):  # the first format kept one run per backbone
        old["runs"] = list(old["runs"].values())
    replaced = {(meta["backbone"], task) for task in meta["tasks"]}  # a partial run keeps its other tasks' rows
    kept = [r for r in old.get("rows", []) if (r.get("backbone"), r["task"]) not in replaced]
    live = {(r["backbone"], r["task"]) for r in kept}
    runs = [m for m in old.get("runs", []) if any((m["backbone"], t) in live for t in m["tasks"])] + [meta]
    order = {task: i for i, task in enumerate(TASKS)}
    rows = sorted(kept + rows, key=lambda r: (order.get(r["task"], 99), r["metric"] != TASKS[r["task"]]["metrics"][0],
                                              r["metric"], r["backbone"]))
    path.write_text(json.dumps({"runs": runs, "rows": rows}, indent=2) + "\n")
    with (out_dir / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "dataset", "split", "n_eval", "metric", "backbone", "ours_head", "ours_prompt",
                         "baselines", "anchors", "settings"])
        for r in rows:
            writer.writerow([r["task"], r["dataset"], r["split"], r["n_eval"], r["metric"], r["backbone"], r["ours_head"],
                             r["ours_prompt"], json.dumps(r["baselines"]), json.dumps(r["anchors"]), json.dumps(r["settings"])])
    (out_dir / "results.md").write_text(markdown_table(rows, runs))
    plot(rows, out_dir / "results.png")


def markdown_table(rows: list[dict], runs: list[dict]) -> str:
    fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
    lines = ["# gptsuite benchmark", "",
             "Scores in %. Ours and the baselines are scored on the same examples; published anchors are full-data "
             "results of much larger models, for orientation only.", ""]
    for i, meta in enumerate(runs):
        redone = [t for t in meta["tasks"]  # by a later run of the same backbone: its rows are the later run's
                  if any(m["backbone"] == meta["backbone"] and t in m["tasks"] for m in runs[i + 1 :])]
        lines.append(f"- `{meta['backbone']}`, preset {meta['preset']} ({', '.join(meta['tasks'])}): {meta['hardware']}, "
                     f"torch {meta['torch']}, {meta['wall_s'] / 60:.1f} min, {meta['date']}"
                     + (f"; machine: {_facts(meta['machine'])}" if meta.get("machine") else "")
                     + (f"; backbone made in this run: {_facts(meta['backbone_spent'])}" if meta.get("backbone_spent") else "")
                     + "".join(f"; {n}" for n in meta.get("notes", []))
                     + (f"; {', '.join(redone)}: see the later run" if redone else ""))
    lines += ["", "| task | dataset (split, n) | metric | backbone | ours: head | ours: prompt | baselines | published anchors | settings |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = "; ".join(f"{k} {fmt(v)}" for k, v in r["baselines"].items()) or "–"
        anchors = "; ".join(f"{a['name']} {a['value']} ({a['source']})" for a in r["anchors"]) or "–"
        settings = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["settings"].items()
                             if k not in ("backbone", "model.adapter"))  # the adapter's class name is shown once
        spent = f"; spent: {_facts(r['spent'])}" if r.get("spent") else ""
        lines.append(f"| {r['task']} | {r['dataset']} ({r['split']}, {r['n_eval']}) | {r['metric']} | {Path(r['backbone']).name} | "
                     f"{fmt(r['ours_head'])} | {fmt(r['ours_prompt'])} | {base} | {anchors} | {settings}{spent}; {r['wall_s']:.0f} s |")
    scored = {(r["task"], r["backbone"]): r["scoring"] for r in rows if r.get("scoring")}  # older rows have none
    if scored:
        lines += ["", "How the scores were computed (adapter, decoding, metric modes, sacreBLEU signatures):", ""]
    for (task, backbone), scoring in scored.items():
        for path, report in scoring.items():
            facts = "; ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in report.items())
            lines.append(f"- {task}, {Path(backbone).name}, {path}: {facts or '–'}")
    return "\n".join(lines) + "\n"


def _facts(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    several = len({r["backbone"] for r in rows}) > 1
    labels = [f"{r['task']}\n{r['metric']}" + (f"\n{Path(r['backbone']).name}" if several else "") for r in rows]
    series = {"ours (head)": [r["ours_head"] or 0 for r in rows], "ours (prompt)": [r["ours_prompt"] or 0 for r in rows],
              "best baseline": [max([v for v in r["baselines"].values() if v is not None], default=0) for r in rows]}
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(rows)), 4.5))
    width = 0.27
    for i, (name, values) in enumerate(series.items()):
        ax.bar([x + (i - 1) * width for x in range(len(rows))], values, width, label=name)
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("score (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_meta(preset_name: str, backbone: str, tasks: list[str], start: float, notes: list[str],
             machine: dict | None = None, backbone_spent: dict | None = None) -> dict:
    return {"preset": preset_name, "backbone": backbone, "tasks": list(tasks), "wall_s": round(time.perf_counter() - start, 1),
            "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                        f"{'CUDA' if torch.cuda.is_available() else 'CPU only'}",
            "machine": machine or {}, "backbone_spent": backbone_spent or {},
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "notes": list(notes)}


def stage_budgets(preset: dict, time_budget_min: float | None) -> dict[str, float]:
    """Each stage's training budget in seconds: the preset's, scaled so they add up to the share of
    `time_budget_min` the preset gives training (evaluation and data preparation are not budgeted)."""
    budgets = dict(preset.get("budget_s", {}))
    if time_budget_min is None:
        return budgets
    if not budgets:
        raise ValueError("this preset trains by steps and epochs only: --time-budget needs a preset with budgets "
                         f"({', '.join(name for name, p in PRESETS.items() if p.get('budget_s'))})")
    if time_budget_min <= 0:
        raise ValueError(f"--time-budget must be positive minutes, got {time_budget_min}")
    scale = time_budget_min / preset["minutes"]
    return {stage: seconds * scale for stage, seconds in budgets.items()}


def stage_weights(preset: dict, tasks: list[str], backbone: str | None) -> dict[str, float]:
    """Each stage's share of the progress bar: its expected seconds, so the ETA is not one stage's pace."""
    expected = preset.get("stage_seconds", {})
    listed = [seconds for stage, seconds in expected.items() if stage != "backbone"]
    default = sum(listed) / len(listed) if listed else 1.0
    weights = {task: float(expected.get(task, default)) for task in tasks}
    exists = (Path(backbone or preset["backbone"]) / "config.json").is_file()
    weights["backbone"] = 0.0 if exists else float(expected.get("backbone", default))
    return weights


def run_bench(preset_name: str = "quick", tasks: list[str] | None = None, backbone: str | None = None,
              out_dir: Path = OUT_DIR, precision: str = AUTO, time_budget_min: float | None = None,
              runs_dir: Path = RUNS_DIR) -> list[dict]:
    if preset_name not in PRESETS:
        raise ValueError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}")
    preset = PRESETS[preset_name]
    chosen = tasks or list(preset["tasks"])
    unknown = sorted(set(chosen) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose from {sorted(TASKS)}")
    warnings.filterwarnings("ignore", message=LIGHTNINGCLI_ARGS_WARNING)
    start = time.perf_counter()
    budgets = stage_budgets(preset, time_budget_min)
    machine = machine_summary(precision)  # measured once per machine, then cached
    weights = stage_weights(preset, chosen, backbone)
    stages = tqdm(total=sum(weights.values()), bar_format="{desc}{percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")
    stages.set_description(f"bench {preset_name}: backbone")
    backbone, backbone_spent = ensure_backbone(preset, backbone, precision, budgets.get("backbone"))
    stages.update(weights["backbone"])
    rows, notes, done = [], [], []
    for task in chosen:
        stages.set_description(f"bench {preset_name}: {task}")
        budget = preset["tasks"].get(task, {})
        try:
            result = run_task(task, TASKS[task], budget, backbone, runs_dir / preset_name, precision,
                              budgets.get(task))
            rows += rows_for(task, TASKS[task], result, backbone)
            notes += result["notes"]
        except Exception as err:  # one task's failure is reported in the table, not fatal to the rest
            notes.append(f"{task} failed: {type(err).__name__}: {err}")
            tqdm.write(f"[bench] {task} failed: {err}")
        done.append(task)
        # written after every task, so a crash or an interrupt loses at most the task in progress
        write_results(rows, run_meta(preset_name, backbone, done, start, notes, machine, backbone_spent), out_dir)
        stages.update(weights[task])
    stages.close()
    print((out_dir / "results.md").read_text())
    return rows

"""The benchmark's outputs as people read them: a headline table, a row per (task, backbone, method), and a
chart with one small panel per task (published anchors drawn as lines)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tasks.catalog import TASKS


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.1f}"


def _score(row: dict) -> str:
    interval = row.get("ci95")
    return _fmt(row["score"]) + (f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else "")


def _facts(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def panels(rows: list[dict]) -> list[tuple[str, str]]:
    """(task, benchmark) of every benchmark the rows score, tasks in registry order (a task may score several:
    codegen's HumanEval and MBPP, translation's two directions)."""
    out = []
    for task, spec in TASKS.items():
        for r in rows:
            if (r["task"] == task and r["metric"] in spec.metrics and r["score"] is not None
                    and (task, r["dataset"]) not in out):
                out.append((task, r["dataset"]))
    return out


def by_backbone(rows: list[dict], task: str, benchmark: str, ablations: bool = True) -> dict[str, list[dict]]:
    """A benchmark's scored rows per backbone, on that backbone's main metric (TaskSpec.main_metric of its methods
    that are not ablations, so the plot and the headline agree; of its ablations where it has nothing else)."""
    live = [r for r in rows if r["task"] == task and r["dataset"] == benchmark and r["score"] is not None]
    out = {}
    for backbone in dict.fromkeys(Path(r["backbone"]).name for r in live):
        mine = [r for r in live if Path(r["backbone"]).name == backbone]
        candidates = [r for r in mine if not r.get("ablation")] or mine
        metric = TASKS[task].main_metric(r["metric"] for r in candidates)
        shown = [r for r in mine if r["metric"] == metric and (ablations or not r.get("ablation"))]
        if shown:
            out[backbone] = shown
    return out


def chosen_rows(rows: list[dict]) -> list[tuple[dict, str]]:
    """The headline's rows: per benchmark and backbone, on the main metric (TaskSpec.main_metric), the method chosen by
    its validation score, never its test score, with how it was chosen. Ablations never compete. Where no
    candidate has a validation score, a lone candidate is shown as its preset's only method; several without
    validation scores are not chosen between."""
    out = []
    for task, benchmark in panels(rows):
        for candidates in by_backbone(rows, task, benchmark, ablations=False).values():
            validated = [r for r in candidates if r.get("val_score") is not None]
            if validated:
                best = max(validated, key=lambda r: r["val_score"])
                out.append((best, f"best validation score of {len(validated)}" if len(validated) > 1
                            else "only method, validated"))
            elif len(candidates) == 1:
                out.append((candidates[0], "only method, no validation score"))
    return out


def headline(rows: list[dict]) -> list[str]:
    """Per task, benchmark and backbone, on the main metric: the method chosen on validation, its validation
    and test scores, the best baseline on the same examples and the best published anchor."""
    lines = ["| task (benchmark) | metric | backbone | method (how chosen) | validation | test [95% CI], n | "
             "best baseline | best published anchor |", "|---|---|---|---|---|---|---|---|"]
    for row, how in chosen_rows(rows):
        baselines = [(v, name) for name, v in row["baselines"].items() if v is not None]
        base = max(baselines, default=None)
        anchor = max(((a["value"], a) for a in row["anchors"]), default=None, key=lambda x: x[0])
        lines.append(f"| {row['task']} ({row['dataset']}) | {row['metric']} | {Path(row['backbone']).name} | "
                     f"{row['method']} ({how}) | {_fmt(row.get('val_score'))} | **{_score(row)}**, {row['n_eval']} | "
                     + (f"{base[0]:.1f} ({base[1]})" if base else "–") + " | "
                     + (f"{anchor[1]['value']} ({anchor[1]['name']}, {anchor[1]['source']})" if anchor else "–") + " |")
    return lines


def overlap_lines(report: dict) -> list[str]:
    """What `gptsuite data overlap --json` found left between training and evaluation, one line per benchmark."""
    lines = []
    for name, entry in report.items():
        if "splits" not in entry:
            continue
        left = [f"{split} {v['exact']} exact, {v['near']} near of {v['n']}" for split, v in entry["splits"].items()
                if v["exact"] or v["near"]]
        lines.append(f"- {name}: " + ("; ".join(left) if left else "none left")
                     + f" (training rows: {entry['train']})")
    return lines


def markdown_table(rows: list[dict], runs: list[dict], overlap: dict | None = None) -> str:
    lines = ["# gptsuite benchmark", "",
             "Scores in %, with 95% bootstrap confidence intervals over the test examples (1,000 resamples) where "
             "the scores have per-example statistics. Ours and the baselines are scored on the same examples; "
             "published anchors are full-data results from the literature, for orientation.", "",
             "## Headline", "", *headline(rows), ""]
    if overlap:
        lines += ["## Overlap between training and evaluation", "",
                  "Training rows that repeat an evaluation row, exactly or as a near twin (word 8-gram Jaccard >= "
                  "0.8), are dropped before any split is used (PTB, pretraining's perplexity set, stays as "
                  "published); what `gptsuite data overlap` finds left "
                  "(benchmarks/overlap.json):", "", *overlap_lines(overlap), ""]
    lines += ["## Runs", ""]
    for i, meta in enumerate(runs):
        redone = [t for t in meta["tasks"]  # by a later run of the same backbone: its rows are the later run's
                  if any(m["backbone"] == meta["backbone"] and t in m["tasks"] for m in runs[i + 1 :])]
        lines.append(f"- `{meta['backbone']}`, preset {meta['preset']} ({', '.join(meta['tasks'])}): "
                     f"{meta['hardware']}, torch {meta['torch']}, {meta['wall_s'] / 60:.1f} min, {meta['date']}"
                     + (f"; machine: {_facts(meta['machine'])}" if meta.get("machine") else "")
                     + (f"; backbone made in this run: {_facts(meta['backbone_spent'])}"
                        if meta.get("backbone_spent") else "")
                     + "".join(f"; {n}" for n in meta.get("notes", []))
                     + (f"; {', '.join(redone)}: see the later run" if redone else ""))
    lines += ["", "## Every method", "",
              "| task | dataset (split, n) | metric | backbone | method | validation | test [95% CI] | baselines "
              "| published anchors | recipe, settings |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = "; ".join(f"{k} {_fmt(v)}" for k, v in r["baselines"].items()) or "–"
        anchors = "; ".join(f"{a['name']} {a['value']} ({a['source']})" for a in r["anchors"]) or "–"
        settings = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["settings"].items() if k != "backbone")
        spent = f"; spent: {_facts(r['spent'])}" if r.get("spent") else ""
        recipe = " + ".join(f"`{f}`" for f in (r.get("recipe") or {}).get("files", [])) or "–"
        method = r["method"] + (" (ablation)" if r.get("ablation") else "")
        lines.append(f"| {r['task']} | {r['dataset']} ({r['split']}, {r['n_eval']}) | {r['metric']} | "
                     f"{Path(r['backbone']).name} | {method} | {_fmt(r.get('val_score'))} | {_score(r)} | {base} | "
                     f"{anchors} | {recipe}; {settings}{spent}; {r['wall_s']:.0f} s |")
    scored = {(r["task"], r["backbone"], r["method"]): r["scoring"] for r in rows if r.get("scoring")}
    if scored:
        lines += ["", "How the scores were computed (adapter, head, decoding, metric modes, sacreBLEU signatures):", ""]
    for (task, backbone, method), report in scored.items():
        facts = "; ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in report.items())
        lines.append(f"- {task}, {Path(backbone).name}, {method}: {facts or '–'}")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "dataset", "split", "n_eval", "metric", "backbone", "method", "score", "ci95_low",
                         "ci95_high", "baselines", "anchors", "settings"])
        for r in rows:
            low, high = r["ci95"] or (None, None)
            writer.writerow([r["task"], r["dataset"], r["split"], r["n_eval"], r["metric"], r["backbone"], r["method"],
                             r["score"], low, high, json.dumps(r["baselines"]), json.dumps(r["anchors"]),
                             json.dumps(r["settings"])])


def plot(rows: list[dict], path: Path) -> None:
    """One panel per task on its main metric: a bar per (backbone, method) with its interval, the best
    baseline hatched, published anchors as dashed lines."""
    import matplotlib  # why: a heavy import that only the plot needs

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # why: after choosing the Agg backend (no display)

    tasks = panels(rows)
    if not tasks:
        return
    cols = min(3, len(tasks))
    n_rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.6 * cols, 3.6 * n_rows), squeeze=False)
    for ax, (task, benchmark) in zip(axes.flat, tasks):
        mine = [r for shown in by_backbone(rows, task, benchmark).values() for r in shown]
        metrics = list(dict.fromkeys(r["metric"] for r in mine))
        labels = [f"{r['method']}\n{Path(r['backbone']).name}" + (f", {r['metric']}" if len(metrics) > 1 else "")
                  for r in mine]
        values = [r["score"] for r in mine]
        errors = [[max(0, v - r["ci95"][0]) if r.get("ci95") else 0 for v, r in zip(values, mine)],
                  [max(0, r["ci95"][1] - v) if r.get("ci95") else 0 for v, r in zip(values, mine)]]
        ax.barh(range(len(mine)), values, xerr=errors, color="tab:blue", capsize=2)
        baselines = {}
        for r in mine:
            for name, v in r["baselines"].items():
                if v is not None:
                    baselines[name] = max(v, baselines.get(name, v))
        if baselines:
            name, value = max(baselines.items(), key=lambda kv: kv[1])
            ax.barh(len(mine), value, color="lightgray", hatch="//")
            labels.append(f"baseline: {name}")
        for anchor in {a["name"]: a for r in mine for a in r["anchors"]}.values():
            ax.axvline(anchor["value"], color="tab:red", linestyle="--", linewidth=1)
            ax.text(anchor["value"], -0.6, f" {anchor['name']}", color="tab:red", fontsize=6, rotation=90, va="top")
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.invert_yaxis()
        ax.set_xlim(0, 100)
        ax.set_title(f"{task}: {' / '.join(metrics)} (%)" + (f"\n{benchmark}" if benchmark != TASKS[task].benchmark
                                                             else ""),
                     fontsize=9)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_of(meta: dict | None) -> str:
    """A run's machine in a few words: the measured CPU facts where the run recorded them, else its hardware
    line (older runs), else "–"."""
    if not meta:
        return "–"
    m = meta.get("machine") or {}
    facts = [str(m[k]) for k in ("cpu", "capability") if m.get(k)]
    facts += [f"{m['threads']} threads"] if m.get("threads") else []
    facts += [str(m["precision"])] if m.get("precision") else []
    return ", ".join(facts) or meta.get("hardware") or "–"


def reference_run(reference: dict, row: dict) -> dict | None:
    """The run a reference row came from: the latest run of its backbone that ran its task (a later run's rows
    replace an earlier one's, as write_results merges them)."""
    return next((m for m in reversed(reference.get("runs", []))
                 if m.get("backbone") == row["backbone"] and row["task"] in m.get("tasks", [])), None)


def reference_row(reference: dict, row: dict) -> dict | None:
    """The reference table's row for the same task, method, metric and backbone, the backbone matched by its
    folder's name (a user's path to the same backbone differs from the one the reference was made with)."""
    key = (row["task"], row["method"], row["metric"], Path(row["backbone"]).name)
    return next((r for r in reference.get("rows", [])
                 if (r["task"], r["method"], r["metric"], Path(r["backbone"]).name) == key), None)


def comparison(rows: list[dict], reference: dict, source: str, meta: dict | None = None) -> str:
    """A run's scores beside the reference table's: a row per (task, method, metric) of the run, "–" where the
    reference has no such row."""
    backbones = ", ".join(dict.fromkeys(Path(r["backbone"]).name for r in rows)) or "–"
    lines = ["# Your run against the reference", "",
             f"Backbone {backbones}; your machine: {machine_of(meta)}. Reference: `{source}`, rows of the same "
             "task, method and backbone name. Scores in %, with 95% confidence intervals.", "",
             "| task | method | metric | yours [95% CI] | reference [95% CI] | reference machine |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ref = reference_row(reference, r)
        theirs, machine = (_score(ref), machine_of(reference_run(reference, ref))) if ref else ("–", "–")
        lines.append(f"| {r['task']} | {r['method']} | {r['metric']} | {_score(r)} | {theirs} | {machine} |")
    return "\n".join(lines) + "\n"

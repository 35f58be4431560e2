"""`gptsuite bench --preset NAME`: every task fine-tuned and scored, one comparison table.

A preset is a file, configs/bench/<preset>.yaml (tasks/recipes.py): a backbone, and for each task its methods,
each the task's YAML with a method file on top (configs/tasks/<task>/<method>.yaml), and each stage's time budget.
For each method: fit within the budget, score the validation split (what the headline chooses by) and the test
split; then the task's simple baselines on the same test examples. Results land in a fresh run folder,
runs/bench/<preset>-<YYYYmmdd-HHMMSS>/results.{md,csv,json,png}, every row with its recipe files and their hash
and the machine, torch, date and commit, and comparison.md sets them beside the committed reference table
(benchmarks/results.json); `--out benchmarks` merges the run into that reference instead. The rows, the run's
record and the results files are tasks/bench_rows.py's.
"""

from __future__ import annotations

import inspect
import json
import shutil
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from backbone.budget import TimeBudget
from backbone.gguf import import_smollm2
from backbone.llama_cpp_engine import GPTSUITE
from backbone.precision import AUTO, machine_summary
from backbone.pretrain_cli import cli_main
from tasks.bench_rows import (
    OUT_DIR,
    REFERENCE_DIR,
    read_json,
    rows_for,
    run_meta,
    run_stamp,
    write_results,
)
from tasks.bench_table import chosen_rows, comparison
from tasks.catalog import TASKS, get
from tasks.evaluation import join_test_scores
from tasks.recipes import Method, Preset, load_preset, project_path, recipe_files, recipe_hash
from tasks.runs import given_out, out_folder
from tasks.spec import TaskSpec, load_object
from tasks.task_cli import LIGHTNINGCLI_ARGS_WARNING, run_cli

RUNS_DIR = Path("runs/bench")  # each task's logs and test predictions


def budget_args(seconds: float | None) -> list[str]:
    """The flags that put a fit on a wall-clock budget (appended to the config's own callbacks)."""
    if seconds is None:
        return []
    return ["--trainer.callbacks+=backbone.budget.TimeBudget", f"--trainer.callbacks.seconds={seconds:g}"]


def precision_args(precision: str) -> list[str]:
    return [] if precision == AUTO else ["--trainer.precision", precision]


def ensure_backbone(preset: Preset, backbone: str | None, precision: str = AUTO,
                    budget_s: float | None = None) -> tuple[str, dict]:
    """The backbone folder to use (the one given, an existing artifact, or a fresh pretraining run within
    `budget_s` seconds of training) and what making it spent (empty when it existed)."""
    if backbone:
        if not (Path(backbone) / "config.json").is_file():
            raise FileNotFoundError(f"--backbone {backbone} has no config.json")
        return backbone, {}
    directory = Path(preset.backbone)
    if (directory / "config.json").is_file():
        return str(directory), {}
    start = time.perf_counter()
    if preset.import_ == "smollm2":
        import_smollm2(directory)
        return str(directory), {"made_by": "import smollm2", "wall_s": round(time.perf_counter() - start, 1)}
    if not preset.pretrain_config:
        raise FileNotFoundError(f"backbone {directory} not found, and {preset.path} says neither pretrain_config nor "
                                "import to make it")
    cli = cli_main(["fit", "--config", str(project_path(preset.pretrain_config)),
                    "--trainer.enable_progress_bar", "false", *precision_args(precision), *budget_args(budget_s)])
    metrics = json.loads((directory / "metrics.json").read_text())
    return str(directory), {"made_by": f"pretrain {preset.pretrain_config}", "precision": str(cli.trainer.precision),
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


def task_args(spec: TaskSpec, method: Method, backbone: str, run_dir: Path, extra: list[str]) -> list[str]:
    """The task CLI's arguments for one method: the task's YAML, the method's on top, then what the bench
    itself decides (the backbone, where logs go, no checkpoints or progress bars)."""
    return ["--config", str(project_path(spec.config)), "--config", str(project_path(method.config)),
            "--model.backbone", backbone, "--trainer.default_root_dir", str(run_dir),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.logger", "false", "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "null",
            *extra]


def decoding_args(module: str, quantize: str, engine: str = GPTSUITE, compile_steps: bool = False) -> list[str]:
    """--model.quantize, --model.engine and --model.compile_steps for a module class (dotted path) that decodes
    (it takes them), nothing for the others."""
    cls = load_object(module)  # the arguments may be declared by a base class (GenerativeTask)

    def takes(name: str) -> bool:
        return any(name in inspect.signature(c.__init__).parameters for c in cls.__mro__ if "__init__" in vars(c))

    return ([*(["--model.quantize", quantize] if takes("quantize") else []),
             *(["--model.engine", engine] if takes("engine") and engine != GPTSUITE else []),
             *(["--model.compile_steps", "true"] if takes("compile_steps") and compile_steps else [])])


def run_task(spec: TaskSpec, method: Method, backbone: str, run_dir: Path, precision: str = AUTO,
             budget_s: float | None = None, quantize: str = AUTO,
             stage_export: bool = False, engine: str = GPTSUITE, compile_steps: bool = False
             ) -> tuple[dict, object]:
    """One method of a task (its logs in run_dir): fit (within budget_s seconds, unless max_epochs is 0),
    then score the validation split (what the headline chooses by) and the test split, through the task's
    own LightningCLI in this process. -> (result, its data module, for the baselines). `spent` says what
    the fit used: optimizer steps, real tokens, seconds, and the feature extraction when features are cached.
    An ablation exports nothing; with `stage_export` (one of several candidates) the model is exported to
    run_dir/export, and result["export"] = (that folder, the task's own export folder) for publish_chosen."""
    start = time.perf_counter()
    configured = configured_model(spec, method)
    extra = decoding_args(configured["class_path"], quantize, engine, compile_steps) + precision_args(precision)
    if method.ablation:  # the task's folder (what the demo and the applications read) keeps a headline method
        extra += ["--model.export_dir", "null"]
    elif stage_export:
        extra += ["--model.export_dir", str(run_dir / "export")]
    cli = run_cli(spec.name, task_args(spec, method, backbone, run_dir, extra), run=False)
    exported = cli.model.hparams.get("export_dir")
    fits = cli.trainer.max_epochs != 0
    if fits and budget_s is not None:
        cli.trainer.callbacks.append(TimeBudget(budget_s))
    if fits:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_s = time.perf_counter() - start
    budget = _budget_report(cli.trainer)  # before validating: the budget callback hears that loop too
    validation = validation_scores(cli)
    val_s = time.perf_counter() - start - fit_s
    metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    if fits:
        join_test_scores(cli.trainer, cli.model)
    spent = {"steps": cli.trainer.global_step, "train_tokens": cli.model.train_tokens, "fit_s": round(fit_s, 1),
             "validate_s": round(val_s, 1), "test_s": round(time.perf_counter() - start - fit_s - val_s, 1),
             **budget}
    features = cli.model.feature_caches.report()
    if features:
        spent["features"] = features
    if fits and not features:  # the backbone ran in every step: its training speed and padding waste
        spent["tokens_per_s"] = round(cli.model.train_tokens / max(fit_s, 1e-9), 1)
        spent["padding_share"] = cli.model.padding_share
    if decoded := decoded_with(cli.model):
        spent["decoded_with"] = decoded
    n_train = cli.datamodule.n_examples("train") if fits else 0
    files = recipe_files(spec.config, method)
    result = {"benchmark": method.benchmark or spec.benchmark, "metrics": metrics, "validation": validation,
              "intervals": cli.model.test_intervals(), "wall_s": round(time.perf_counter() - start, 1),
              "n_eval": int(metrics.get("test/examples", 0)), "n_train": n_train,
              "n_val": cli.datamodule.n_examples("validation"),
              "recipe": {"files": files, "sha256": recipe_hash(files)},
              "settings": {"seed": cli.config.get("seed_everything"), "precision": str(cli.trainer.precision),
                           **({"args": " ".join(extra)} if extra else {})},
              "spent": spent, "scoring": _plain(cli.model.test_report())}
    if stage_export and fits and exported:
        result["export"] = (str(run_dir / "export"), configured.get("export_dir"))
    return result, cli.datamodule


def decoded_with(module) -> str | None:
    """What a module's decoding ran on (auto's choice resolved), for the row's `spent`; None where it did not
    decode (only the modules that decode have an inference model)."""
    decoding = getattr(module, "inference_model", None)
    if decoding is None or decoding.mode is None:
        return None
    if decoding.engine != GPTSUITE:  # the mode names the engine and its GGUF's type ("llama.cpp q4_1")
        return f"engine {decoding.mode}"
    return (f"quantize {decoding.mode}" + (f", steps of {decoding.float_rows}+ rows unquantised"
                                           if decoding.float_rows else "")
            + (", steps compiled" if decoding.compile_steps else ""))


def configured_model(spec: TaskSpec, method: Method) -> dict:
    """The model settings the task's YAML and the method's overlay give (the last one given wins): its class
    ("class_path": the spec's default module unless a file names one of its variants) and arguments (a file that names
    the class nests them under init_args), e.g. the export folder."""
    settings = {"class_path": spec.default_module}
    for path in (spec.config, method.config):
        model = (yaml.safe_load(project_path(path).read_text()) or {}).get("model") or {}
        settings.update({k: v for k, v in model.items() if k != "init_args"}, **(model.get("init_args") or {}))
    return settings


def publish_chosen(task_rows: list[dict], results: dict[str, dict], table_rows: list[dict] | None = None) -> str | None:
    """Of several candidates of one task, the one chosen on validation (tasks.bench_table.chosen_rows, as the
    headline chooses) becomes the task's exported model: its staged folder replaces the task's export folder.
    table_rows: the task's rows of the whole table this run writes into (earlier runs' kept rows too): where
    the table's choice is a method of another run (`--methods` ran a subset), nothing of this run is published.
    -> the chosen method's name (None: nothing was chosen, the export folder is left as it was)."""
    backbones = {row["backbone"] for row in task_rows}
    chosen = [row["method"] for row, _ in chosen_rows(task_rows if table_rows is None else table_rows)
              if row["backbone"] in backbones and "export" in results.get(row["method"], {})]
    if not chosen:
        return None
    staged, target = results[chosen[0]]["export"]
    if target:  # relative to the working directory, as the task's own command would write it
        target = Path(target)
        tmp = target.with_name(target.name + ".incoming")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(staged, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)  # the task folder is never half-written
    return chosen[0]


def validation_scores(cli) -> dict:
    """The method's scores on the validation split ({"val/<metric>": value}); {} when the data has none. A
    method whose fit skipped validation (limit_val_batches: 0, to spare the frozen features of a split nothing
    read during training) is scored on all of it here."""
    cli.datamodule.setup("validate")  # loads the splits once (setup is idempotent): is there a validation one?
    if not cli.datamodule.n_examples("validation"):
        return {}
    if not cli.trainer.limit_val_batches:  # a cap the config set stays; only "none during fit" is lifted
        cli.trainer.limit_val_batches = 1.0
    if "score_validation" in cli.model.hparams:  # a task whose validation during fit skips its costly metric
        cli.model.hparams.score_validation = True  # (translation's BLEU decodes): the choice needs it
    scores = cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    return {key: float(value) for key, value in scores.items() if key.startswith("val/")}


def _plain(report: dict) -> dict:
    """A task's test report with the "test/" prefix dropped (the table says which split)."""
    return {key.removeprefix("test/"): value for key, value in report.items()}


def run_baselines(spec: TaskSpec, datamodule) -> tuple[dict, list[str]]:
    try:
        return spec.score_baselines(datamodule), []
    except Exception as err:  # a broken baseline must not hide our own scores
        return {}, [f"{spec.name} baselines failed: {type(err).__name__}: {err}"]


def _slug(method: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in method.lower()).strip("-") or "method"


def stage_budgets(preset: Preset, time_budget_min: float | None) -> dict[str, float]:
    """Each stage's training budget in seconds: the preset's, scaled so they add up to the share of
    `time_budget_min` the preset gives training (evaluation and data preparation are not budgeted)."""
    budgets = {task: plan.budget_s for task, plan in preset.tasks.items() if plan.budget_s is not None}
    if preset.budget_s is not None:
        budgets["backbone"] = preset.budget_s
    if time_budget_min is None:
        return budgets
    if not budgets or not preset.minutes:
        raise ValueError(f"preset {preset.name!r} trains by steps and epochs only: --time-budget needs a preset with "
                         "budgets and minutes")
    if time_budget_min <= 0:
        raise ValueError(f"--time-budget must be positive minutes, got {time_budget_min}")
    scale = time_budget_min / preset.minutes
    return {stage: seconds * scale for stage, seconds in budgets.items()}


def stage_weights(preset: Preset, tasks: list[str], backbone: str | None,
                  reference_dir: Path = REFERENCE_DIR) -> dict[str, float]:
    """Each stage's share of the progress bar: its seconds in the reference table's last run of the same
    methods (what it took, not a typed guess), so the ETA is not one stage's pace. A stage the table has
    never seen counts as the mean of the others."""
    reference = read_json(reference_dir / "results.json")
    took: dict[tuple[str, str], float] = {}
    for row in reference.get("rows", []):
        if row.get("wall_s") is not None:
            took[(row["task"], row["method"])] = float(row["wall_s"])
    expected = {task: sum(took[(task, m)] for m in preset.tasks[task].methods if (task, m) in took)
                for task in tasks}
    known = [v for v in expected.values() if v > 0]
    default = sum(known) / len(known) if known else 60.0
    weights = {task: expected[task] or default for task in tasks}
    exists = (Path(backbone or preset.backbone) / "config.json").is_file()
    made = [m.get("backbone_spent", {}).get("wall_s") for m in reference.get("runs", [])
            if Path(m.get("backbone", "")).name == Path(preset.backbone).name]
    made = [w for w in made if w]
    weights["backbone"] = 0.0 if exists else float(made[-1] if made else preset.budget_s or default)
    return weights


def run_bench(preset_name: str = "quick", tasks: list[str] | None = None, backbone: str | None = None,
              out_dir: Path | None = None, precision: str = AUTO, time_budget_min: float | None = None,
              runs_dir: Path = RUNS_DIR, quantize: str = AUTO, methods: list[str] | None = None,
              failures: list[str] | None = None, engine: str = GPTSUITE, compile_steps: bool = False) -> list[dict]:
    """Run the preset's tasks (or `tasks`), each method of each (or only those named in `methods`), and merge
    the rows into out_dir's table (None: a fresh runs/bench/<preset>-<YYYYmmdd-HHMMSS>/), then set them beside
    the reference table. A method that fails is a note in the table, and is appended to `failures`. `engine`:
    what the tasks that decode decode with (their rows' `spent` names it); compile_steps: their steps through
    torch.compile."""
    preset = load_preset(preset_name)
    preset_name, entries = preset.name, preset.tasks
    chosen = tasks or list(entries)
    unknown = sorted(set(chosen) - set(TASKS))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose from {', '.join(TASKS)}")
    undefined = [task for task in chosen if task not in entries]
    if undefined:
        raise ValueError(f"preset {preset_name!r} has no entry for {', '.join(undefined)} (its tasks: "
                         f"{', '.join(entries)}); add one to {preset.path}")
    planned = {task: entries[task].methods for task in chosen}
    if methods is not None:
        offered = {m for per_task in planned.values() for m in per_task}
        if set(methods) - offered:
            raise ValueError(f"unknown methods {sorted(set(methods) - offered)}; the chosen tasks have: "
                             f"{', '.join(sorted(offered))}")
        planned = {task: {m: f for m, f in per_task.items() if m in methods} for task, per_task in planned.items()}
    out_dir = out_folder(out_dir, "bench", preset_name)  # made after the checks: a refused run leaves no folder
    warnings.filterwarnings("ignore", message=LIGHTNINGCLI_ARGS_WARNING)
    start, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S")
    budgets = stage_budgets(preset, time_budget_min)
    machine = machine_summary(precision)  # measured once per machine, then cached
    stamp = run_stamp(machine)
    weights = stage_weights(preset, chosen, backbone)
    stages = tqdm(total=sum(weights.values()), bar_format="{desc}{percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")
    stages.set_description(f"bench {preset_name}: backbone")
    backbone, backbone_spent = ensure_backbone(preset, backbone, precision, budgets.get("backbone"))
    stages.update(weights["backbone"])
    rows, notes, done, meta = [], [], [], None
    for task in chosen:
        stages.set_description(f"bench {preset_name}: {task}")
        spec, baselines, results, first = get(task), {}, {}, len(rows)
        candidates = Counter(m.benchmark or spec.benchmark for m in planned[task].values() if not m.ablation)
        several = max(candidates.values(), default=0) > 1  # candidates on one benchmark: export the chosen one
        for method in planned[task].values():
            try:
                logs = runs_dir / preset_name / task / _slug(method.name)
                result, datamodule = run_task(spec, method, backbone, logs, precision, budgets.get(task), quantize,
                                              stage_export=several, engine=engine, compile_steps=compile_steps)
                results[method.name] = result
                if result["benchmark"] not in baselines:  # the same examples for every method: scored once
                    baselines[result["benchmark"]], failed = run_baselines(spec, datamodule)
                    notes += failed
                rows += rows_for(spec, method, result, baselines[result["benchmark"]], backbone, preset_name, stamp)
            except Exception as err:  # one method's failure is reported in the table, not fatal to the rest
                notes.append(f"{task} / {method.name} failed: {type(err).__name__}: {err}")
                tqdm.write(f"[bench] {task} / {method.name} failed: {err}")
                if failures is not None:
                    failures.append(f"{task} / {method.name}")
            # written after every method, so a crash or an interrupt loses at most the method in progress
            meta = run_meta(preset_name, backbone, done + [task], start, notes, machine, backbone_spent, started,
                            stamp["commit"])
            write_results(rows, meta, out_dir)
        if several:
            table = [r for r in json.loads((out_dir / "results.json").read_text())["rows"] if r["task"] == task]
            picked = publish_chosen(rows[first:], results, table)
            tqdm.write(f"[bench] {task}: exported {picked!r}, chosen on validation" if picked else
                       f"[bench] {task}: no method of this run is the table's choice on validation; its export "
                       "folder is left as it was")
        done.append(task)
        stages.update(weights[task])
    stages.close()
    print((out_dir / "results.md").read_text())
    compare_with_reference(rows, out_dir, meta)
    return rows


def bench_command(preset_name: str, tasks: list[str] | None, backbone: str | None, out: str | Path | None,
                  precision: str, time_budget_min: float | None, quantize: str, methods: list[str] | None,
                  engine: str = GPTSUITE, compile_steps: bool = False) -> int:
    """`gptsuite bench`: run_bench, then the exit status: 1, naming the methods that failed, when any did (the
    table holds the rest; a run with a failed stage is not a success). `out`: --out as given (its default
    stands for a fresh run folder, which run_bench makes once the preset and tasks are checked)."""
    failures: list[str] = []
    rows = run_bench(preset_name, tasks, backbone, given_out(out), precision, time_budget_min, quantize=quantize,
                     methods=methods, failures=failures, engine=engine, compile_steps=compile_steps)
    if failures:
        print(f"gptsuite bench: error: {len(failures)} method(s) failed ({', '.join(failures)}); the table holds the "
              f"{len({(r['task'], r['method']) for r in rows})} that ran (their notes say why)", file=sys.stderr)
        return 1
    return 0


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it is under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def compare_with_reference(rows: list[dict], out_dir: Path, meta: dict | None = None,
                           reference_dir: Path = REFERENCE_DIR) -> str | None:
    """Print this run's scores beside the reference table's and write them to out_dir/comparison.md; when out_dir
    is the reference itself, only say it was updated (it would be compared with itself). -> the comparison."""
    if out_dir.resolve() == reference_dir.resolve():
        print(f"updated the committed reference table: {out_dir}/results.{{md,csv,json,png}}")
        return None
    path = reference_dir / "results.json"
    reference = json.loads(path.read_text()) if path.is_file() else {}  # no reference: every row says "–"
    text = comparison(rows, reference, _shown(path), meta)
    (out_dir / "comparison.md").write_text(text)
    print(text)
    print(f"results in {out_dir}/: results.{{md,csv,json,png}}, comparison.md (--out {OUT_DIR} updates the "
          "reference)")
    return text

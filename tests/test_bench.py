"""The benchmark runner end to end on a nano backbone (on local files, and on a few real benchmark examples
from the warm data cache), plus its baselines, budgets and the table's files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tasks import baselines
from tasks.bench import run_bench, stage_budgets, stage_weights
from tasks.catalog import TASKS
from tasks.recipes import load_preset
from tests.helpers import ROOT, SENTENCES, make_backbone, write_preset, write_sentiment_files

NER_ROWS = [{"tokens": ["John", "lives", "in", "Paris", "."], "ner_tags": ["B-PER", "O", "O", "B-LOC", "O"]},
            {"tokens": ["Mary", "visited", "Berlin", "."], "ner_tags": ["B-PER", "O", "B-LOC", "O"]}] * 4


def add_preset(tmp_path, name: str, preset: dict, entries: dict[str, dict]) -> str:
    """A preset file for this test only (tests.helpers.write_preset); -> its path, what --preset takes."""
    return write_preset(tmp_path / "presets", name, preset, entries)


def _local_files(tmp_path) -> dict:
    ner = {}
    for split in ("train", "validation", "test"):
        ner[split] = str(tmp_path / f"ner-{split}.jsonl")
        Path(ner[split]).write_text("\n".join(json.dumps(r) for r in NER_ROWS))
    return {"sentiment": write_sentiment_files(tmp_path), "ner": ner}


def test_bench_on_local_files_records_spend_machine_and_a_csv_with_empty_cells(tmp_path, monkeypatch):
    backbone = make_backbone(tmp_path / "nano")
    files = _local_files(tmp_path)
    common = {"trainer.max_epochs": 2, "data.batch_size": 4, "trainer.precision": "32-true"}
    preset = add_preset(tmp_path, "unit", {"backbone": str(backbone), "minutes": 1},
               {"sentiment": {**common, "budget_s": 30, "data.data_files": files["sentiment"]},
                "ner": {**common, "budget_s": 30, "data.data_files": files["ner"]}})
    run_bench(preset, ["sentiment", "ner"], str(backbone), out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [m["notes"] for m in data["runs"]] == [[]]
    machine = data["runs"][0]["machine"]
    assert machine["requested_precision"] == "auto" and machine["precision"] in ("32-true", "bf16-mixed")
    assert machine["fp32_gflops"] > 0 and machine["bf16_gflops"] > 0 and machine["threads"] >= 1
    rows = {(r["task"], r["metric"]): r for r in data["rows"] if r["method"] == "fine-tuned"}
    spent = rows[("sentiment", "accuracy")]["spent"]
    # 8 sentences, batch 4, 2 epochs: 4 optimizer steps, each sentence's real tokens seen twice
    assert spent["steps"] == 4 and spent["budget_s"] == 30 and spent["planned_steps"] == 4
    assert spent["train_tokens"] > 2 * 8 * 3 and spent["fit_s"] > 0 and not spent["stopped_by_budget"]
    assert spent["tokens_per_s"] > 0 and 0 <= spent["padding_share"] < 1
    assert rows[("ner", "f1")]["spent"]["steps"] == 4
    assert rows[("sentiment", "accuracy")]["settings"]["precision"] == "32-true"  # the explicit precision won
    table = (tmp_path / "out" / "results.md").read_text()
    assert "spent: steps=4, train_tokens=" in table and "machine: cpu=" in table
    with (tmp_path / "out" / "results.csv").open() as f:
        lines = list(csv.DictReader(f))
    # sentiment: accuracy, f1 for the fine-tuned head and the prompt; NER: f1, precision, recall (no prompt path)
    assert len(lines) == len(data["rows"]) == 7
    assert {r["method"] for r in lines if r["task"] == "ner"} == {"fine-tuned"}
    ner_f1 = next(r for r in lines if r["task"] == "ner" and r["metric"] == "f1")
    assert json.loads(ner_f1["baselines"]).keys() == {"most-frequent-tag"}
    accuracy = next(r for r in lines if r["metric"] == "accuracy" and r["method"] == "fine-tuned")
    assert float(accuracy["score"]) == rows[("sentiment", "accuracy")]["score"]
    low, high = float(accuracy["ci95_low"]), float(accuracy["ci95_high"])  # 8 test sentences: a wide interval
    assert 0 <= low <= float(accuracy["score"]) <= high <= 100 and high - low >= 10
    assert "## Headline" in table
    assert "| sentiment (MR sentences, VADER crowd-rated labels) | accuracy | nano | " in table
    assert rows[("sentiment", "accuracy")]["val_score"] is not None  # scored on the validation split as well
    assert (tmp_path / "runs" / "unit" / "sentiment" / "fine-tuned").is_dir()  # the runs folder given, not ./runs/bench


def test_a_method_on_another_benchmark_gets_its_own_rows_baselines_and_headline(tmp_path, monkeypatch):
    import dataclasses

    from tasks.bench_rows import anchors
    from tasks.spec import Anchor

    backbone = make_backbone(tmp_path / "nano")
    files = write_sentiment_files(tmp_path)
    relabelled = {}  # the same sentences, 7 of 8 labelled positive: other baselines
    for split in files:
        relabelled[split] = str(tmp_path / f"relabelled-{split}.jsonl")
        labels = ["negative"] + ["positive"] * (len(SENTENCES) - 1)
        Path(relabelled[split]).write_text("".join(json.dumps({"text": text, "label": label}) + "\n"
                                                   for (text, _), label in zip(SENTENCES, labels)))
    common = {"trainer.max_epochs": 1, "data.batch_size": 4, "trainer.precision": "32-true", "budget_s": 30}
    preset = add_preset(tmp_path, "unit", {"backbone": str(backbone), "minutes": 1},
               {"sentiment": {**common, "methods": {
                   "fine-tuned": {"data.data_files": files},
                   "relabelled": {"data.data_files": relabelled, "benchmark": "Relabelled reviews"}}}})
    spec = TASKS["sentiment"]
    monkeypatch.setitem(TASKS, "sentiment", dataclasses.replace(spec, anchors=(
        *spec.anchors, Anchor("accuracy", "relabel expert", 99.0, "this test", benchmark="Relabelled reviews"))))
    run_bench(preset, ["sentiment"], str(backbone), out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {r["method"]: r for r in data["rows"] if r["metric"] == "accuracy"}
    assert rows["fine-tuned"]["dataset"] == spec.benchmark and rows["relabelled"]["dataset"] == "Relabelled reviews"
    # each scored on its own labels: 4 of 8 positive, then 7 of 8
    assert (rows["fine-tuned"]["baselines"]["majority"], rows["relabelled"]["baselines"]["majority"]) == (50.0, 87.5)
    assert [a["name"] for a in rows["relabelled"]["anchors"]].count("relabel expert") == 1
    assert "relabel expert" not in [a["name"] for a in rows["fine-tuned"]["anchors"]]
    assert anchors("sentiment", "accuracy", spec.benchmark) == rows["fine-tuned"]["anchors"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert f"| sentiment ({spec.benchmark}) | accuracy |" in table
    assert "| sentiment (Relabelled reviews) | accuracy |" in table
    # two benchmarks, one method each: no candidates to choose between, so nothing is staged
    assert not list((tmp_path / "runs").rglob("export"))
    # --methods: only the named ones run; an unknown name is refused before anything runs
    run_bench(preset, ["sentiment"], str(backbone), out_dir=tmp_path / "one", runs_dir=tmp_path / "runs",
              methods=["relabelled"])
    ran = json.loads((tmp_path / "one" / "results.json").read_text())["rows"]
    assert {r["method"] for r in ran} == {"relabelled"}
    with pytest.raises(ValueError, match=r"unknown methods \['nope'\]; the chosen tasks have: fine-tuned, relabelled"):
        run_bench(preset, ["sentiment"], str(backbone), out_dir=tmp_path / "none", methods=["nope"])
    assert not (tmp_path / "none").exists()


def test_stage_budgets_scale_with_the_time_budget():
    import yaml

    preset = load_preset("quick")
    written = yaml.safe_load((ROOT / "configs/bench/quick.yaml").read_text())
    quick = stage_budgets(preset, None)
    assert quick["backbone"] == written["budget_s"] and quick["ner"] == written["tasks"]["ner"]["budget_s"]
    assert quick.keys() == {"backbone", *TASKS}  # every task runs in the quick preset, each with its budget
    half = stage_budgets(preset, written["minutes"] / 2)
    assert half == {stage: seconds / 2 for stage, seconds in quick.items()}
    with pytest.raises(ValueError, match="positive"):
        stage_budgets(preset, 0)
    with pytest.raises(ValueError, match="needs a preset with budgets"):
        stage_budgets(load_preset("full"), 10)


@pytest.mark.slow
@pytest.mark.warm_cache("mr_sentiment", "conll2003")
def test_bench_writes_every_output_with_baselines(tmp_path, monkeypatch):
    backbone = make_backbone(tmp_path / "nano")
    budget = {"data.max_train_examples": 16, "data.max_eval_examples": 8, "trainer.max_epochs": 1,
              "trainer.precision": "32", "data.batch_size": 8}
    preset = add_preset(tmp_path, "unit", {"backbone": str(backbone)},
               {"sentiment": budget, "ner": budget})
    run_bench(preset, ["sentiment", "ner"], str(backbone), out_dir=tmp_path / "out")
    for name in ("results.md", "results.csv", "results.json", "results.png"):
        assert (tmp_path / "out" / name).is_file(), name
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    rows = {(r["task"], r["metric"], r["method"]): r for r in data["rows"]}
    assert [m["notes"] for m in data["runs"]] == [[]]  # no task failed
    accuracy, prompt = rows[("sentiment", "accuracy", "fine-tuned")], rows[("sentiment", "accuracy", "prompt")]
    assert accuracy["n_eval"] == prompt["n_eval"] == 8 and 0 <= accuracy["score"] <= 100 and prompt["score"] is not None
    assert accuracy["ci95"][0] <= accuracy["score"] <= accuracy["ci95"][1]
    assert set(accuracy["baselines"]) == {"majority", "bow-logreg"}
    assert accuracy["anchors"] == []  # no published score uses these labels
    assert "most-frequent-tag" in rows[("ner", "f1", "fine-tuned")]["baselines"]
    # the exact settings: the seed and precision the CLI ran with, and how each path was scored
    assert accuracy["settings"]["seed"] == 0 and accuracy["settings"]["precision"] == "32-true"
    assert accuracy["scoring"]["path"] == "sequence head (last pooling)"
    assert prompt["scoring"]["path"].startswith("prompt: 4 demonstrations")
    assert prompt["scoring"]["adapter"] == "Frozen"  # the prompt path trains nothing
    assert "conlleval" in rows[("ner", "f1", "fine-tuned")]["scoring"]["seqeval"]
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| sentiment | MR sentences, VADER crowd-rated labels (test, 8) | accuracy | nano | fine-tuned |" in table
    assert "seed=0, precision=32-true" in table
    assert "- ner, nano, fine-tuned: adapter: FullFineTune; seqeval: default mode (conlleval" in table
    # a second backbone adds its rows next to the first one's
    other = make_backbone(tmp_path / "nano2", positions="rope")
    run_bench(preset, ["sentiment"], str(other), out_dir=tmp_path / "out")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {(r["task"], Path(r["backbone"]).name) for r in data["rows"]} == {
        ("sentiment", "nano"), ("ner", "nano"), ("sentiment", "nano2")}
    assert [Path(m["backbone"]).name for m in data["runs"]] == ["nano", "nano2"]
    # re-running one task keeps the earlier run's line for the other, and says what was re-done
    run_bench(preset, ["sentiment"], str(backbone), out_dir=tmp_path / "out")
    run_bench(preset, ["ner"], str(other), out_dir=tmp_path / "out")  # another backbone's run changes nothing of nano's
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(Path(m["backbone"]).name, m["tasks"]) for m in data["runs"]] == [
        ("nano", ["sentiment", "ner"]), ("nano2", ["sentiment"]), ("nano", ["sentiment"]), ("nano2", ["ner"])]
    lines = [line for line in (tmp_path / "out" / "results.md").read_text().splitlines() if line.startswith("- `")]
    assert lines[0].endswith("; sentiment: see the later run") and "see the later run" not in "".join(lines[1:])


def test_unknown_preset_and_task_are_clear_errors():
    with pytest.raises(ValueError, match="unknown preset"):
        run_bench("nope")
    with pytest.raises(ValueError, match="unknown tasks"):
        run_bench("smoke", ["poetry"])


def test_majority_and_bow_baselines():
    texts = ["good great fine", "great good", "bad awful", "awful bad terrible", "good fine"]
    labels = [1, 1, 0, 0, 1]
    assert baselines.majority(labels, [1, 0], 2)["accuracy"] == pytest.approx(0.5)
    scores = baselines.bow_logreg(texts, labels, ["great fine", "terrible awful"], [1, 0], 2)
    assert scores["accuracy"] == 1.0 and scores["f1"] == 1.0


def test_most_frequent_tag_baseline():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    scores = baselines.most_frequent_tag([["John", "went", "to", "Paris"]], [[1, 0, 0, 3]], [["John", "saw", "Paris"]],
                                 [[1, 0, 3]], names)
    assert scores["f1"] == 1.0


def test_sliding_window_finds_the_span_near_the_question_words():
    context = "The tower was built in 1889 by Gustave Eiffel for the world fair in Paris ."
    # "Gustave Eiffel" has built, world and fair within 5 words; "Paris" only world and fair
    assert (baselines.sliding_window("Who built the tower for the world fair?", context, window=5, max_span=2)
            in {"Gustave", "Gustave Eiffel"})


def test_word_dictionary_learns_consistent_pairs():
    src = ["the dog", "the cat", "a dog", "a cat"]
    tgt = ["el perro", "el gato", "un perro", "un gato"]
    assert baselines.word_dictionary(src, tgt, ["the dog"]) == ["el perro"]


def test_progress_weights_are_the_last_run_s_seconds(tmp_path):
    """A stage's share of the progress bar is what its methods took in the reference table's run, not a typed
    guess; a stage the table has not seen counts as the others' mean."""
    preset = load_preset(add_preset(tmp_path, "unit", {"backbone": str(tmp_path / "absent" / "tiny"), "budget_s": 9},
                                    {"ner": {"methods": {"a": {}, "b": {}}}, "qa": {}, "codegen": {}}))
    reference = tmp_path / "reference"
    reference.mkdir()
    rows = [{"task": "ner", "method": "a", "wall_s": 60}, {"task": "ner", "method": "b", "wall_s": 40},
            {"task": "qa", "method": "fine-tuned", "wall_s": 200}, {"task": "qa", "method": "other", "wall_s": 999}]
    runs = [{"backbone": "artifacts/backbones/tiny", "backbone_spent": {"wall_s": 700}}]
    (reference / "results.json").write_text(json.dumps({"rows": rows, "runs": runs}))
    weights = stage_weights(preset, ["ner", "qa", "codegen"], None, reference)
    assert weights == {"backbone": 700.0, "ner": 100.0, "qa": 200.0, "codegen": 150.0}
    backbone = make_backbone(tmp_path / "nano")
    assert stage_weights(preset, ["ner"], str(backbone), reference)["backbone"] == 0.0  # reused: no pretraining
    assert stage_weights(preset, ["ner"], None, tmp_path / "none")["backbone"] == 9.0  # no table: the budget


@pytest.mark.slow
def test_baselines_do_not_depend_on_the_string_hash_seed():
    """Ties (equal counts, equal Dice scores) must break the same way in every process."""
    import os
    import subprocess
    import sys

    code = ("from tasks.baselines import bow_logreg, word_dictionary\n"
            "src = ['a b c d', 'e f g h', 'a e', 'b f']\n"
            "print(word_dictionary(src, ['w x y z', 'p q r s', 'w p', 'x q'], ['a b c d e f g h']))\n"
            # one vocabulary slot, three tied words: which one is kept decides which test text is right
            "print(bow_logreg(['apple pear plum', 'kiwi lime fig'], [0, 1], ['apple', 'pear', 'plum'], [0, 1, 1], 2,"
            " max_vocab=1))\n")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2, 3)}
    assert len(outputs) == 1, outputs


def test_gptsuite_task_commands_do_not_warn_about_their_own_args(monkeypatch, capsys):
    """`gptsuite sentiment ...` hands its args to LightningCLI while sys.argv holds them too (a DDP launcher
    re-runs sys.argv); LightningCLI's warning about that must not reach the user."""
    import sys
    import warnings

    from tasks.cli import main

    monkeypatch.setattr(sys, "argv", ["gptsuite", "sentiment", "--help"])
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as done:
        warnings.simplefilter("always")
        main()
    assert done.value.code == 0 and "fit" in capsys.readouterr().out
    assert not [w for w in caught if "args parameter" in str(w.message)]


def test_a_failed_method_makes_the_bench_command_fail_with_the_rest_in_the_table(tmp_path, monkeypatch, capsys):
    from tasks.cli import main

    backbone = make_backbone(tmp_path / "nano")
    files = write_sentiment_files(tmp_path)
    common = {"trainer.max_epochs": 1, "data.batch_size": 4, "trainer.precision": "32-true", "data.data_files": files}
    preset = add_preset(tmp_path, "unit", {"backbone": str(backbone), "minutes": 1},
               {"sentiment": {"methods": {"works": common, "breaks": {**common, "data.text_column": "nope"}}}})
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--preset", preset, "--tasks", "sentiment", "--out", "out"]) == 1
    err = capsys.readouterr().err
    assert "gptsuite bench: error: 1 method(s) failed (sentiment / breaks); the table holds the 1 that ran" in err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"works"}


def test_the_headline_is_chosen_on_validation_never_on_test():
    from tasks.bench_table import chosen_rows, headline

    def row(method, val, test, ablation=False, backbone="artifacts/backbones/smollm2-135m"):
        return {"task": "ner", "dataset": "CoNLL-2003", "metric": "f1", "backbone": backbone, "method": method,
                "score": test, "val_score": val, "ci95": None, "n_eval": 10, "baselines": {}, "anchors": [],
                "ablation": ablation}

    rows = [row("steady", val=90.0, test=85.0), row("lucky on test", val=80.0, test=95.0),
            row("an ablation", val=99.0, test=99.0, ablation=True),
            row("tiny's only one", val=None, test=40.0, backbone="artifacts/backbones/tiny"),
            row("two without validation", val=None, test=41.0, backbone="artifacts/backbones/other"),
            row("and another", val=None, test=42.0, backbone="artifacts/backbones/other")]
    chosen = {r["backbone"].split("/")[-1]: (r["method"], how) for r, how in chosen_rows(rows)}
    assert chosen == {"smollm2-135m": ("steady", "best validation score of 2"),
                      "tiny": ("tiny's only one", "only method, no validation score")}
    text = "\n".join(headline(rows))
    assert "lucky on test" not in text and "an ablation" not in text and "| 90.0 | **85.0**, 10 |" in text


def test_each_benchmark_is_headlined_on_the_first_metric_its_rows_score(tmp_path):
    """codegen's metrics, in order: chosen_pass@1, pass@1, greedy_pass@1. HumanEval is headlined on chosen_pass@1
    where a method chose among its samples and on pass@1 where none did; MBPP's greedy-only method on
    greedy_pass@1 (its pass@1 row has no score). The plot draws a panel for each benchmark."""
    from tasks.bench_table import chosen_rows, plot

    def row(backbone, dataset, metric, score):
        return {"task": "codegen", "dataset": dataset, "metric": metric, "backbone": f"artifacts/backbones/{backbone}",
                "method": f"{backbone} {dataset}", "score": score, "val_score": None, "ci95": None, "n_eval": 10,
                "baselines": {}, "anchors": [], "ablation": False}

    rows = [row("smollm2", "HumanEval", "chosen_pass@1", 11.6), row("smollm2", "HumanEval", "pass@1", 4.4),
            row("tiny", "HumanEval", "pass@1", 0.0), row("tiny", "HumanEval", "greedy_pass@1", 0.0),
            row("smollm2", "MBPP", "pass@1", None), row("smollm2", "MBPP", "greedy_pass@1", 10.6)]
    shown = {(r["dataset"], r["backbone"].split("/")[-1]): r["metric"] for r, _ in chosen_rows(rows)}
    assert shown == {("HumanEval", "smollm2"): "chosen_pass@1", ("HumanEval", "tiny"): "pass@1",
                     ("MBPP", "smollm2"): "greedy_pass@1"}
    plot(rows, tmp_path / "results.png")
    assert (tmp_path / "results.png").stat().st_size > 0


def test_a_subset_run_publishes_nothing_when_the_tables_choice_is_another_runs_method(tmp_path):
    """--methods runs part of a preset: its best method replaces the task's folder only if it is also the whole
    table's choice on validation; a kept row of an earlier run with a better validation score wins."""
    from tasks.bench import publish_chosen

    def row(method, val):
        return {"task": "ner", "dataset": "CoNLL-2003", "metric": "f1", "backbone": "artifacts/backbones/smollm2",
                "method": method, "score": 80.0, "val_score": val, "ci95": None, "n_eval": 10, "baselines": {},
                "anchors": [], "ablation": False}

    staged, target = tmp_path / "staged", tmp_path / "task"
    staged.mkdir()
    (staged / "task.json").write_text("this run's")
    target.mkdir()
    (target / "task.json").write_text("the earlier run's")
    results = {"this run": {"export": (staged, str(target))}}
    ran, earlier = [row("this run", 85.0)], row("an earlier run", 90.0)
    assert publish_chosen(ran, results, [*ran, earlier]) is None
    assert (target / "task.json").read_text() == "the earlier run's"
    assert publish_chosen(ran, results, [*ran, {**earlier, "val_score": 70.0}]) == "this run"
    assert (target / "task.json").read_text() == "this run's"


def test_only_a_headline_candidate_exports_and_its_folder_holds_its_test_score(tmp_path, monkeypatch):
    """An ablation never replaces the task's folder (the demo and the applications read it); the exported
    model carries the test score it was measured with."""
    backbone = make_backbone(tmp_path / "nano")
    files = write_sentiment_files(tmp_path)
    common = {"trainer.max_epochs": 1, "data.batch_size": 4, "trainer.precision": "32-true", "data.data_files": files,
              "model.export_dir": str(tmp_path / "exported")}
    preset = add_preset(tmp_path, "unit", {"backbone": str(backbone), "minutes": 1},
                        {"sentiment": {"methods": {"candidate": common,
                                                   "what a wide head is worth": {**common, "model.head_hidden": 16,
                                                                                 "ablation": True}}}})
    rows = run_bench(preset, ["sentiment"], str(backbone), out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    saved = json.loads((tmp_path / "exported" / "task.json").read_text())
    assert saved["name"] == "sentiment" and saved["hparams"]["head_hidden"] == 0  # the candidate's, not the ablation's
    scores = json.loads((tmp_path / "exported" / "test_metrics.json").read_text())
    candidate = next(r for r in rows if r["method"] == "candidate" and r["metric"] == "accuracy")
    assert round(100 * scores["test/accuracy"], 2) == candidate["score"]
    assert {r["method"]: r["ablation"] for r in rows} == {"candidate": False, "what a wide head is worth": True}
    assert all(r["recipe"]["sha256"] and r["run"]["machine"] for r in rows)


def test_of_several_candidates_the_one_chosen_on_validation_is_exported(tmp_path):
    """Each candidate exports to its own run folder; the one the headline chooses (best validation score)
    becomes the task's folder, with its own test score."""
    from tasks.bench_table import chosen_rows

    backbone = make_backbone(tmp_path / "nano")
    common = {"trainer.max_epochs": 1, "data.batch_size": 4, "trainer.precision": "32-true",
              "data.data_files": write_sentiment_files(tmp_path), "model.export_dir": str(tmp_path / "exported")}
    preset = add_preset(tmp_path, "unit", {"backbone": str(backbone), "minutes": 1},
                        {"sentiment": {"methods": {"narrow": common, "wide": {**common, "model.head_hidden": 16}}}})
    rows = run_bench(preset, ["sentiment"], str(backbone), out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    (best, how), = chosen_rows(rows)
    assert how == "best validation score of 2"
    saved = json.loads((tmp_path / "exported" / "task.json").read_text())
    assert saved["hparams"]["head_hidden"] == {"narrow": 0, "wide": 16}[best["method"]]
    scores = json.loads((tmp_path / "exported" / "test_metrics.json").read_text())
    assert round(100 * scores[f"test/{best['metric']}"], 2) == best["score"]
    for method in ("narrow", "wide"):  # each candidate's own export stays in its run folder
        assert (tmp_path / "runs" / "unit" / "sentiment" / method / "export" / "task.json").is_file()


def test_a_runs_commit_is_taken_when_it_starts(tmp_path, monkeypatch):
    """The run's own results files may be tracked (--out benchmarks): once written they differ from the commit,
    so the run's record keeps the commit its rows were stamped with at the start."""
    import tasks.bench_rows as bench_rows

    commits = iter(["abc1234"] + ["abc1234+changes"] * 10)
    monkeypatch.setattr(bench_rows, "git_commit", lambda: next(commits))
    backbone = make_backbone(tmp_path / "nano")
    common = {"trainer.max_epochs": 1, "data.batch_size": 4, "trainer.precision": "32-true",
              "data.data_files": write_sentiment_files(tmp_path), "model.export_dir": None}
    preset = add_preset(tmp_path, "unit", {"backbone": str(backbone), "minutes": 1},
                        {"sentiment": {"methods": {"a": common, "b": common}}})
    run_bench(preset, ["sentiment"], str(backbone), out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["run"]["commit"] for r in data["rows"]} == {"abc1234"} and data["runs"][0]["commit"] == "abc1234"


def test_publish_chosen_copies_the_chosen_candidates_folder_only(tmp_path):
    from tasks.bench import publish_chosen

    def row(method, val):
        return {"task": "sentiment", "dataset": "MR", "metric": "accuracy", "backbone": "b", "method": method,
                "score": 50.0, "val_score": val, "ablation": False}

    staged = {}
    for method in ("a", "b"):
        (tmp_path / method).mkdir()
        (tmp_path / method / "task.json").write_text(method)
        staged[method] = {"export": (str(tmp_path / method), str(tmp_path / "task"))}
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "stale.txt").write_text("an older model's file")
    assert publish_chosen([row("a", 70.0), row("b", 80.0)], staged) == "b"
    assert (tmp_path / "task" / "task.json").read_text() == "b" and not (tmp_path / "task" / "stale.txt").exists()
    assert publish_chosen([row("a", None), row("b", None)], staged) is None  # none validated: nothing moves
    assert (tmp_path / "task" / "task.json").read_text() == "b"


def test_a_frozen_feature_method_that_skips_validation_in_fit_is_still_validated(tmp_path, monkeypatch):
    """The smollm2 preset's methods fit with limit_val_batches: 0 (no validation features while training); the
    bench then scores the validation split on its own, building that split's cached features."""
    monkeypatch.setenv("GPTSUITE_CACHE", str(tmp_path / "cache"))
    backbone = make_backbone(tmp_path / "nano")
    files = write_sentiment_files(tmp_path)
    frozen = {"model.adapter": "tasks.adapters.FrozenLayers", "model.adapter.layers": [0, -1],
              "trainer.limit_val_batches": 0, "trainer.max_epochs": 2, "data.batch_size": 4,
              "trainer.precision": "32-true", "data.data_files": files}
    preset = add_preset(tmp_path, "unit", {"backbone": str(backbone), "minutes": 1},
                        {"sentiment": {"methods": {"frozen": frozen}}})
    rows = run_bench(preset, ["sentiment"], str(backbone), out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    accuracy = next(r for r in rows if r["metric"] == "accuracy")
    assert accuracy["val_score"] is not None and accuracy["n_val"] == len(SENTENCES)
    assert set(accuracy["spent"]["features"]) >= {"train", "validation", "test"}

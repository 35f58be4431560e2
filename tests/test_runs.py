"""Measuring commands write to a fresh run folder under runs/ by default, never over the committed tables in
benchmarks/, and bench sets a run's scores beside that reference table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tasks.bench import compare_with_reference, rows_for, run_meta, write_results
from tasks.catalog import TASKS
from tasks.recipes import Method
from tasks.runs import given_out, out_folder, run_folder


def test_run_folder_is_fresh_unique_and_under_runs_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = run_folder("bench", "quick"), run_folder("bench", "quick")  # most likely the same second
    third = run_folder("sweep")
    for folder in (first, second, third):
        assert folder.is_dir() and not any(folder.iterdir())
        assert folder.resolve().is_relative_to(tmp_path / "runs")
    assert first != second and first.parent == second.parent == Path("runs/bench")
    assert re.fullmatch(r"quick-\d{8}-\d{6}(-\d+)?", first.name) and re.fullmatch(r"\d{8}-\d{6}(-\d+)?", third.name)
    assert third.parent == Path("runs/sweep")


def test_out_folder_makes_a_run_folder_only_for_the_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert out_folder("benchmarks/bias", "bias") == Path("benchmarks/bias")
    assert not Path("benchmarks").exists() and not Path("runs").exists()  # the writer makes a given folder
    made = out_folder(None, "bias")
    assert made.is_dir() and made.parent == Path("runs/bias") and f"writing to {made}/" in capsys.readouterr().err


MINIMAL_ARGS = {"bench": [], "write": ["--backbone", "b", "--measure"], "sweep": ["--backbone", "b"], "bias": [],
                "safety": ["--backbone", "b", "--eval"], "optimize": ["--backbone", "b"]}
REFERENCES = {"bench": "benchmarks", "write": "benchmarks/article", "sweep": "benchmarks/sweep",
              "bias": "benchmarks/bias", "safety": "benchmarks/safety", "optimize": "benchmarks/inference"}


@pytest.mark.parametrize("command", list(MINIMAL_ARGS))
def test_measuring_commands_default_to_a_run_folder_and_say_how_to_update_the_reference(command, tmp_path,
                                                                                        monkeypatch, capsys):
    from tasks.cli import build_parser

    monkeypatch.chdir(tmp_path)
    parser = build_parser()
    args = parser.parse_args([command, *MINIMAL_ARGS[command]])
    assert Path(args.out).parts[:2] == ("runs", command) and given_out(args.out) is None
    assert not Path("runs").exists()  # parsing makes nothing: `write --title` and `safety --prompt` write nothing
    reference = parser.parse_args([command, *MINIMAL_ARGS[command], "--out", REFERENCES[command]])
    assert given_out(reference.out) == Path(REFERENCES[command])
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    assert f"--out {REFERENCES[command]} updates" in " ".join(capsys.readouterr().out.split())


def _rows(backbone: str, scores: dict[str, float]) -> list[dict]:
    """Table rows of sentiment's methods as run_bench makes them, from made-up scores (no model runs)."""
    spec, rows = TASKS["sentiment"], []
    for method, accuracy in scores.items():
        result = {"benchmark": spec.benchmark, "metrics": {"test/accuracy": accuracy, "test/f1": accuracy},
                  "validation": {"val/accuracy": accuracy}, "n_val": 8,
                  "recipe": {"files": ["configs/tasks/sentiment.yaml"], "sha256": "0" * 64},
                  "intervals": {"accuracy": (accuracy - 0.1, accuracy + 0.1)}, "n_eval": 8, "n_train": 8,
                  "settings": {"seed": 0}, "spent": {}, "scoring": {}, "wall_s": 1.0}
        rows += rows_for(spec, Method(method, "configs/tasks/sentiment.yaml"), result,
                         {"majority": {"accuracy": 0.5}}, backbone)
    return rows


def test_bench_comparison_sets_a_run_beside_the_reference_rows_of_the_same_backbone_name(tmp_path, capsys):
    reference_dir, run_dir = tmp_path / "benchmarks", tmp_path / "runs" / "bench" / "unit-20260101-000000"
    machine = {"cpu": "Reference CPU", "capability": "AVX2", "threads": 4, "precision": "32-true"}
    write_results(_rows("artifacts/backbones/nano", {"fine-tuned": 0.75}),
                  run_meta("unit", "artifacts/backbones/nano", ["sentiment"], 0.0, [], machine), reference_dir)
    ours = _rows("/elsewhere/nano", {"fine-tuned": 0.625, "prompt": 0.5})  # the same backbone name, another path
    write_results(ours, run_meta("unit", "/elsewhere/nano", ["sentiment"], 0.0, []), run_dir)
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    text = compare_with_reference(rows, run_dir, reference_dir=reference_dir)
    assert text == (run_dir / "comparison.md").read_text() and text in capsys.readouterr().out
    lines = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line for line in text.splitlines()
             if line.startswith("| sentiment")}
    assert lines[("sentiment", "fine-tuned", "accuracy")] == ("| sentiment | fine-tuned | accuracy | 62.5 [52.5, 72.5] "
                                                             "| 75.0 [65.0, 85.0] | Reference CPU, AVX2, 4 threads, "
                                                             "32-true |")
    assert lines[("sentiment", "prompt", "accuracy")] == "| sentiment | prompt | accuracy | 50.0 [40.0, 60.0] | – | – |"
    assert lines[("sentiment", "fine-tuned", "f1")].endswith("| 62.5 | 75.0 | Reference CPU, AVX2, 4 threads, "
                                                             "32-true |")  # no interval: the score alone
    # another backbone name has no reference: every row says so
    other = compare_with_reference(_rows("nano2", {"fine-tuned": 0.5}), run_dir, reference_dir=reference_dir)
    assert all(line.endswith("| – | – |") for line in other.splitlines() if line.startswith("| sentiment"))


def test_bench_into_the_reference_itself_updates_it_without_a_comparison(tmp_path, capsys):
    reference_dir = tmp_path / "benchmarks"
    write_results(_rows("nano", {"fine-tuned": 0.75}), run_meta("unit", "nano", ["sentiment"], 0.0, []),
                  reference_dir)
    assert compare_with_reference(_rows("nano", {"fine-tuned": 0.75}), reference_dir,
                                  reference_dir=reference_dir) is None
    assert not (reference_dir / "comparison.md").exists()
    assert "updated the committed reference" in capsys.readouterr().out

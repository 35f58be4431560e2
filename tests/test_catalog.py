"""A seventh task added through the registry alone: its module, its data module, its YAML and one
`register(TaskSpec(...))`, all in this file. Nothing else in the project changes, and the task has a
`gptsuite <task>` command, a benchmark row with its baseline, a demo tab and a typed predict."""

from __future__ import annotations

import re

import datasets
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from tasks.base import LabelledTask
from tasks.data import LabelledData
from tasks.heads import pool
from tasks.outputs import LabelScores
from tasks.spec import Anchor, TaskSpec
from tests.helpers import make_backbone

STATEMENTS = ["The sky is blue.", "Paris is in France.", "We met at noon.", "The film was long."]
QUESTIONS = ["Is the sky blue?", "Where is Paris?", "When did we meet?", "Was the film long?"]


# --- the task's package: a module and a data module --------------------------------------------------------
class QuestionDetector(LabelledTask):
    """Is a sentence a question? A linear layer on the mean of the backbone's states.

    Args:
        head_dropout: dropout before the linear layer.
    """

    output_type = LabelScores

    def __init__(self, head_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)

    def build_head(self) -> None:
        self.head = nn.Sequential(nn.Dropout(self.hparams.head_dropout),
                                  nn.Linear(self.backbone.config.n_embd, len(self.label_names)))
        self.accuracy = nn.ModuleDict({s: MulticlassAccuracy(len(self.label_names)) for s in ("val", "test")})

    def logits(self, batch: dict) -> torch.Tensor:
        states, mask = self.unit_states(batch)  # (B, T, C): every real token
        return self.head(pool(states, mask, "mean")[:, 0]).float()

    def loss(self, batch: dict) -> torch.Tensor:
        return F.cross_entropy(self.logits(batch), batch["labels"])

    def metrics(self, stage: str) -> dict:
        return {"accuracy": self.accuracy[stage]}

    def update_metrics(self, stage: str, batch: dict) -> None:
        predicted = self.logits(batch).argmax(-1)
        self.accuracy[stage].update(predicted, batch["labels"])
        self.record_predictions(stage, [{"text": t, "label": self.label_names[p]}
                                        for t, p in zip(batch["texts"], predicted.tolist())])

    def predict_batch(self, texts: list[str]) -> list[LabelScores]:
        ids, mask = self.tokenizer.pad(self.tokenizer.encode_batch(texts), side="right")
        probs = self.logits({"input_ids": ids, "attention_mask": mask}).softmax(-1)
        return [LabelScores(dict(zip(self.label_names, row.tolist()))) for row in probs]


class QuestionData(LabelledData):
    """Sentences labelled question / statement, made here (no files, no download)."""

    label_column = "label"

    def __init__(self, dataset: str = "toy-questions", **kwargs):
        super().__init__(dataset=dataset, **kwargs)

    def load(self) -> datasets.DatasetDict:
        rows = [{"text": t, "label": "statement"} for t in STATEMENTS] + [{"text": t, "label": "question"}
                                                                          for t in QUESTIONS]
        return datasets.DatasetDict({split: datasets.Dataset.from_list(rows)
                                     for split in ("train", "validation", "test")})

    def validate(self, split: str, dataset: datasets.Dataset) -> None:
        """The rows are made above: nothing to check."""

    def collate(self, rows: list[dict]) -> dict:
        texts = [r["text"] for r in rows]
        ids, mask = self.tokenizer.pad([i[: self.max_tokens] for i in self.tokenizer.encode_batch(texts)], side="right")
        labels = torch.tensor([self.label_index(r["label"]) for r in rows])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "texts": texts}


def question_mark_baseline(dm: QuestionData) -> dict:
    """Does the text end with "?" (the rule the model has to learn)."""
    test = dm.splits["test"]
    right = sum((t.rstrip().endswith("?")) == (label == "question") for t, label in zip(test["text"], test["label"]))
    return {"ends-with-?": {"accuracy": right / len(test)}}


# --- its YAML -----------------------------------------------------------------------------------------------
YAML = """\
seed_everything: 0
trainer: {accelerator: cpu, max_epochs: 2, precision: 32-true, logger: false, enable_checkpointing: false,
          enable_progress_bar: false, enable_model_summary: false}
model: {backbone: artifacts/backbones/nano, learning_rate: 0.01, export_dir: artifacts/tasks/questions}
data: {batch_size: 4}
"""

# --- its registry row ----------------------------------------------------------------------------------------
SPEC = TaskSpec(
    name="questions", title="Question or statement", module=f"{__name__}.QuestionDetector",
    data=f"{__name__}.QuestionData", benchmark="8 sentences made in this test", split="test", metrics=("accuracy",),
    sample="Is this a question?", baselines=f"{__name__}.question_mark_baseline",
    anchors=(Anchor("accuracy", "a person", 100.0, "by construction"),),
)
# its benchmark method and a preset that runs it
METHOD_YAML = "trainer: {max_epochs: 2}\n"
PRESET_YAML = """\
title: a preset made in this test
backbone: artifacts/backbones/nano
minutes: 1
tasks:
  questions:
    budget_s: 30
    methods:
      fine-tuned: {config: configs/tasks/questions/unit.yaml}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A working folder with the task's YAML and a nano backbone where the YAML expects them; the task
    registered for this test only."""
    from tasks import catalog

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs" / "tasks" / "questions").mkdir(parents=True)
    (tmp_path / "configs" / "bench").mkdir(parents=True)
    (tmp_path / "configs" / "tasks" / "questions.yaml").write_text(YAML)
    (tmp_path / "configs" / "tasks" / "questions" / "unit.yaml").write_text(METHOD_YAML)
    (tmp_path / "configs" / "bench" / "unit.yaml").write_text(PRESET_YAML)
    make_backbone(tmp_path / "artifacts" / "backbones" / "nano")
    catalog.register(SPEC)
    yield tmp_path
    catalog.unregister(SPEC.name)


def test_a_new_task_gets_a_command_a_benchmark_row_a_demo_tab_and_a_typed_predict(project, capsys):
    from demos.app import build_app
    from demos.common import ArtifactStore
    from demos.tabs_tasks import classify
    from tasks.artifact import load_task
    from tasks.bench import run_bench
    from tasks.cli import main

    # the command line: listed in --help, and `gptsuite questions fit --config ...` trains and exports it
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    assert "questions" in help_text and "question or statement" in help_text
    assert main(["questions", "fit", "--config", "configs/tasks/questions.yaml"]) == 0
    task = load_task(project / "artifacts" / "tasks" / "questions")
    assert task.hparams.label_names == ["question", "statement"]  # taken from the data module

    # predict is typed: a list in, a list of LabelScores out; one text in, one LabelScores out
    many = task.predict(["Is it raining?", "It is raining."])
    one = task.predict("Is it raining?")
    assert all(isinstance(o, LabelScores) for o in many) and len(many) == 2
    assert one.scores == pytest.approx(many[0].scores, abs=1e-6)  # the same text, batched or alone
    assert abs(sum(one.scores.values()) - 1) < 1e-5 and one.label in ("question", "statement")
    with pytest.raises(TypeError, match="a list of str"):
        task.predict([1])

    # the benchmark: a row per metric with its interval, its baseline and its anchor
    rows = run_bench("unit", ["questions"], out_dir=project / "out", runs_dir=project / "runs")
    (row,) = rows
    assert (row["task"], row["metric"], row["method"], row["n_eval"]) == ("questions", "accuracy", "fine-tuned", 8)
    assert row["baselines"] == {"ends-with-?": 100.0} and row["anchors"][0]["name"] == "a person"
    assert row["spent"]["budget_s"] == 30 and row["ci95"] is None  # no per-example statistics declared
    assert "| questions (8 sentences made in this test) | accuracy |" in (project / "out" / "results.md").read_text()
    predictions = (project / "runs" / "unit" / "questions" / "fine-tuned").rglob("test_predictions.jsonl")
    assert len(next(predictions).read_text().splitlines()) == 8  # written by TaskModule for every task

    # the demo: a tab titled from the spec, laid out for LabelScores, answering through the saved task
    demo = build_app(project / "artifacts")
    config = demo.get_config_file()
    assert "Question or statement" in {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert "questions" in {d["api_name"] for d in config["dependencies"] if d.get("api_name")}
    probs = classify(ArtifactStore(project / "artifacts"), "questions", "Is this a question?")
    assert set(probs) == {"question", "statement"}


def test_the_registry_refuses_a_second_task_of_the_same_name_and_a_name_that_is_no_identifier():
    from tasks import catalog

    with pytest.raises(ValueError, match="registered already"):
        catalog.register(catalog.TASKS["ner"])
    with pytest.raises(ValueError, match="identifier"):
        catalog.register(TaskSpec(**{**SPEC.__dict__, "name": "two words"}))
    with pytest.raises(ValueError, match="unknown task 'poetry'; the tasks are classification, sentiment"):
        catalog.get("poetry")


def test_every_registered_task_has_a_demo_layout_and_a_typed_predict():
    from demos.tabs_tasks import tab_layout
    from tasks.catalog import TASKS

    for spec in TASKS.values():
        assert isinstance(spec.sample, spec.input_type), spec.name  # the demo's sample is a valid input
        assert tab_layout(spec) is not None
        assert spec.output_type.__module__ == "tasks.outputs", spec.name


class Unshowable(QuestionDetector):
    """A task whose output type no demo layout shows."""

    output_type = dict


def test_a_task_the_demo_cannot_show_gets_a_notice_and_the_others_still_work(project):
    from demos.app import build_app
    from tasks import catalog

    spec = TaskSpec(**{**SPEC.__dict__, "name": "unshowable", "module": f"{__name__}.Unshowable"})
    catalog.register(spec)
    try:
        config = build_app(project / "artifacts").get_config_file()
    finally:
        catalog.unregister("unshowable")
    notices = [c["props"].get("value", "") for c in config["components"]
               if c["props"].get("elem_id") == "unshowable-status"]
    assert notices and "no layout for unshowable" in notices[0]
    assert "questions" in {d["api_name"] for d in config["dependencies"] if d.get("api_name")}


def test_label_maps_of_model_and_data_must_agree(project, capsys):
    from tasks.cli import main

    assert main(["questions", "fit", "--config", "configs/tasks/questions.yaml", "--trainer.fast_dev_run", "1",
                 "--model.label_names", "[statement, question]"]) == 2
    assert re.search(r"gptsuite questions fit: error: model.label_names \['statement', 'question'\] and the data's "
                     r"label map", capsys.readouterr().err)


def test_the_task_command_has_no_optimizer_flags_and_no_predict_subcommand(capsys):
    from tasks.cli import main

    with pytest.raises(SystemExit):
        main(["qa", "--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: gptsuite qa") and "{fit,validate,test}" in text  # not Lightning's predict
    assert "gptsuite qa predict --task DIR --input FILE --output FILE" in " ".join(text.split())  # but ours
    with pytest.raises(SystemExit):
        main(["qa", "fit", "--help"])
    assert "--optimizer" not in capsys.readouterr().out


def test_bench_refuses_a_task_its_preset_does_not_define(project):
    from tasks.bench import run_bench

    with pytest.raises(ValueError, match="preset 'smoke' has no entry for questions"):
        run_bench("smoke", ["questions"])


def test_a_registry_row_is_a_package_that_defines_its_spec(tmp_path, monkeypatch):
    """What a PACKAGES row does, on a package made here: its __init__.py's SPEC is registered."""
    from tasks import catalog

    (tmp_path / "toy_task").mkdir()
    (tmp_path / "toy_task" / "__init__.py").write_text(
        "from tasks.spec import TaskSpec\n"
        f"SPEC = TaskSpec(name='toy_row', title='Toy', module='{__name__}.QuestionDetector', "
        f"data='{__name__}.QuestionData', benchmark='none', split='test', metrics=('accuracy',), sample='x')\n")
    (tmp_path / "no_spec").mkdir()
    (tmp_path / "no_spec" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        spec = catalog.register_package("toy_task")
        assert catalog.get("toy_row") is spec and spec.module_class is QuestionDetector
    finally:
        catalog.unregister("toy_row")
    with pytest.raises(ImportError, match="the task registry's row 'no_spec' .* must import and define SPEC"):
        catalog.register_package("no_spec")

"""A user's own data through the commands the README gives: fit (scores the test file, exports to a named
folder), predict on an unlabelled file, and the demo's listing; CSV for classification, CoNLL columns for
NER, the official nested SQuAD JSON for QA. Driven through `tasks.cli.main`, as the shell runs it."""

from __future__ import annotations

import json

import pytest

from tasks.cli import main
from tests.helpers import ROOT, SENTENCES, make_backbone

QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--trainer.precision", "32-true", "--trainer.max_epochs", "1", "--data.batch_size", "4"]


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("backbone") / "nano")


def fit(task: str, backbone_dir, files: dict, export_dir, *extra: str) -> None:
    flags = [f"--data.{split}_file={path}" for split, path in files.items()]
    assert main([task, "fit", "--config", f"{ROOT}/configs/tasks/{task}.yaml", "--model.backbone", str(backbone_dir),
                 *flags, "--model.export_dir", str(export_dir), *QUIET, *extra]) == 0


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_classification_csv_fit_test_predict(backbone_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = "text,label\n" + "".join(f'"{text}",{label}\n' for text, label in SENTENCES)
    for split in ("train", "test"):
        (tmp_path / f"{split}.csv").write_text(rows)
    fit("classification", backbone_dir, {"train": "train.csv", "test": "test.csv"}, "artifacts/tasks/my-reviews")
    folder = tmp_path / "artifacts/tasks/my-reviews"
    scores = json.loads((folder / "test_metrics.json").read_text())
    assert scores["test/examples"] == len(SENTENCES)  # the test file, scored after fit
    assert 0.0 <= scores["test/accuracy"] <= 1.0
    assert json.loads((folder / "task.json").read_text())["name"] == "classification"

    (tmp_path / "new.txt").write_text("a wonderful film\n\nthe worst plot\n")
    assert main(["classification", "predict", "--task", str(folder), "--input", "new.txt", "--output",
                 "out/predictions.jsonl"]) == 0
    predictions = read_jsonl(tmp_path / "out/predictions.jsonl")
    assert [p["input"] for p in predictions] == ["a wonderful film", "the worst plot"]
    for p in predictions:
        assert set(p["scores"]) == {"negative", "positive"}
        assert p["label"] == max(p["scores"], key=p["scores"].get)
        assert sum(p["scores"].values()) == pytest.approx(1.0, abs=1e-4)

    # the demo lists the folder under its task, with the backbone it sits on and the test score fit recorded
    from demos.common import ArtifactStore
    from demos.tabs_tasks import classify, model_info

    store = ArtifactStore("artifacts", precision="32-true")
    assert [m.name for m in store.models("classification")] == ["my-reviews"]
    assert store.models("sentiment") == []  # the recorded name settles which task it is
    folder_value = str(store.models("classification")[0].path)  # what the tab's dropdown holds
    info = model_info(store, "classification", folder_value)
    assert "nano" in info and f"Accuracy {100 * scores['test/accuracy']:.1f}" in info.replace("accuracy", "Accuracy")
    assert f"on {len(SENTENCES)} test examples" in info
    assert classify(store, "classification", "a wonderful film", folder_value) == pytest.approx(
        predictions[0]["scores"], abs=1e-4)


CONLL = """-DOCSTART- -X- -X- O

Angela NNP B-NP B-PER
Merkel NNP I-NP I-PER
visited VBD B-VP O
Paris NNP B-NP B-LOC
. . O O

Reuters NNP B-NP B-ORG
reported VBD B-VP O
it PRP B-NP O
. . O O
"""


def test_ner_conll_fit_test_predict(backbone_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.conll").write_text(CONLL * 3)
    (tmp_path / "test.conll").write_text(CONLL)
    fit("ner", backbone_dir, {"train": "train.conll", "test": "test.conll"}, "artifacts/tasks/ner-mine")
    folder = tmp_path / "artifacts/tasks/ner-mine"
    scores = json.loads((folder / "test_metrics.json").read_text())
    assert scores["test/examples"] == 2  # the two sentences, -DOCSTART- skipped
    assert "test/f1" in scores
    labels = json.loads((folder / "task.json").read_text())["hparams"]["label_names"]
    assert labels[0] == "O" and set(labels) == {"O", "B-PER", "I-PER", "B-LOC", "B-ORG"}

    (tmp_path / "new.conll").write_text("Angela B-PER\nMerkel I-PER\n\nParis B-LOC\n")
    assert main(["ner", "predict", "--task", str(folder), "--input", "new.conll", "--output", "p.jsonl"]) == 0
    predictions = read_jsonl(tmp_path / "p.jsonl")
    assert [p["words"] for p in predictions] == [["Angela", "Merkel"], ["Paris"]]
    assert all(len(p["tags"]) == len(p["words"]) and set(p["tags"]) <= set(labels) for p in predictions)
    assert_listed_by_the_demo("ner", "ner-mine", "F1", scores["test/f1"], 2)


SQUAD = {"version": "1.1", "data": [{"title": "Cities", "paragraphs": [
    {"context": "Paris is the capital of France. It lies on the Seine.",
     "qas": [{"id": "q1", "question": "What is the capital of France?",
              "answers": [{"text": "Paris", "answer_start": 0}]},
             {"id": "q2", "question": "Which river runs through Paris?",
              "answers": [{"text": "the Seine", "answer_start": 43}]}]},
    {"context": "Berlin is the capital of Germany.",
     "qas": [{"id": "q3", "question": "What is the capital of Germany?",
              "answers": [{"text": "Berlin", "answer_start": 0}]}]}]}]}


def test_qa_nested_squad_json_fit_test_predict(backbone_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.json").write_text(json.dumps(SQUAD))
    (tmp_path / "dev.json").write_text(json.dumps(SQUAD))
    fit("qa", backbone_dir, {"train": "train.json", "test": "dev.json"}, "artifacts/tasks/qa-mine",
        "--data.max_train_examples", "null", "--data.max_eval_examples", "null", "--model.doc_stride", "8")
    folder = tmp_path / "artifacts/tasks/qa-mine"
    scores = json.loads((folder / "test_metrics.json").read_text())
    assert scores["test/examples"] == 3 and {"test/f1", "test/exact_match"} <= scores.keys()

    unanswered = {"data": [{"title": "t", "paragraphs": [
        {"context": "Rome is in Italy.", "qas": [{"id": "a", "question": "Where is Rome?", "answers": []}]}]}]}
    (tmp_path / "questions.json").write_text(json.dumps(unanswered))
    assert main(["qa", "predict", "--task", str(folder), "--input", "questions.json", "--output", "a.jsonl"]) == 0
    (prediction,) = read_jsonl(tmp_path / "a.jsonl")
    assert prediction["input"] == {"question": "Where is Rome?", "context": "Rome is in Italy."}
    assert prediction["text"] == "Rome is in Italy."[prediction["start"]:prediction["end"]]
    assert_listed_by_the_demo("qa", "qa-mine", "F1", scores["test/f1"] / 100, 3)  # QA's F1 is already in %


def assert_listed_by_the_demo(task: str, name: str, metric: str, score: float, n: int) -> None:
    """The demo (run from the same folder) lists the exported folder under its task, with its test score."""
    from demos.common import ArtifactStore
    from demos.tabs_tasks import model_info

    store = ArtifactStore("artifacts", precision="32-true")
    (model,) = store.models(task)
    assert model.name == name
    info = model_info(store, task, str(model.path))
    assert f"{metric} {100 * score:.1f}" in info and f"on {n} test examples" in info and "nano" in info


def test_user_file_readers_parse_what_they_say():
    from tasks.data import nested_squad, parse_conll_columns

    assert parse_conll_columns("a O\nb B-X\n\n-DOCSTART- O\n\nc\tI-X\n") == [
        {"tokens": ["a", "b"], "ner_tags": ["O", "B-X"]}, {"tokens": ["c"], "ner_tags": ["I-X"]}]
    with pytest.raises(ValueError, match="line 2: 'lonely' has one column"):
        parse_conll_columns("a O\nlonely\n")
    assert nested_squad(json.dumps(SQUAD)) == SQUAD
    assert nested_squad('{"data": [1, 2]}') is None and nested_squad('{"question": "q"}\n') is None


def test_a_file_given_twice_must_agree():
    from tasks.data import user_files

    assert user_files({"train": "a.csv"}, train="a.csv", test="t.csv") == {"train": "a.csv", "test": "t.csv"}
    assert user_files(None, train=None) is None
    with pytest.raises(ValueError, match="data.train_file b.csv and data.data_files.train a.csv differ"):
        user_files({"train": "a.csv"}, train="b.csv")


def test_a_new_export_drops_the_old_model_s_test_score(backbone_dir, tmp_path, monkeypatch):
    """A folder's test score belongs to the model it was measured on: exporting a new one removes it."""
    monkeypatch.chdir(tmp_path)
    rows = "text,label\n" + "".join(f'"{text}",{label}\n' for text, label in SENTENCES)
    (tmp_path / "train.csv").write_text(rows)
    fit("classification", backbone_dir, {"train": "train.csv", "test": "train.csv"}, "out")
    assert (tmp_path / "out" / "test_metrics.json").is_file()
    fit("classification", backbone_dir, {"train": "train.csv"}, "out")  # no test file: no score for this model
    assert (tmp_path / "out" / "task.json").is_file() and not (tmp_path / "out" / "test_metrics.json").exists()


def test_the_yaml_s_caps_on_your_own_file_are_said(backbone_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = "text,label\n" + "".join(f'"{text}",{label}\n' for text, label in SENTENCES * 3)
    (tmp_path / "train.csv").write_text(rows)
    with pytest.warns(UserWarning, match=r"train: using a seeded 5 of your file's 24 rows \(data.max_train_examples: "
                                         r"5\); --data.max_train_examples null uses them all"):
        fit("classification", backbone_dir, {"train": "train.csv"}, "out", "--data.max_train_examples", "5")


def test_qa_holds_out_whole_paragraphs_when_your_data_has_no_validation_file(backbone_dir):
    import datasets

    from tasks.qa.data import QAData

    rows = [{"context": f"context {i % 20}", "question": f"q{i}"} for i in range(100)]
    train, validation = QAData(backbone=str(backbone_dir)).hold_out(datasets.Dataset.from_list(rows))
    assert len(set(validation["context"])) == 2 and not set(validation["context"]) & set(train["context"])
    assert len(train) + len(validation) == 100

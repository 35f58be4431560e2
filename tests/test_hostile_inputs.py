"""Folders and inputs the project did not make: a task folder is data, never code, and every bad input is a
one-line error that names the input and the fix."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from backbone.artifact import ArtifactError
from tasks.artifact import load_task, save_task
from tests.helpers import make_backbone


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A backbone and a saved sentiment task on it."""
    from tasks.classification.module import SequenceClassifier

    root = tmp_path_factory.mktemp("saved")
    backbone = make_backbone(root / "nano")
    task = SequenceClassifier(backbone=str(backbone), label_names=["negative", "positive"])
    task.configure_model()
    save_task(task, root / "task")
    return root


@pytest.fixture
def folder(saved, tmp_path):
    """A copy of the saved task to tamper with."""
    shutil.copytree(saved / "task", tmp_path / "task")
    return tmp_path / "task"


def edit_task_file(folder, change) -> None:
    spec = json.loads((folder / "task.json").read_text())
    change(spec)
    (folder / "task.json").write_text(json.dumps(spec))


def test_a_foreign_class_is_refused_before_anything_is_imported(folder, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "evil_module.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Task: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    edit_task_file(folder, lambda s: s.update(task="evil_module.Task"))
    with pytest.raises(ArtifactError, match=r"task.json names the class 'evil_module.Task', which is not a regis"):
        load_task(folder)
    assert not marker.exists() and "evil_module" not in sys.modules
    edit_task_file(folder, lambda s: s.update(task="tasks.classification.module.SequenceClassifier",
                                              adapter={"class_path": "subprocess.Popen",
                                                       "init_args": {"args": "touch pwned", "shell": True}}))
    with pytest.raises(ArtifactError, match="names the adapter 'subprocess.Popen'"):
        load_task(folder)


@pytest.mark.parametrize("change, message", [
    (lambda s: s["hparams"].update(head=5), "head"),
    (lambda s: s["hparams"].update(rm_rf="/"), "rm_rf"),
    (lambda s: s["adapter"].update(class_path="tasks.adapters.LoRA", init_args={"rank": "eight"}), "rank"),
], ids=["wrong type", "unknown argument", "adapter argument"])
def test_arguments_are_checked_against_the_typed_signatures(folder, change, message):
    edit_task_file(folder, change)
    with pytest.raises(ArtifactError, match=f"task.json: the .* arguments do not fit .*{message}"):
        load_task(folder)


def test_broken_files_are_named(folder, saved):
    (folder / "task.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"task/task.json is not a task file"):
        load_task(folder)
    shutil.copy(saved / "task" / "task.json", folder / "task.json")
    weights = (folder / "trainable.safetensors").read_bytes()
    (folder / "trainable.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ArtifactError, match=r"trainable.safetensors is unreadable \(truncated"):
        load_task(folder)


def test_nan_weights_are_refused_with_the_file_name(folder, saved, tmp_path):
    state = load_file(str(folder / "trainable.safetensors"))
    name = next(iter(state))
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(folder / "trainable.safetensors"))
    with pytest.raises(ArtifactError, match=f"trainable.safetensors: {name} holds NaN"):
        load_task(folder)
    backbone = tmp_path / "nano"
    shutil.copytree(saved / "nano", backbone)
    weights = load_file(str(backbone / "model.safetensors"))
    weights["transformer.wte.weight"][0, 0] = float("inf")
    save_file(weights, str(backbone / "model.safetensors"))
    from backbone.artifact import load_model

    with pytest.raises(ArtifactError, match="model.safetensors: transformer.wte.weight holds NaN or infinite"):
        load_model(backbone)


def test_backbone_config_and_tokenizer_config_are_typed(saved, tmp_path):
    from backbone.artifact import load_model
    from backbone.tokenizer import Tokenizer

    backbone = tmp_path / "nano"
    shutil.copytree(saved / "nano", backbone)
    config = json.loads((backbone / "config.json").read_text())
    (backbone / "config.json").write_text(json.dumps({**config, "bias": "false"}))
    with pytest.raises(ArtifactError, match="GPTConfig.bias must be true or false, got 'false'"):
        load_model(backbone)
    (backbone / "tokenizer_config.json").write_text("garbage{")
    with pytest.raises(ValueError, match="tokenizer_config.json is not a valid tokenizer config"):
        Tokenizer.from_pretrained(backbone)
    (backbone / "tokenizer_config.json").write_text(json.dumps({"eos_token": ["not", "a", "string"]}))
    with pytest.raises(ValueError, match="eos_token must be a string"):
        Tokenizer.from_pretrained(backbone)


@pytest.mark.parametrize("field, value, message", [
    ("temperature", float("inf"), "temperature must be a finite number"),
    ("repetition_penalty", float("inf"), "repetition_penalty must be a finite number"),
    ("seed", 2**70, r"seed must be in \[0, 2\*\*63\)"),
])
def test_decoding_settings_outside_their_range_are_refused(field, value, message):
    from backbone.generate import GenerationConfig

    with pytest.raises(ValueError, match=message):
        GenerationConfig(**{field: value})


def test_generate_names_a_prompt_that_is_not_utf8(capsys):
    from tasks.cli import main

    bad = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of a Latin-1 byte in argv
    assert main(["generate", "--preset", "nano", "--prompt", bad, "--max-new-tokens", "2"]) == 2
    assert "--prompt 1 is not UTF-8 text (byte b'\\xe9' at character 3)" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"text,label\ncaf\xe9,1\n", r"is not UTF-8 text \(byte 0xe9 at offset 14\)"),
    (b"text,label\ngood,pos\nfine,pos\n", r"the label map is \['pos'\]"),
], ids=["empty", "latin-1", "one label"])
def test_bad_user_files_are_named(saved, tmp_path, content, message):
    from tasks.classification.data import TextClassificationData

    path = tmp_path / "train.csv"
    path.write_bytes(content)
    data = TextClassificationData(backbone=str(saved / "nano"), data_files={"train": str(path)})
    with pytest.raises(ValueError, match=message):
        data.setup()

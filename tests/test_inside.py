"""Seeing inside the model: the logit lens, the layer probe and token attribution, each against a case
computed by hand."""

from __future__ import annotations

import json

import pytest
import torch

from backbone.lens import layer_logits, logit_lens
from tasks.attribution import attribute
from tasks.classification.module import SequenceClassifier
from tasks.probe import Examples, fit_linear_probe, probe_layers, probe_table
from tests.helpers import make_backbone


def test_the_lens_reads_the_embeddings_at_layer_0_and_the_model_at_the_top(nano_model, tiny_tokenizer):
    model, ids = nano_model, torch.tensor([tiny_tokenizer.encode("the cat sat on the mat")])
    grid = layer_logits(model, ids)  # (n_layer + 1, T, V)
    t = model.transformer
    by_hand = model.lm_head(t.ln_f(t.wte(ids) + t.wpe(torch.arange(ids.size(1)))))[0]  # layer 0: W_U ln_f(e + p)
    assert grid.shape == (model.config.n_layer + 1, ids.size(1), model.config.vocab_size)
    torch.testing.assert_close(grid[0], by_hand)
    torch.testing.assert_close(grid[-1], model.lm_logits(model(ids))[0])  # the top row is the model itself
    lens = logit_lens(model, tiny_tokenizer, "the cat sat on the mat", top=2)
    assert lens.top_tokens[-1][-1][0] == tiny_tokenizer.decode([int(grid[-1, -1].argmax())])
    assert lens.top_probs[-1, -1, 0] == pytest.approx(float(grid[-1, -1].softmax(-1).max()), rel=1e-5)
    assert len(lens.table().splitlines()) == model.config.n_layer + 2


def test_a_linear_probe_separates_what_a_line_separates():
    x = torch.tensor([[0.0, 1.0], [0.2, 2.0], [1.0, 0.1], [2.0, 0.3], [3.0, 0.0], [0.1, 3.0]])
    y = torch.tensor([0, 0, 1, 1, 1, 0])  # label 1 exactly where the first coordinate exceeds the second
    predict = fit_linear_probe(x, y, classes=2)
    assert predict(x).tolist() == y.tolist()
    assert predict(torch.tensor([[5.0, 1.0], [1.0, 5.0]])).tolist() == [1, 0]


def test_the_embedding_layer_names_entities_that_are_always_the_same_words(tmp_path):
    """When a word's tag is fixed by the word itself, the embeddings (layer 0) read it perfectly: F1 = 1, by
    hand (every entity found, none invented)."""
    backbone = make_backbone(tmp_path / "nano")
    from backbone.artifact import load_backbone

    model, tokenizer = load_backbone(backbone)
    words = ["paris", "film", "great", "rome", "a", "plot"]
    tag = {"paris": "B-LOC", "rome": "B-LOC"}
    sentences = [[words[(i * 5 + k) % 6] for k in range(4)] for i in range(30)]
    tags = [[tag.get(w, "O") for w in s] for s in sentences]
    scores = probe_layers(model, tokenizer, "ner", Examples(sentences[:20], tags[:20]),
                          Examples(sentences[20:], tags[20:]))
    assert [s.layer for s in scores] == list(range(model.config.n_layer + 1))
    assert scores[0].score == 1.0 and scores[0].ci95 == (1.0, 1.0) and scores[0].n == 10
    assert "| 0 | 100.0 | [100.0, 100.0] |" in probe_table(scores, "ner")


@pytest.fixture
def classifier(tmp_path):
    task = SequenceClassifier(backbone=str(make_backbone(tmp_path / "nano")), label_names=["negative", "positive"],
                              head_dropout=0.0)
    task.configure_model()
    torch.manual_seed(1)
    torch.nn.init.normal_(task.head.classifier.weight, std=1.0)  # an untrained head that still decides
    return task.eval()


def _logit_of(task, x, mask, label):
    """The label's logit with the token embeddings x fed in directly: the sequence head on the last token."""
    hidden = task.backbone(None, mask, inputs_embeds=x)
    return task.head(hidden[:, -1:, :])[0, label]


def test_gradient_x_input_is_the_gradient_times_the_embedding(classifier):
    text = "a wonderful moving film"
    result = attribute(classifier, text, label="positive", method="gradient_x_input")
    ids = torch.tensor([classifier.tokenizer.encode(text)])
    x = classifier.backbone.transformer.wte(ids).detach().requires_grad_(True)
    _logit_of(classifier, x, torch.ones_like(ids), 1).backward()
    torch.testing.assert_close(torch.tensor(result.scores), (x.grad * x).sum(-1)[0].detach(), rtol=1e-4, atol=1e-5)
    assert result.label == "positive" and len(result.tokens) == ids.size(1)


def test_integrated_gradients_add_up_to_the_change_they_explain(classifier):
    result = attribute(classifier, "dull and far too long", method="integrated_gradients", steps=200)
    assert sum(result.scores) == pytest.approx(result.logit - result.baseline_logit, rel=0.02, abs=1e-3)
    with pytest.raises(ValueError, match="not one of the task's labels"):
        attribute(classifier, "dull", label="neutral")


# --- the commands and the demo tab ---------------------------------------------------------------------------
def test_the_lens_and_attribution_commands_print_their_tables(tmp_path, capsys, classifier):
    from tasks.artifact import save_task
    from tasks.cli import main

    backbone = make_backbone(tmp_path / "lens-nano")
    assert main(["lens", "--backbone", str(backbone), "--text", "a wonderful film", "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("layer") and [line.split()[0] for line in lines[1:]] == ["0", "1", "2"]
    save_task(classifier, tmp_path / "sentiment")
    assert main(["attribute", "--task", str(tmp_path / "sentiment"), "--text", "dull plot", "--label", "negative",
                 "--method", "gradient_x_input"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("negative (p = ") and "gradient x input" in out
    assert main(["lens", "--backbone", str(backbone), "--text", "a", "--top", "0"]) != 0
    assert "--top must be at least 1, got 0" in capsys.readouterr().err


def test_the_probe_command_writes_its_report(tmp_path, capsys, monkeypatch):
    """The benchmark is swapped for the by-hand case above (the command's own data needs the data cache)."""
    import tasks.probe
    from tasks.cli import main

    words, tag = ["paris", "film", "great", "rome", "a", "plot"], {"paris": "B-LOC", "rome": "B-LOC"}
    sentences = [[words[(i * 5 + k) % 6] for k in range(4)] for i in range(30)]
    rows = Examples(sentences, [[tag.get(w, "O") for w in s] for s in sentences])
    monkeypatch.setattr(tasks.probe, "benchmark_examples",
                        lambda task, split, limit: Examples(rows.inputs[:20], rows.labels[:20]) if split == "train"
                        else Examples(rows.inputs[20:], rows.labels[20:]))
    backbone = make_backbone(tmp_path / "probe-nano")
    assert main(["probe", "--backbone", str(backbone), "--task", "ner", "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "probe.json").read_text())
    assert report["scores"][0]["score"] == 1.0 and report["test rows"] == 10 and report["task"] == "ner"
    assert "| 0 | 100.0 | [100.0, 100.0] |" in (tmp_path / "report" / "probe.md").read_text()


def test_the_demo_tab_reads_the_lens_the_probe_and_attribution(tmp_path, monkeypatch, classifier):
    import gradio as gr

    import demos.tabs_inside as tab
    from demos.app import build_app
    from demos.common import ArtifactStore
    from tasks.artifact import save_task

    make_backbone(tmp_path / "backbones" / "nano")
    save_task(classifier, tmp_path / "tasks" / "sentiment")
    store = ArtifactStore(tmp_path)
    lens = tab.lens_markdown(store, "nano", "a wonderful film")
    assert "| 2 (output) |" in lens and lens.count("\n| ") == 3 + 1  # header and layers 0, 1, 2
    explained = tab.attribution_markdown(store, "sentiment", "dull plot", "gradient_x_input", 8)
    assert explained.startswith("**") and "| token | attribution |" in explained
    monkeypatch.setattr(tab, "benchmark_examples", lambda task, split, n: Examples(
        ["good", "bad", "fine", "awful"][:n], ["positive", "negative", "positive", "negative"][:n]))
    assert "| layer | accuracy | 95% CI |" in tab.probe_markdown(store, "nano", "sentiment", 4, 10_000)
    with pytest.raises(gr.Error, match="classifier"):
        tab.attribution_markdown(store, "ner", "x", "gradient_x_input", 8)
    config = build_app(tmp_path).get_config_file()
    assert {"lens", "probe", "attribute"} <= {d["api_name"] for d in config["dependencies"] if d.get("api_name")}


def test_attribution_reads_a_frozen_layers_classifier_and_refuses_what_it_cannot(tmp_path):
    """The frozen-feature classifiers (the table's SmolLM2 rows) build no graph by default: attribution asks
    for one, and integrated gradients still add up to what they explain."""
    from tasks.adapters import FrozenLayers

    backbone = str(make_backbone(tmp_path / "nano"))
    task = SequenceClassifier(backbone=backbone, adapter=FrozenLayers([1, 2]), label_names=["a", "b"],
                              pooling="mean+last", head_dropout=0.0)
    task.configure_model()
    torch.nn.init.normal_(task.head.classifier.weight, std=1.0)
    result = attribute(task.eval(), "a wonderful moving film", method="integrated_gradients", steps=200)
    assert sum(result.scores) == pytest.approx(result.logit - result.baseline_logit, rel=0.02, abs=1e-3)
    assert any(abs(s) > 0 for s in result.scores)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        attribute(task, "a film", steps=0)
    echo = SequenceClassifier(backbone=backbone, adapter=FrozenLayers([1], echo=True), label_names=["a", "b"])
    echo.configure_model()
    with pytest.raises(ValueError, match="echo"):
        attribute(echo, "a film")

"""The task framework: heads, every adapter, save/reload, bad input, and each labelling CLI with fast_dev_run."""

from __future__ import annotations

import functools
import json
import re

import pytest
import torch

from tasks.adapters import Frozen, FullFineTune, LoRA, PrefixTuning, PromptTuning
from tasks.artifact import load_task
from tasks.heads import LabelWordScorer, SequenceHead, last_token_index, pool
from tasks.ner.module import merge_entities
from tasks.task_cli import run_cli
from tests.helpers import ROOT, make_backbone, newest_metrics, write_sentiment_files

ADAPTERS = [FullFineTune, Frozen, lambda: LoRA(rank=2, targets=["c_attn", "c_fc"]), lambda: PromptTuning(4, "positive"),
            lambda: PrefixTuning(3)]


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("backbone") / "nano")


@pytest.fixture(scope="module")
def rope_backbone_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("backbone") / "nano-rope", positions="rope")


def build(backbone_dir, adapter, **kw):
    from tasks.classification.module import SequenceClassifier

    task = SequenceClassifier(backbone=str(backbone_dir), adapter=adapter, label_names=["negative", "positive"], **kw)
    task.configure_model()
    return task


def batch_of(task, texts, labels):
    from tasks.classification.data import encode_texts

    ids, mask = encode_texts(task.tokenizer, texts, task.max_input_tokens)
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels), "texts": texts}


# --- heads -------------------------------------------------------------------------------------------------
def test_pool_reads_the_last_real_token_the_mean_or_both_for_any_trailing_dims():
    hidden = torch.randn(2, 5, 3, 8)  # (B, T, nL, C): per-layer states pool like mixed ones
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [2, 4]
    last = pool(hidden, mask, "last")
    torch.testing.assert_close(last[:, 0], torch.stack([hidden[0, 2], hidden[1, 4]]))
    both = pool(hidden, mask, "mean+last")
    assert both.shape == (2, 2, 3, 8)
    torch.testing.assert_close(both[0, 0], hidden[0, :3].mean(0))
    torch.testing.assert_close(both[:, 1], last[:, 0])
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "max")


def test_sequence_head_reads_every_pooled_vector():
    head = SequenceHead(8, 3, n_pooled=2, dropout=0.0)
    pooled = torch.randn(4, 2, 8)
    torch.testing.assert_close(head(pooled), head.classifier(pooled.flatten(1)))
    assert SequenceHead(8, 3, n_pooled=1, hidden=16)(torch.randn(4, 1, 8)).shape == (4, 3)


def test_label_word_scorer_sums_label_token_logprobs(backbone_dir):
    task = build(backbone_dir, Frozen(), head="prompt", label_words=[" negative", " positive"],
                 template="Review: {text}\nSentiment:")
    texts = ["a wonderful film", "dull"]
    scores = task.logits(batch_of(task, texts, [1, 0]))
    assert scores.shape == (2, 2)
    # recompute one score by hand: log p(label tokens | context) under the plain LM
    tok, model = task.tokenizer, task.backbone
    context = task.scorer.context_ids(tok, texts[0], task.max_input_tokens)
    assert context == tok.encode("Review: a wonderful film\nSentiment:")  # zero-shot: just the template
    label = tok.encode(" positive")
    ids = torch.tensor([context + label])
    logprobs = torch.log_softmax(model.lm_logits(model(ids)).float(), -1)[0]
    manual = sum(logprobs[len(context) - 1 + i, t] for i, t in enumerate(label))
    assert scores[0, 1].item() == pytest.approx(manual.item(), abs=1e-4)


def test_few_shot_context_keeps_the_query_and_the_demonstrations_that_fit(backbone_dir):
    tok = build(backbone_dir, Frozen(), head="prompt", label_words=[" no", " yes"]).tokenizer
    scorer = LabelWordScorer("Q: {text}\nA:", [" no", " yes"])
    scorer.examples = [("x", 1), ("y", 0)]
    full = tok.decode(scorer.context_ids(tok, "z", 64))
    assert full == "Q: x\nA: yes\n\nQ: y\nA: no\n\nQ: z\nA:"  # demonstrations first, in order
    query, first_shot = len(tok.encode("Q: z\nA:")), len(tok.encode("Q: x\nA: yes\n\n"))
    assert tok.decode(scorer.context_ids(tok, "z", query + first_shot)) == "Q: x\nA: yes\n\nQ: z\nA:"
    assert tok.decode(scorer.context_ids(tok, "z", query)) == "Q: z\nA:"  # no room for a whole demonstration
    # a query too long on its own: its text is cut at the end, the template's words around it stay
    cut = tok.decode(scorer.context_ids(tok, "word " * 200, 20))
    assert cut.startswith("Q: word word") and cut.endswith("\nA:") and len(tok.encode(cut)) <= 20
    assert scorer.counts == {"queries": 4, "queries_cut": 1, "shots_kept": 3}
    with pytest.raises(ValueError, match="text"):
        LabelWordScorer("no placeholder", [" a"])


def test_merge_entities_joins_b_and_i():
    words = ["John", "Smith", "visited", "New", "York", "and", "Acme"]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "I-ORG"]
    assert [(e.type, e.text) for e in merge_entities(words, tags)] == [
        ("PER", "John Smith"), ("LOC", "New York"), ("ORG", "Acme")]


# --- adapters ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_adapter", ADAPTERS, ids=["full", "frozen", "lora", "prompt", "prefix"])
@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_only_adapter_and_head_parameters_get_gradients(backbone_dir, rope_backbone_dir, make_adapter, positions):
    task = build(backbone_dir if positions == "learned" else rope_backbone_dir, make_adapter())
    trainable = {id(p) for p in task.trainable_parameters()}
    task.loss(batch_of(task, ["a wonderful film", "dull and slow"], [1, 0])).backward()
    for name, p in task.named_parameters():
        if id(p) in trainable:
            assert p.requires_grad and p.grad is not None, name
            # LoRA's A gets no gradient at the first step: B starts at zero, so dL/dA = 0 exactly.
            assert p.grad.abs().sum() > 0 or name.endswith("lora_A"), name
        else:
            assert not p.requires_grad and p.grad is None, name
    head_params = {id(p) for p in task.head.parameters()}
    assert head_params <= trainable
    if isinstance(task.adapter, Frozen):
        assert trainable == head_params


def test_lora_starts_at_the_pretrained_function(backbone_dir):
    plain, lora = build(backbone_dir, Frozen()), build(backbone_dir, LoRA(rank=4))
    lora.head.load_state_dict(plain.head.state_dict())
    plain.eval()
    lora.eval()
    batch = batch_of(plain, ["a wonderful film"], [1])
    torch.testing.assert_close(plain.logits(batch), lora.logits(batch))


@pytest.mark.parametrize("make_adapter", [lambda: PromptTuning(4), lambda: PrefixTuning(4)], ids=["prompt", "prefix"])
def test_virtual_tokens_leave_room_in_the_context(backbone_dir, make_adapter):
    """The 4 virtual positions come out of the context: inputs are cut to block_size - 4 and still run.
    (That they act as real earlier positions is tested exactly in test_adapters_exact.py.)"""
    task = build(backbone_dir, make_adapter())
    assert task.max_input_tokens == task.backbone.config.block_size - 4
    batch = batch_of(task, ["x " * 200], [0])  # far longer than the context: truncated, no error
    assert batch["input_ids"].shape[1] == task.max_input_tokens
    assert task.logits(batch).shape == (1, 2)


def test_predict_takes_one_text_or_a_list_and_refuses_what_it_cannot_read(backbone_dir):
    from tasks.outputs import LabelScores

    task = build(backbone_dir, Frozen())
    one, listed = task.predict("a wonderful film"), task.predict(["a wonderful film"])
    assert isinstance(one, LabelScores) and listed == [one]  # a string is one text, not a list of characters
    assert task.predict([]) == []
    for bad, error, message in (([""], ValueError, "item 0 is empty"),
                                (["ok", "\ud800"], ValueError, "item 1 is not valid Unicode"),
                                ([b"bytes"], TypeError, "a list of str .or one.; item 0 is a bytes")):
        with pytest.raises(error, match=message):
            task.predict(bad)


# --- save / reload -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_adapter", ADAPTERS, ids=["full", "frozen", "lora", "prompt", "prefix"])
def test_saved_task_reloads_to_identical_predictions(backbone_dir, tmp_path, make_adapter):
    from tasks.artifact import save_task

    task = build(backbone_dir, make_adapter())
    with torch.no_grad():  # move the trained parts away from their initial values
        for p in task.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_task(task, tmp_path / "task")
    again = load_task(tmp_path / "task")
    texts = ["a wonderful film", "the worst script"]
    assert task.predict(texts) == again.predict(texts)


def test_load_task_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="task.json"):
        load_task(tmp_path)


# --- bad input ---------------------------------------------------------------------------------------------
def _data(backbone_dir, files, **kw):
    from tasks.classification.data import TextClassificationData

    data = TextClassificationData(backbone=str(backbone_dir), data_files=files, **kw)
    return data


def test_label_outside_the_label_map_names_the_row(backbone_dir, tmp_path):
    files = write_sentiment_files(tmp_path)
    with open(files["test"], "a") as f:
        f.write("an odd one,neutral\n")
    data = _data(backbone_dir, files, label_names=["negative", "positive"])
    with pytest.raises(ValueError, match=r"test row 8: label 'neutral' is not in the label map"):
        data.setup()


def test_empty_text_names_the_row(backbone_dir, tmp_path):
    files = write_sentiment_files(tmp_path)
    with open(files["train"], "a") as f:
        f.write('"   ",positive\n')
    with pytest.raises(ValueError, match="train row 8: empty text"):
        _data(backbone_dir, files).setup()


def test_tokens_and_tags_of_different_lengths_name_the_row(backbone_dir, tmp_path):
    from tasks.ner.data import TokenTaggingData

    rows = [{"tokens": ["a", "b"], "ner_tags": ["B-PER", "O"]}, {"tokens": ["a", "b"], "ner_tags": ["O"]}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    data = TokenTaggingData(backbone=str(backbone_dir), data_files={"train": str(path)})
    with pytest.raises(ValueError, match="row 1: 2 tokens but 1 tags"):
        data.setup()


def test_missing_backbone_says_which_command_creates_it(tmp_path):
    from tasks.classification.module import SequenceClassifier

    task = SequenceClassifier(backbone=str(tmp_path / "nope"), label_names=["a", "b"])
    with pytest.raises(FileNotFoundError, match="gptsuite pretrain fit"):
        task.configure_model()


# --- the CLIs end to end -----------------------------------------------------------------------------------
def _cli_args(task: str, backbone_dir, tmp_path, files, *extra):
    return ["--config", f"{ROOT}/configs/tasks/{task}.yaml", "--model.backbone", str(backbone_dir),
            "--data.data_files", json.dumps(files), "--trainer.precision", "32",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *extra]


@pytest.mark.parametrize("task", ["classification", "sentiment"])
def test_sequence_task_cli_fit_and_test(backbone_dir, tmp_path, task, monkeypatch):


    files = write_sentiment_files(tmp_path)
    cli_main = functools.partial(run_cli, task)
    cli_main(["fit", *_cli_args(task, backbone_dir, tmp_path, files, "--trainer.fast_dev_run", "1",
                                "--model.export_dir", str(tmp_path / "task"), "--data.label_names",
                                '["negative", "positive"]', "--model.label_words", '[" negative", " positive"]')])
    assert load_task(tmp_path / "task").predict("great").scores.keys() == {"negative", "positive"}
    cli_main(["test", *_cli_args(task, backbone_dir, tmp_path, files, "--model.head", "prompt",
                                 "--model.label_words", '[" negative", " positive"]', "--model.few_shot", "2")])
    written = sorted((tmp_path / "run").rglob("test_metrics.json"), key=lambda p: p.stat().st_mtime)
    assert len(written) == 2  # fit scored the test file with the head it trained; then `test` the prompt path
    assert json.loads(written[0].read_text())["test/path"].startswith("sequence head")
    metrics = json.loads(written[-1].read_text())
    assert {"test/accuracy", "test/macro_f1", "test/f1"} <= metrics.keys()
    assert metrics["test/examples"] == 8
    # what the nano backbone's 64-token context kept is counted (the rules are tested on the scorer itself)
    assert re.match(r"prompt: 2 demonstrations, [0-2]\.\d per query fit whole in 64 tokens \(\d of 8 queries cut at "
                    r"the end\)", metrics["test/path"]), metrics["test/path"]


def test_ner_cli_fit_and_test(backbone_dir, tmp_path, monkeypatch):
    cli_main = functools.partial(run_cli, "ner")

    rows = [{"tokens": ["John", "lives", "in", "Paris", "."], "ner_tags": ["B-PER", "O", "O", "B-LOC", "O"]}] * 4
    files = {}
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
        files[split] = str(tmp_path / f"{split}.jsonl")
    lora = ["--model.adapter", "tasks.adapters.LoRA", "--model.learning_rate", "0.02"]
    cli_main(["fit", *_cli_args("ner", backbone_dir, tmp_path, files, "--trainer.max_epochs", "40",
                                "--trainer.logger", "false", *lora)])
    # the YAML's relative checkpoint folder (runs/ner/checkpoints) lands in the working directory: tmp_path
    last = tmp_path / "runs" / "ner" / "checkpoints" / "last.ckpt"
    cli_main(["test", *_cli_args("ner", backbone_dir, tmp_path, files, *lora), "--ckpt_path", str(last)])
    metrics = newest_metrics(tmp_path / "run")
    # the trained adapter and head, not a fresh one: the four training sentences are tagged exactly
    assert (metrics["test/precision"], metrics["test/recall"], metrics["test/f1"]) == (1.0, 1.0, 1.0)
    assert metrics["test/examples"] == 4
    assert metrics["test/adapter"] == "LoRA" and "conlleval" in metrics["test/seqeval"]


def test_label_maps_keep_integer_numbering_and_put_o_first():
    from tasks.data import infer_label_names, label_index

    names = infer_label_names([2, 0, 10, 1])
    assert names == [str(i) for i in range(11)] and label_index(10, names) == 10 and label_index(11, names) is None
    assert infer_label_names(["B-PER", "O", "I-PER"], first="O") == ["O", "B-PER", "I-PER"]
    assert infer_label_names(["pos", "neg"]) == ["neg", "pos"] and label_index("pos", ["neg", "pos"]) == 1


def test_few_shot_demonstrations_are_saved_with_the_task(backbone_dir, tmp_path):
    from tasks.artifact import save_task

    shots = [["a wonderful film", 1], ["dull and slow", 0]]
    task = build(backbone_dir, Frozen(), head="prompt", label_words=[" negative", " positive"], few_shot_examples=shots)
    save_task(task, tmp_path / "task")
    again = load_task(tmp_path / "task")
    assert again.scorer.examples == [("a wonderful film", 1), ("dull and slow", 0)]
    assert again.predict(["great"]) == task.predict(["great"])


def test_load_task_refuses_a_file_without_the_trained_tensors(backbone_dir, tmp_path):
    from safetensors.torch import save_file

    from tasks.artifact import save_task

    save_task(build(backbone_dir, LoRA(rank=2)), tmp_path / "task")
    save_file({}, str(tmp_path / "task" / "trainable.safetensors"))
    with pytest.raises(Exception, match="lacks trained tensors"):
        load_task(tmp_path / "task")


def test_resumed_fine_tune_equals_an_uninterrupted_one(backbone_dir, tmp_path):
    """fit, stop at step 2 of 4, resume from last.ckpt: the same weights, schedule and token count as 4 steps at
    once. One batch per epoch and no dropout, so nothing depends on the random state, which Lightning does not
    checkpoint (the shuffle order and dropout masks after a resume differ from an uninterrupted run's)."""
    from safetensors.torch import load_file

    cli_main = functools.partial(run_cli, "sentiment")

    files = write_sentiment_files(tmp_path)

    def fit(name: str, *extra: str, stop_at: int | None = None):
        callbacks = [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                      "init_args": {"dirpath": str(tmp_path / name / "ckpt"), "save_last": True}}]
        if stop_at:
            callbacks.append({"class_path": "tests.helpers.StopAtStep", "init_args": {"step": stop_at}})
        args = _cli_args("sentiment", backbone_dir, tmp_path / name, files, "--data.batch_size", "8",
                         "--trainer.max_epochs", "4", "--model.export_dir", str(tmp_path / name / "task"),
                         "--trainer.callbacks", json.dumps(callbacks), "--trainer.logger", "false",
                         "--data.label_names", '["negative", "positive"]', "--model.head_dropout", "0", *extra)
        return cli_main(["fit", *args])

    straight = fit("straight")
    assert fit("interrupted", stop_at=2).trainer.global_step == 2
    resumed = fit("interrupted", "--ckpt_path", str(tmp_path / "interrupted" / "ckpt" / "last.ckpt"))
    assert straight.trainer.global_step == resumed.trainer.global_step == 4
    assert resumed.model.train_tokens == straight.model.train_tokens > 0  # restored, then counted on
    a = load_file(str(tmp_path / "straight" / "task" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "interrupted" / "task" / "trainable.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=name)
    schedule = lambda cli: cli.trainer.lr_scheduler_configs[0].scheduler  # noqa: E731
    assert schedule(resumed).last_epoch == schedule(straight).last_epoch == 4
    assert schedule(resumed).get_last_lr() == schedule(straight).get_last_lr()


def test_predict_refuses_what_is_neither_one_input_nor_a_list(backbone_dir):
    from tasks.outputs import Question

    task = build(backbone_dir, Frozen())
    for bad in ({"a": 1}, 5, Question("q?", "c")):
        with pytest.raises(TypeError, match="predict takes a str or a list of them"):
            task.predict(bad)

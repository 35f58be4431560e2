"""Partial fine-tuning (tasks.adapters.TopBlocks): the top blocks run on cached states give the whole model's
output, only they (and the head) train, the cached and live paths give the same loss and gradients, and the
CLI fits, tests and saves a task that reloads to the same predictions."""

from __future__ import annotations

import json

import pytest
import torch

from tasks.adapters import TopBlocks
from tasks.features import module_cache
from tasks.task_cli import run_cli
from tests.helpers import ROOT, make_backbone, newest_metrics
from tests.test_features import _ner_files


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("top")
    return {"learned": make_backbone(root / "nano"), "rope": make_backbone(root / "rope", positions="rope")}


def _ner_task(backbone, adapter):
    from tasks.ner.module import TokenClassifier

    task = TokenClassifier(backbone=str(backbone), adapter=adapter, label_names=["O", "B-X", "I-X"], head_dropout=0.0)
    task.configure_model()
    return task


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_top_blocks_on_the_states_entering_them_give_the_whole_models_output(backbones, positions):
    from backbone.artifact import load_backbone

    model, _ = load_backbone(backbones[positions])
    model.eval()
    idx = torch.randint(0, 200, (2, 9))
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])  # right-padded, as the data modules pad
    whole = model(idx, mask)
    for first in range(model.config.n_layer):
        below = model.layer_states(idx, mask, [first])[:, :, 0]
        top = model.blocks_from(below, mask, first)
        torch.testing.assert_close(top[mask.bool()], whole[mask.bool()], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="first"):  # layer n_layer is the output itself, after ln_f
        model.blocks_from(below, mask, model.config.n_layer)


def test_only_the_top_blocks_and_the_head_train(backbones):
    task = _ner_task(backbones["learned"], TopBlocks(first_block=-1))
    n = task.backbone.config.n_layer
    blocks = task.backbone.transformer
    top = {id(p) for p in [*blocks.h[n - 1].parameters(), *blocks.ln_f.parameters()]}
    backbone_trained = {id(p) for p in task.adapter.adapter_params()}
    assert backbone_trained == top
    frozen = [p for name, p in task.backbone.named_parameters() if id(p) not in top]
    assert frozen and not any(p.requires_grad for p in frozen)
    assert task.adapter.layers == [n - 1]
    lora = _ner_task(backbones["learned"], TopBlocks(first_block=0, lora_rank=2)).adapter
    assert len(lora.adapter_params()) == 2 * 4 * n  # A and B on four projections of every block
    with pytest.raises(ValueError, match="first_block"):
        _ner_task(backbones["learned"], TopBlocks(first_block=n))
    with pytest.raises(ValueError, match="lora_rank"):
        TopBlocks(lora_rank=0)
    from tasks.ner.module import TokenClassifier

    with pytest.raises(ValueError, match="adapter_learning_rate"):
        TokenClassifier(backbone=str(backbones["learned"]), adapter=TopBlocks(), adapter_learning_rate=0.0)


@pytest.mark.parametrize("lora_rank", [None, 2])
def test_cached_states_give_the_live_loss_and_gradients(backbones, tmp_path, lora_rank):
    from tasks.ner.data import align_words

    task = _ner_task(backbones["rope"], TopBlocks(first_block=-1, lora_rank=lora_rank))
    task.eval()
    sentences = [["a", "slow", "plot"], ["dull"], ["the", "worst", "script", "ever"]]
    tags = [[0, 1, 2], [1], [0, 0, 1, 2]]
    ids, ends = align_words(task.tokenizer, sentences, 12)
    rows = [{"ids": i, "ends": e, "tags": t} for i, e, t in zip(ids, ends, tags)]

    def collate(batch_rows):
        x, m = task.tokenizer.pad([r["ids"] for r in batch_rows], side="right")
        return {"input_ids": x, "attention_mask": m, "word_end": [r["ends"] for r in batch_rows],
                "word_tags": [r["tags"] for r in batch_rows]}

    cache = module_cache(task, {"k": "top", "cached": "tokens"}, rows, collate, "test", root=tmp_path / "features")
    assert cache.meta["units"] == sum(len(i) for i in ids)  # every real token, not the task's word units
    batch = {**collate(rows), "split": "train", "row": [0, 1, 2]}
    params = task.adapter.adapter_params()
    with torch.no_grad():  # a LoRA update starts at zero: move it so its gradient path is exercised
        for p in params:
            p.add_(0.01 * torch.randn_like(p))
    live = task.loss(batch)
    live_grads = torch.autograd.grad(live, params)
    task.feature_caches.by_split["train"] = cache
    cached = task.loss(batch)
    cached_grads = torch.autograd.grad(cached, params)
    torch.testing.assert_close(cached, live, atol=2e-3, rtol=2e-3)  # fp16 storage
    for c, g in zip(cached_grads, live_grads):
        torch.testing.assert_close(c, g, atol=5e-3, rtol=5e-2)
    assert any(float(g.abs().sum()) > 0 for g in cached_grads)
    # some rows, in another order, padded wider than their longest: the cached states are padded to match
    some = {**collate([rows[2], rows[1]]), "split": "train", "row": [2, 1]}
    wide = {**some, "input_ids": torch.nn.functional.pad(some["input_ids"], (0, 3)),
            "attention_mask": torch.nn.functional.pad(some["attention_mask"], (0, 3))}
    live_some = task.loss({k: v for k, v in wide.items() if k != "row"})
    torch.testing.assert_close(task.loss(wide), live_some, atol=2e-3, rtol=2e-3)
    with pytest.raises(ValueError, match="do not match the batch"):  # rows named wrongly: a clear error
        task.loss({**some, "row": [1, 2]})


@pytest.mark.parametrize("lora_rank", [None, 2])
def test_ner_cli_fits_top_blocks_on_cached_states_and_the_saved_task_reloads(backbones, tmp_path, monkeypatch,
                                                                             lora_rank):
    from tasks.artifact import load_task

    monkeypatch.setenv("GPTSUITE_CACHE", str(tmp_path / "cache"))
    args = ["--config", f"{ROOT}/configs/tasks/ner.yaml", "--model.backbone", str(backbones["learned"]),
            "--data.data_files", json.dumps(_ner_files(tmp_path)), "--trainer.precision", "32",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--model.adapter", "tasks.adapters.TopBlocks",
            "--model.adapter.first_block", "-1", "--model.learning_rate", "0.01", "--model.head_dropout", "0",
            "--model.adapter_learning_rate", "0.001",
            *(["--model.adapter.lora_rank", str(lora_rank)] if lora_rank else [])]
    run_cli("ner", ["fit", *args, "--trainer.max_epochs", "30", "--trainer.logger", "false",
                    "--model.export_dir", str(tmp_path / "task")])
    caches = list((tmp_path / "cache" / "features").iterdir())
    assert len(caches) == 1 and json.loads((caches[0] / "meta.json").read_text())["cached"] == "tokens"
    last = tmp_path / "runs" / "ner" / "checkpoints" / "last.ckpt"
    groups = torch.load(last, weights_only=False)["optimizer_states"][0]["param_groups"]
    rates = {}
    for g in groups:  # matrices decay, the rest do not: two groups a rate
        rates[g["initial_lr"]] = rates.get(g["initial_lr"], 0) + len(g["params"])
    top = TopBlocks(first_block=-1, lora_rank=lora_rank)
    n_top = len(_ner_task(backbones["learned"], top).adapter.adapter_params())
    assert rates[0.001] == n_top and rates[0.01] > 0  # the top block at its own rate, the head at the task's
    run_cli("ner", ["test", *args, "--ckpt_path", str(last)])
    assert newest_metrics(tmp_path / "run")["test/f1"] == 1.0  # 4 sentences learnt by the top block and head
    task = load_task(tmp_path / "task")  # the live path: no cache
    assert task.predict("Mary saw New York .").tags == ["B-PER", "O", "B-LOC", "I-LOC", "O"]
    saved = json.loads((tmp_path / "task" / "task.json").read_text())["adapter"]
    assert saved == {"class_path": "tasks.adapters.TopBlocks",
                     "init_args": {"first_block": -1, "lora_rank": lora_rank, "lora_alpha": 16.0, "cache": True}}

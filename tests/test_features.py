"""Frozen features: per-layer states (against transformers), echo, the feature cache, the CRF, the bootstrap,
length buckets, and the cached path giving what the live path gives."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch

from tasks.adapters import FrozenLayers
from tasks.confidence import (
    bootstrap_interval,
    f1_from_counts,
    label_counts,
    macro_f1_from_label_counts,
    ratio,
)
from tasks.data import LengthBuckets
from tasks.features import build_cache, module_cache
from tasks.heads import CRF, BidirectionalLayer
from tasks.task_cli import run_cli
from tests.helpers import make_backbone, newest_metrics

transformers = pytest.importorskip("transformers")


def test_layer_states_match_transformers_hidden_states():
    from backbone.interop import from_hf
    from tests.test_interop import hf_llama

    hf = hf_llama().eval()
    ours = from_hf(hf).eval()
    idx = torch.randint(0, hf.config.vocab_size, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    with torch.no_grad():
        expected = hf(input_ids=idx, attention_mask=mask, output_hidden_states=True).hidden_states
    n = hf.config.num_hidden_layers
    states = ours.layer_states(idx, mask, [0, 1, -1])  # (B, T, 3, C)
    for i, k in enumerate([0, 1, n]):
        real = mask.bool()  # padding positions are never read
        torch.testing.assert_close(states[:, :, i][real], expected[k][real], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="layers"):
        ours.layer_states(idx, mask, [n + 1])


def test_layer_states_do_not_run_blocks_above_the_highest_layer(nano_model):
    def refuse(*_):
        raise AssertionError("a block above the requested layer ran")

    nano_model.transformer.h[-1].register_forward_pre_hook(refuse)
    idx = torch.randint(0, 100, (1, 5))
    assert nano_model.layer_states(idx, None, [1]).shape == (1, 5, 1, nano_model.config.n_embd)
    with pytest.raises(AssertionError, match="above"):
        nano_model.layer_states(idx, None, [-1])


def test_packed_continuations_match_each_run_alone():
    """segment_ids: one shared prefix and several continuations in a row give each continuation exactly the
    states of prefix + continuation run alone (learned positions and RoPE alike), padding included."""
    from backbone.config import GPTConfig
    from backbone.model import GPT

    torch.manual_seed(0)
    tiny_llama = dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, intermediate_size=96, vocab_size=100)
    for config in (GPTConfig.from_preset("nano"), GPTConfig.from_preset("smollm2-135m", **tiny_llama)):
        model = GPT(config).eval()
        prefix, a, b = (torch.randint(0, 100, (n,)) for n in (5, 3, 4))
        packed = torch.cat([prefix, a, b, torch.zeros(2, dtype=torch.long)])[None]
        segments = torch.tensor([[0] * 5 + [1] * 3 + [2] * 4 + [-1] * 2])  # pads: no segment (tasks.qa.packing)
        mask = torch.tensor([[1] * 12 + [0] * 2])
        states = model.layer_states(packed, mask, [1, -1], segment_ids=segments)
        alone_a = model.layer_states(torch.cat([prefix, a])[None], None, [1, -1])[0]
        alone_b = model.layer_states(torch.cat([prefix, b])[None], None, [1, -1])[0]
        torch.testing.assert_close(states[0, :8], alone_a, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(states[0, 8:12], alone_b[5:], atol=1e-5, rtol=1e-5)
        wrong = model.layer_states(packed, mask, [1, -1])  # without segments b would see a
        assert not torch.allclose(wrong[0, 8:12], alone_b[5:], atol=1e-3)
    with pytest.raises(ValueError, match="segment_ids must be"):
        model.layer_states(packed, mask, [1], segment_ids=segments[:, :3])
    with pytest.raises(ValueError, match="segment_ids must be"):
        model.layer_states(packed, None, [1], segment_ids=segments[:, :3])
    with pytest.raises(ValueError, match="not with a KV cache"):
        from backbone.kv_cache import KVCache

        model(packed, mask, cache=KVCache(model.config, 1, 32), segment_ids=segments)


def test_a_packed_row_may_be_longer_than_block_size_but_no_sequence_in_it(nano_model):
    """Learned positions: what counts is each continuation's position (prefix + itself), not the row's length."""
    nano_model.eval()
    n = nano_model.config.block_size  # 64
    prefix, a, b = (torch.randint(0, 100, (k,)) for k in (20, 40, 40))  # 100 tokens in the row, 60 per sequence
    segments = torch.tensor([[0] * 20 + [1] * 40 + [2] * 40])
    states = nano_model.layer_states(torch.cat([prefix, a, b])[None], None, [-1], segment_ids=segments)
    alone = nano_model.layer_states(torch.cat([prefix, b])[None], None, [-1])
    torch.testing.assert_close(states[0, 60:], alone[0, 20:], atol=1e-5, rtol=1e-5)
    too_long = torch.randint(0, 100, (1, n + 1))
    with pytest.raises(ValueError, match="packed sequence of 65 tokens exceeds block_size 64"):
        nano_model.layer_states(too_long, None, [-1], segment_ids=torch.zeros(1, n + 1, dtype=torch.long))


def test_echo_reads_the_second_copy_of_each_row(nano_model):
    nano_model.eval()
    adapter = FrozenLayers(layers=[1, -1], echo=True)
    rows = [[5, 6, 7, 8], [9, 10]]
    idx = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    states = adapter.states(nano_model, idx, mask)  # (B, T, nL, C)
    for b, row in enumerate(rows):
        doubled = torch.tensor([row + row])
        alone = nano_model.layer_states(doubled, None, [1, -1])[0, len(row):]
        torch.testing.assert_close(states[b, : len(row)], alone, atol=1e-5, rtol=1e-5)


def test_mix_is_a_softmax_weighted_sum_of_normalised_layers():
    adapter = FrozenLayers(layers=[0, 1])
    with torch.no_grad():
        adapter.mix_logits.copy_(torch.tensor([0.0, 100.0]))  # all weight on the second layer
        adapter.gamma.fill_(2.0)
    states = torch.randn(3, 2, 16) * 50
    expected = 2.0 * torch.nn.functional.layer_norm(states[:, 1], (16,))
    torch.testing.assert_close(adapter.mix(states), expected, atol=1e-4, rtol=1e-4)
    assert adapter.adapter_params() == [adapter.mix_logits, adapter.gamma]


# --- the cache -----------------------------------------------------------------------------------------------
def _rows_and_fns(calls: list):
    rows = [{"ids": [1] * n, "windows": w} for n, w in [(3, 1), (1, 2), (5, 1), (2, 1)]]

    def collate(batch_rows):  # row r becomes `windows` sequences of its length
        seqs = [(i, r) for i, r in enumerate(batch_rows) for _ in range(r["windows"])]
        T = max(len(r["ids"]) for _, r in seqs)
        mask = torch.tensor([[1] * len(r["ids"]) + [0] * (T - len(r["ids"])) for _, r in seqs])
        window = [sum(1 for k, _ in seqs[:s] if k == i) for s, (i, _) in enumerate(seqs)]  # its index in its row
        return {"input_ids": mask.clone(), "attention_mask": mask, "seq_row": [i for i, _ in seqs],
                "tag": [len(r["ids"]) * 100 + 10 * w for (_, r), w in zip(seqs, window)]}

    def states(batch):
        calls.append(len(batch["input_ids"]))
        S, T = batch["input_ids"].shape
        # a recognisable state: (row length, position) in every layer and channel
        value = torch.tensor(batch["tag"], dtype=torch.float32)[:, None] + torch.arange(T)[None, :]
        return value[:, :, None, None].expand(S, T, 2, 3).clone()

    def units(hidden, batch):
        return hidden, batch["attention_mask"].bool()

    return rows, collate, states, units, lambda batch: batch["seq_row"]


def test_cache_is_built_once_and_gives_back_each_rows_units_in_order(tmp_path):
    calls = []
    rows, collate, states, units, seq_rows = _rows_and_fns(calls)
    key = {"backbone": "x", "split": "train"}
    cache = build_cache(key, rows, collate, states, units, seq_rows, "test", root=tmp_path)
    assert calls and len(cache) == 4
    values, mask = cache.gather([2, 1, 0])  # row 1 has two windows: 4 sequences in all
    assert values.shape == (4, 5, 2, 3) and mask.sum(1).tolist() == [5, 1, 1, 3]
    assert values[0, :5, 0, 0].tolist() == [500, 501, 502, 503, 504]
    assert values[1:3, 0, 0, 0].tolist() == [100, 110]  # row 1's two windows, in their order
    assert values[3, :3, 1, 2].tolist() == [300, 301, 302]
    assert cache.meta["tokens"] == 3 + 2 + 5 + 2
    n_calls = len(calls)
    again = build_cache(key, rows, collate, states, units, seq_rows, "test", root=tmp_path)
    assert len(calls) == n_calls  # read from disk, not recomputed
    torch.testing.assert_close(again.gather([2, 1, 0])[0], values)
    build_cache({**key, "split": "test"}, rows, collate, states, units, seq_rows, "test", root=tmp_path)
    assert len(calls) > n_calls  # another key, another cache


def test_an_interrupted_build_leaves_no_cache(tmp_path):
    rows, collate, _, units, seq_rows = _rows_and_fns([])

    def crash(batch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache({"k": 1}, rows, collate, crash, units, seq_rows, "test", root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no cache, and no half-written folder either


# --- heads ---------------------------------------------------------------------------------------------------
def test_crf_likelihood_and_viterbi_match_brute_force():
    torch.manual_seed(0)
    L, U = 3, 4
    crf = CRF(L)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(2, U, L)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 2, 1, 1], [2, 0, -100, -100]])

    def score(e, path):
        s = crf.start[path[0]] + e[0, path[0]] + crf.end[path[-1]]
        for t in range(1, len(path)):
            s = s + crf.transitions[path[t - 1], path[t]] + e[t, path[t]]
        return s

    nlls, best = [], []
    for b, n in enumerate([4, 2]):
        paths = list(itertools.product(range(L), repeat=n))
        scores = torch.stack([score(emissions[b], p) for p in paths])
        nlls.append(scores.logsumexp(0) - score(emissions[b], tags[b, :n].tolist()))
        best.append(list(paths[int(scores.argmax())]))
    torch.testing.assert_close(crf.nll(emissions, tags, mask), torch.stack(nlls).mean())
    assert crf.decode(emissions, mask) == best
    # a row with no unit (its first word did not fit) adds nothing to the loss
    empty = torch.cat([mask, torch.zeros(1, U, dtype=torch.bool)])
    more = crf.nll(torch.cat([emissions, torch.randn(1, U, L)]), torch.cat([tags, torch.full((1, U), -100)]), empty)
    torch.testing.assert_close(more, torch.stack(nlls).mean())


@pytest.mark.parametrize("kind", ["bilstm", "transformer"])
def test_both_sides_lets_a_unit_see_what_follows_it_and_ignores_padding(kind):
    torch.manual_seed(0)
    layer = BidirectionalLayer(kind, 8, 16, dropout=0.0).eval()
    x = torch.randn(1, 5, 8)
    mask = torch.ones(1, 5, dtype=torch.bool)
    changed = x.clone()
    changed[0, 4] += 1.0  # the last unit changes: a bidirectional layer changes the first unit's output
    assert not torch.allclose(layer(x, mask)[0, 0], layer(changed, mask)[0, 0])
    padded = torch.cat([x, torch.randn(1, 3, 8)], dim=1)
    out = layer(padded, torch.tensor([[1] * 5 + [0] * 3], dtype=torch.bool))
    torch.testing.assert_close(out[:, :5], layer(x, mask), atol=1e-5, rtol=1e-5)


def test_bilstm_matches_the_packed_lstm_in_values_and_gradients():
    """BidirectionalLayer runs each direction over the padded batch (fast on a CPU); it must compute what
    pack_padded_sequence through the same nn.LSTM computes, for rows of different lengths."""
    torch.manual_seed(0)
    layer = BidirectionalLayer("bilstm", 6, 5, dropout=0.0).train()
    lengths = torch.tensor([7, 3, 5, 1])
    mask = torch.arange(7)[None] < lengths[:, None]
    x = torch.randn(4, 7, 6, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected = torch.nn.utils.rnn.pad_packed_sequence(layer.lstm(packed)[0], batch_first=True, total_length=7)[0]
    out = layer(x, mask)
    torch.testing.assert_close(out, expected)
    weights = torch.randn_like(out)
    grads = torch.autograd.grad((out * weights).sum(), [x, *layer.lstm.parameters()])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, *layer.lstm.parameters()])
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


# --- intervals, buckets -----------------------------------------------------------------------------------
def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_more_examples():
    rng = np.random.default_rng(0)
    small = np.stack([rng.random(100) < 0.7, np.ones(100)], 1)
    large = np.stack([rng.random(5000) < 0.7, np.ones(5000)], 1)
    lo, hi = bootstrap_interval(small, ratio(0, 1))
    assert lo < small[:, 0].mean() < hi
    lo2, hi2 = bootstrap_interval(large, ratio(0, 1))
    assert hi2 - lo2 < (hi - lo) / 4  # width ~ 1 / sqrt(n)
    assert abs((hi2 - lo2) - 2 * 1.96 * np.sqrt(0.7 * 0.3 / 5000)) < 0.006  # the normal approximation's width
    assert bootstrap_interval(np.ones((10, 2)), ratio(0, 1)) == (1.0, 1.0)
    assert f1_from_counts(np.array([2, 1, 1])) == pytest.approx(4 / 6)


def test_macro_f1_from_label_counts_is_torchmetrics_macro_f1_even_with_an_absent_label():
    from torchmetrics.classification import MulticlassF1Score

    gold, pred = [0, 0, 1, 1, 1, 3], [0, 1, 1, 1, 0, 3]  # label 2 never occurs: left out of the average
    sums = sum(label_counts(4, g, p) for g, p in zip(gold, pred))
    expected = MulticlassF1Score(4, average="macro")(torch.tensor(pred), torch.tensor(gold))
    assert macro_f1_from_label_counts(4)(sums) == pytest.approx(float(expected))


def test_bleu_and_chrf_from_summed_sentence_statistics_are_the_corpus_scores():
    from tasks.translation.metrics import (
        bleu_from_statistics,
        chrf_from_statistics,
        corpus_scores,
        sentence_statistics,
    )

    hyps = ["the cat sat on the mat", "a dog barks", "in the beginning"]
    refs = ["the cat sat on a mat", "the dog barks", "in the beginning God created"]
    bleu, chrf = sentence_statistics(hyps, refs)
    scores = corpus_scores(hyps, refs)
    assert bleu_from_statistics(np.sum(bleu, 0)) == pytest.approx(scores["bleu"])
    assert chrf_from_statistics(np.sum(chrf, 0)) == pytest.approx(scores["chrf"])


def test_length_buckets_cover_every_row_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 200, size=1000).tolist()
    buckets = LengthBuckets(lengths, batch_size=10)
    first, second = list(buckets), list(buckets)
    assert sorted(i for b in first for i in b) == list(range(1000)) and len(first) == len(buckets)
    assert first != second  # a new order every epoch

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    plain = [list(range(i, i + 10)) for i in range(0, 1000, 10)]
    assert padding(first) < padding(plain) / 5


# --- the cached path is the live path -----------------------------------------------------------------------
def test_cached_features_give_the_live_features_loss(tmp_path, monkeypatch):
    from tasks.ner.module import TokenClassifier

    monkeypatch.setenv("GPTSUITE_CACHE", str(tmp_path / "cache"))
    backbone = make_backbone(tmp_path / "nano")
    task = TokenClassifier(backbone=str(backbone), adapter=FrozenLayers([1, -1]), label_names=["O", "B-X", "I-X"],
                           bidirectional="bilstm", bidirectional_hidden=8, crf=True, head_dropout=0.0)
    task.configure_model()
    task.eval()
    from tasks.ner.data import align_words

    sentences = [["a", "slow", "plot"], ["dull"], ["the", "worst", "script", "i", "have", "endured", "ever"]]
    tags = [[0, 1, 2], [1], [0, 0, 1, 2, 0, 0, 0]]
    ids, ends = align_words(task.tokenizer, sentences, 12)
    assert -1 in ends[2] and -1 not in ends[0]  # the long sentence's last words are cut
    input_ids, mask = task.tokenizer.pad(ids, side="right")
    rows = [{"ids": i, "ends": e, "tags": t} for i, e, t in zip(ids, ends, tags)]

    def collate(batch_rows):
        x, m = task.tokenizer.pad([r["ids"] for r in batch_rows], side="right")
        return {"input_ids": x, "attention_mask": m, "word_end": [r["ends"] for r in batch_rows],
                "word_tags": [r["tags"] for r in batch_rows]}

    cache = module_cache(task, {"k": "ner"}, rows, collate, "test", root=tmp_path / "features")
    batch = {**collate(rows), "split": "train", "row": [0, 1, 2]}
    live = task.loss(batch)
    task.feature_caches.by_split["train"] = cache
    cached = task.loss(batch)
    torch.testing.assert_close(cached, live, atol=2e-3, rtol=2e-3)  # fp16 storage
    assert task.word_predictions(batch) == task.word_predictions({k: v for k, v in batch.items() if k != "row"})


# --- the CLIs on cached features ------------------------------------------------------------------------------
def _ner_files(tmp_path) -> dict:
    import json

    rows = [{"tokens": ["John", "lives", "in", "Paris", "."], "ner_tags": ["B-PER", "O", "O", "B-LOC", "O"]},
            {"tokens": ["Mary", "saw", "New", "York", "."], "ner_tags": ["B-PER", "O", "B-LOC", "I-LOC", "O"]}] * 2
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "eval.jsonl"),
            "test": str(tmp_path / "eval.jsonl")}


def test_ner_cli_trains_a_bilstm_crf_on_cached_features_and_reuses_them(tmp_path):
    import json

    from backbone.data.download import cache_dir
    cli_main = functools.partial(run_cli, "ner")
    from tests.helpers import ROOT

    backbone = make_backbone(tmp_path / "nano")
    files = _ner_files(tmp_path)
    args = ["--config", f"{ROOT}/configs/tasks/ner.yaml", "--model.backbone", str(backbone),
            "--data.data_files", json.dumps(files), "--trainer.precision", "32",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--model.adapter", "tasks.adapters.FrozenLayers",
            "--model.adapter.layers", "[1, -1]", "--model.bidirectional", "bilstm",
            "--model.bidirectional_hidden", "16",
            "--model.crf", "true", "--model.learning_rate", "0.02", "--model.head_dropout", "0"]
    features = cache_dir() / "features"
    before = set(features.iterdir()) if features.is_dir() else set()
    cli_main(["fit", *args, "--trainer.max_epochs", "60", "--trainer.logger", "false",
              "--model.export_dir", str(tmp_path / "task")])
    caches = set(features.iterdir()) - before
    # the cache is named by content: train, validation and test hold the same rows here, so one cache serves all
    assert len(caches) == 1 and json.loads((next(iter(caches)) / "meta.json").read_text())["rows"] == 4
    last = tmp_path / "runs" / "ner" / "checkpoints" / "last.ckpt"
    cli_main(["test", *args, "--ckpt_path", str(last)])
    assert set(features.iterdir()) - before == caches  # reused by the test run, not rebuilt
    metrics = newest_metrics(tmp_path / "run")
    assert metrics["test/f1"] == 1.0 and metrics["test/f1_ci95"] == [1.0, 1.0]
    assert metrics["test/path"] == "word = its last sub-token; bidirectional bilstm, CRF (Viterbi)"
    from tasks.artifact import load_task

    tagged = load_task(tmp_path / "task").predict("Mary saw New York .")  # live features, no cache
    assert tagged.tags == ["B-PER", "O", "B-LOC", "I-LOC", "O"]


def test_a_fit_that_never_validates_builds_no_validation_features(tmp_path, monkeypatch):
    import json

    from tests.helpers import ROOT

    monkeypatch.setenv("GPTSUITE_CACHE", str(tmp_path / "cache"))
    files = _ner_files(tmp_path)
    other = [{"tokens": ["Ann", "left", "Rome", "."], "ner_tags": ["B-PER", "O", "B-LOC", "O"]}]
    (tmp_path / "validation.jsonl").write_text(json.dumps(other[0]))
    files["validation"] = str(tmp_path / "validation.jsonl")  # rows of its own: a cache of its own
    backbone = make_backbone(tmp_path / "nano")
    args = ["fit", "--config", f"{ROOT}/configs/tasks/ner.yaml", "--model.backbone", str(backbone),
            "--data.data_files", json.dumps(files), "--trainer.precision", "32", "--trainer.max_epochs", "1",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
            "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "null",
            "--model.adapter", "tasks.adapters.FrozenLayers",
            "--model.adapter.layers", "[1, -1]"]
    features = tmp_path / "cache" / "features"
    run_cli("ner", [*args, "--trainer.limit_val_batches", "0"])
    assert [json.loads((c / "meta.json").read_text())["rows"] for c in features.iterdir()] == [4]  # train only
    run_cli("ner", ["validate", *args[1:]])  # validating on its own: the validation features are built now
    assert sorted(json.loads((c / "meta.json").read_text())["rows"] for c in features.iterdir()) == [1, 4]


def test_classification_and_qa_clis_run_on_cached_features(tmp_path):
    import json

    from tasks.artifact import load_task
    from tasks.outputs import Question
    from tests.helpers import ROOT, write_sentiment_files
    from tests.test_qa import write_files

    qa_main, sentiment_main = functools.partial(run_cli, "qa"), functools.partial(run_cli, "sentiment")

    backbone = make_backbone(tmp_path / "nano")
    common = ["--model.backbone", str(backbone), "--trainer.precision", "32", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--model.adapter", "tasks.adapters.FrozenLayers",
              "--model.adapter.layers", "[1, 2]", "--trainer.fast_dev_run", "1"]
    sentiment_main(["fit", "--config", f"{ROOT}/configs/tasks/sentiment.yaml", *common,
                    "--data.data_files", json.dumps(write_sentiment_files(tmp_path)), "--model.pooling", "mean+last",
                    "--trainer.default_root_dir", str(tmp_path / "s"),
                    "--model.export_dir", str(tmp_path / "sentiment")])
    probs = load_task(tmp_path / "sentiment").predict(["great", "dull and slow"])
    assert len(probs) == 2 and abs(sum(probs[0].scores.values()) - 1) < 1e-5
    qa_main(["fit", "--config", f"{ROOT}/configs/tasks/qa.yaml", *common, "--data.data_files",
             json.dumps(write_files(tmp_path)), "--model.head.bidirectional", "transformer",
             "--model.head.hidden", "16",
             "--data.batch_size", "2", "--trainer.callbacks", "[]", "--trainer.default_root_dir", str(tmp_path / "q"),
             "--model.export_dir", str(tmp_path / "qa")])
    answer = load_task(tmp_path / "qa").predict(Question("Who?", "Ann met Bo in Rome."))
    assert answer.text == "Ann met Bo in Rome."[answer.start : answer.end]


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(make_model, monkeypatch):
    import torch.utils.checkpoint as ckpt

    calls = []
    real = ckpt.checkpoint
    monkeypatch.setattr(ckpt, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = make_model(dropout=0.0)
    model.train()
    idx = torch.randint(0, model.config.vocab_size, (2, 9))
    mask = torch.tensor([[1] * 9, [1] * 6 + [0] * 3])

    def run():
        model.zero_grad()
        loss = model.lm_logits(model(idx, mask)).float().logsumexp(-1).mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    plain_loss, plain_grads = run()
    assert not calls
    model.gradient_checkpointing = True
    loss, grads = run()
    assert len(calls) == model.config.n_layer  # every block recomputed in the backward pass
    torch.testing.assert_close(loss, plain_loss)
    for a, b in zip(grads, plain_grads):
        torch.testing.assert_close(a, b)


def test_echo_halves_the_input_budget_and_the_prompt_head_refuses_mixed_layers(tmp_path):
    from tasks.classification.module import SequenceClassifier

    backbone = make_backbone(tmp_path / "nano")
    plain = SequenceClassifier(backbone=str(backbone), adapter=FrozenLayers([1]), label_names=["a", "b"])
    plain.configure_model()
    echo = SequenceClassifier(backbone=str(backbone), adapter=FrozenLayers([1], echo=True), label_names=["a", "b"])
    echo.configure_model()
    assert echo.max_input_tokens == plain.max_input_tokens // 2 == plain.backbone.config.block_size // 2
    ids = torch.randint(0, 100, (2, echo.max_input_tokens))  # the longest input still fits twice
    assert echo.adapter.states(echo.backbone, ids, torch.ones_like(ids)).shape[1] == echo.max_input_tokens
    with pytest.raises(ValueError, match="FrozenLayers"):
        SequenceClassifier(backbone=str(backbone), adapter=FrozenLayers([1]), label_names=["a", "b"],
                           head="prompt").configure_model()

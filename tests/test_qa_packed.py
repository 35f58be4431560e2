"""The context-first QA layout: a context read once with its questions packed after it, the attention-flow
head, paragraph rows, and the CLI with the feature cache."""

from __future__ import annotations

import functools
import json

import pytest
import torch

from backbone.artifact import load_model
from tasks.adapters import FrozenLayers, PromptTuning
from tasks.features import module_cache
from tasks.outputs import Question
from tasks.qa.attention_flow import AttentionFlowHead
from tasks.qa.data import NO_ANSWER, QAData, question_rows
from tasks.qa.packing import packed_batch, reader_states
from tasks.task_cli import run_cli
from tests.helpers import ROOT
from tests.test_qa import ROWS, backbone_dir, build, gold_logits, tokenizer, write_files  # noqa: F401  (fixtures)

PARAGRAPHS = [{"context": ROWS[0]["context"], "questions": [ROWS[0], ROWS[1]]},
              {"context": ROWS[2]["context"], "questions": [ROWS[2], ROWS[3]]}]


def test_paragraph_rows_and_question_rows_give_the_same_questions():
    flat, row_of = question_rows(PARAGRAPHS)
    assert [q["id"] for q in flat] == ["q1", "q2", "q3", "q4"] and row_of == [0, 0, 1, 1]
    assert all(q["context"] == r["context"] for q, r in zip(flat, ROWS))
    assert question_rows(ROWS)[0] == ROWS


def test_packed_labels_point_at_the_answer_and_each_question_sees_only_the_context(tokenizer):  # noqa: F811
    batch = packed_batch(tokenizer, PARAGRAPHS, 120, 8, 40)
    ids, segments = batch["input_ids"], batch["segment_ids"]
    assert len(batch["window_row"]) > 2  # the second context is split into windows
    found = {}
    for r in range(len(batch["reader_window"])):
        w, q = int(batch["reader_window"][r]), int(batch["reader_question"][r])
        question = batch["questions"][q]
        start, length = int(batch["question_start"][r]), int(batch["question_length"][r])
        assert question["question"].strip() in tokenizer.decode(ids[w, start : start + length].tolist())
        assert set(segments[w, start : start + length].tolist()) == {int(segments[w, start])} != {0}
        assert int(batch["context_length"][w]) <= start  # questions come after the context
        s, e = int(batch["start_positions"][r]), int(batch["end_positions"][r])
        if s != NO_ANSWER:
            offsets = batch["offsets"][w]
            cs = batch["context_start"][w]
            text = question["context"][offsets[s - cs][0] : offsets[e - cs][1]].strip()
            found[question["id"]] = text
    assert found == {r["id"]: r["answers"]["text"][0] for r in ROWS}
    for w in range(len(batch["window_row"])):  # the readers of one window each have their own segment
        on_window = (batch["reader_window"] == w).nonzero().flatten()
        firsts = [int(segments[w, int(batch["question_start"][r])]) for r in on_window]
        assert len(set(firsts)) == len(firsts) == 2 and 0 not in firsts
    empty = packed_batch(tokenizer, [{"context": "Nothing asked.", "questions": []}], 120, 8, 40)
    assert empty["reader_window"].numel() == 0 and empty["input_ids"].shape[0] == 0


def test_packed_states_equal_each_question_run_alone(backbone_dir, tokenizer):  # noqa: F811
    model = load_model(backbone_dir).eval()
    batch = packed_batch(tokenizer, PARAGRAPHS[:1], 64, 8, 16)
    states = model.layer_states(batch["input_ids"], batch["attention_mask"], [1, -1], batch["segment_ids"])
    context, context_mask, question, question_mask = reader_states(states, batch)
    for r in range(2):
        n_context, n_question = int(context_mask[r].sum()), int(question_mask[r].sum())
        start = int(batch["question_start"][r])
        alone = torch.cat([batch["input_ids"][0, :n_context], batch["input_ids"][0, start : start + n_question]])
        expected = model.layer_states(alone[None], None, [1, -1])[0]
        torch.testing.assert_close(context[r, :n_context], expected[:n_context], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(question[r, :n_question], expected[n_context:], atol=1e-5, rtol=1e-5)


def test_best_span_over_readers_gives_the_exact_answer_text(backbone_dir):  # noqa: F811
    task = build(backbone_dir, head=AttentionFlowHead(modeling="transformer", hidden=16, width=8), doc_stride=8)
    batch = task.featurize(PARAGRAPHS)

    task.span_logits = lambda b: gold_logits(b, int(b["context_length"].max()))  # one row per reader
    for row, answer in zip(ROWS, task.span_answers(batch)):
        text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        assert (answer.text, answer.start, answer.end) == (text, start, start + len(text))


def test_attention_flow_head_ignores_padding(backbone_dir):  # noqa: F811
    torch.manual_seed(0)
    for modeling, layers in (("transformer", 2), ("bilstm", 2), ("bilstm", 1)):
        head = AttentionFlowHead(width=8, modeling=modeling, hidden=8, layers=layers)
        head.build(12)
        head.eval()
        c, q = torch.randn(1, 5, 12), torch.randn(1, 3, 12)
        out = head(c, torch.ones(1, 5, dtype=torch.bool), q, torch.ones(1, 3, dtype=torch.bool))
        padded = head(torch.cat([c, torch.randn(1, 2, 12)], 1), torch.tensor([[True] * 5 + [False] * 2]),
                      torch.cat([q, torch.randn(1, 4, 12)], 1), torch.tensor([[True] * 3 + [False] * 4]))
        assert out.shape == (1, 5, 2)
        torch.testing.assert_close(padded[:, :5], out, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="modeling"):
        AttentionFlowHead(modeling="none")
    with pytest.raises(ValueError, match="layers"):
        AttentionFlowHead(layers=3)


def test_context_first_refuses_what_it_cannot_read(backbone_dir):  # noqa: F811
    with pytest.raises(ValueError, match="must be 'bilstm' or 'transformer'"):  # its modeling layers see both sides
        build(backbone_dir, head=AttentionFlowHead(modeling="none"))
    for adapter in (PromptTuning(4), FrozenLayers([1], echo=True)):
        with pytest.raises(ValueError, match="cannot read"):
            build(backbone_dir, head=AttentionFlowHead(modeling="bilstm"), adapter=adapter)


def test_predict_groups_questions_by_context_and_keeps_their_order(backbone_dir):  # noqa: F811
    task = build(backbone_dir, head=AttentionFlowHead(modeling="bilstm", hidden=8, width=8))
    with torch.no_grad():
        for p in task.head.parameters():
            p.add_(torch.randn_like(p))
    questions = [Question(r["question"], r["context"]) for r in (ROWS[2], ROWS[0], ROWS[3], ROWS[1])]
    seen = []
    featurize = task.featurize
    task.featurize = lambda rows, **kw: seen.append(rows) or featurize(rows, **kw)
    together = task.predict(questions)
    assert [len(r["questions"]) for r in seen[0]] == [2, 2]  # two paragraphs of two questions, one batch
    alone = [task.predict([q])[0] for q in questions]
    assert [a.text for a in together] == [a.text for a in alone]
    assert [a.score for a in together] == pytest.approx([a.score for a in alone], abs=1e-4)


def test_cached_units_equal_live_units_for_paragraph_rows(backbone_dir, tmp_path):  # noqa: F811
    """The cache stores each paragraph row's windows in order; what the head reads from it must be what it
    reads from live states (several windows per paragraph here)."""
    task = build(backbone_dir, head=AttentionFlowHead(modeling="bilstm", hidden=8, width=8), doc_stride=8,
                 adapter=FrozenLayers([1, -1]))
    rows = PARAGRAPHS[::-1]
    cache = module_cache(task, {"test": "paragraphs"}, rows, task.featurize, "features", root=tmp_path)
    batch = task.featurize(rows)
    assert len(batch["window_row"]) > len(rows)
    live_states, live_mask = task.unit_states(batch)
    task.feature_caches.by_split["test"] = cache
    cached_states, cached_mask = task.unit_states({**batch, "split": "test", "row": [0, 1]})
    assert torch.equal(live_mask, cached_mask)
    torch.testing.assert_close(cached_states[cached_mask], live_states[live_mask], atol=2e-3, rtol=2e-3)  # fp16
    live_c, live_cm, live_q, live_qm = reader_states(live_states, batch)
    cached_c, cached_cm, cached_q, cached_qm = reader_states(cached_states, batch)
    assert torch.equal(live_cm, cached_cm) and torch.equal(live_qm, cached_qm)
    torch.testing.assert_close(cached_c[cached_cm], live_c[live_cm], atol=2e-3, rtol=2e-3)  # padding is masked
    torch.testing.assert_close(cached_q[cached_qm], live_q[live_qm], atol=2e-3, rtol=2e-3)


def test_holding_out_validation_keeps_paragraphs_whole_and_counts_questions(backbone_dir, tmp_path):  # noqa: F811
    rows = [{**r, "id": f"{r['id']}-{k}", "context": f"{r['context']} ({k})"} for k in range(10) for r in ROWS]
    data = QAData(backbone=str(backbone_dir), data_files=write_files(tmp_path, rows, splits=("train",)),
                  group_by_context=True)
    data.setup()
    train, validation = set(data.splits["train"]["context"]), set(data.splits["validation"]["context"])
    assert train and validation and not train & validation
    assert data.n_examples("train") + data.n_examples("validation") == len(rows)
    assert data.n_examples("train") == 2 * len(train)


def test_group_by_context_takes_whole_paragraphs(backbone_dir, tmp_path):  # noqa: F811
    rows = [{**r, "id": f"{r['id']}-{k}", "context": f"{r['context']} ({k})",
             "answers": r["answers"]} for k in range(5) for r in ROWS]
    files = write_files(tmp_path, rows, splits=("train", "validation"))
    data = QAData(backbone=str(backbone_dir), data_files=files, group_by_context=True, max_train_examples=5,
                  max_eval_examples=7)
    data.setup()
    train, dev = data.splits["train"], data.splits["test"]
    assert data.splits["validation"] is dev
    assert len(set(train["context"])) == len(train) == 3  # whole paragraphs of 2 until >= 5 questions
    assert sum(len(p) for p in train["questions"]) == 6
    assert sum(len(p) for p in dev["questions"]) == 7  # evaluation: a sample of questions, then grouped
    ungrouped = QAData(backbone=str(backbone_dir), data_files=files, max_eval_examples=7)
    ungrouped.setup()
    assert sorted(q["id"] for q in question_rows(list(dev))[0]) == sorted(ungrouped.splits["test"]["id"])


def test_context_first_cli_fits_and_tests_on_cached_features(backbone_dir, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("GPTSUITE_CACHE", str(tmp_path / "cache"))
    files = write_files(tmp_path, splits=("train",))
    (tmp_path / "dev").mkdir()
    files.update(write_files(tmp_path / "dev", ROWS[1:], splits=("validation",)))
    common = ["--config", f"{ROOT}/configs/tasks/qa.yaml", "--model.backbone", str(backbone_dir),
              "--data.data_files", json.dumps(files), "--trainer.precision", "32",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--trainer.callbacks", "[]",
              "--model.head", "tasks.qa.attention_flow.AttentionFlowHead", "--model.head.modeling", "transformer",
              "--model.head.hidden", "16", "--model.head.width", "8", "--model.adapter", "tasks.adapters.FrozenLayers",
              "--model.adapter.layers", "[1, -1]", "--data.group_by_context", "true", "--data.batch_size", "1"]
    run_cli("qa", ["fit", *common, "--trainer.max_epochs", "1", "--model.export_dir", str(tmp_path / "task")])
    caches = list((tmp_path / "cache" / "features").iterdir())
    assert len(caches) == 2  # train, and the dev rows shared by validation and test
    functools.partial(run_cli, "qa")(["test", *common, "--ckpt_path", "last"])
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 2  # found again, not rebuilt

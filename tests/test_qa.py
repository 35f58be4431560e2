"""Extractive QA: windows and exact character spans, the SQuAD metric, bad rows, the CLI, save/reload."""

from __future__ import annotations

import functools
import inspect
import json
from argparse import ArgumentError

import datasets
import pytest
import torch
from torchmetrics.text import SQuAD

from backbone.renamed_keys import RenamedKeyError
from backbone.tokenizer import Tokenizer
from tasks.adapters import PromptTuning
from tasks.artifact import load_task, save_task
from tasks.outputs import Answer, Question
from tasks.qa.data import (
    INSTRUCTION,
    NO_ANSWER,
    PROMPT_TEMPLATE,
    QAData,
    char_span_to_tokens,
    encode_context,
    fill_prompt,
    fit_context,
    make_windows,
    reported_dev,
    shortest_examples,
)
from tasks.qa.generative import GenerativeQA
from tasks.qa.metrics import SquadScore, exact_match, f1, normalize_answer, squad_scores
from tasks.qa.span import SpanQA
from tasks.task_cli import run_cli
from tests.helpers import ROOT, make_backbone, newest_file, newest_metrics

CONTEXT_1 = "The cat sat on the mat. It was a sunny day in Paris, and the cat was happy."
CONTEXT_2 = ("Alice wrote a letter to Bob in the morning. Bob read it at noon and smiled. "
             "Later that evening the letter was burned by Carol in the old fireplace of the library.")
ROWS = [
    {"id": "q1", "title": "t", "context": CONTEXT_1, "question": "Where was the sunny day?",
     "answers": {"text": ["Paris"], "answer_start": [CONTEXT_1.index("Paris")]}},
    {"id": "q2", "title": "t", "context": CONTEXT_1, "question": "Who sat on the mat?",
     "answers": {"text": ["The cat", "cat"], "answer_start": [0, 4]}},
    {"id": "q3", "title": "t", "context": CONTEXT_2, "question": "Who burned the letter?",
     "answers": {"text": ["Carol"], "answer_start": [CONTEXT_2.index("Carol")]}},
    {"id": "q4", "title": "t", "context": CONTEXT_2, "question": "When did Bob read it?",
     "answers": {"text": ["at noon"], "answer_start": [CONTEXT_2.index("at noon")]}},
]


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    return make_backbone(tmp_path_factory.mktemp("backbone") / "nano")  # block_size 64: long contexts split


@pytest.fixture(scope="module")
def tokenizer(backbone_dir):
    return Tokenizer.from_pretrained(backbone_dir)


def write_files(directory, rows=ROWS, splits=("train", "validation", "test")) -> dict[str, str]:
    files = {}
    for split in splits:
        path = directory / f"{split}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        files[split] = str(path)
    return files


def gold_logits(batch: dict, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Start / end logits (one row per labelled window or reader, `width` positions) that put 10 on each
    row's labelled answer and 0 elsewhere: decoding them must give back the gold answers."""
    labels = list(zip(batch["start_positions"].tolist(), batch["end_positions"].tolist()))
    start, end = torch.zeros(len(labels), width), torch.zeros(len(labels), width)
    for n, (s, e) in enumerate(labels):
        if s != NO_ANSWER:
            start[n, s], end[n, e] = 10.0, 10.0
    return start, end


def build(backbone_dir, module=SpanQA, **kw):
    task = module(backbone=str(backbone_dir), **kw)
    task.configure_model()
    return task.eval()


# --- the metric --------------------------------------------------------------------------------------------
def test_normalisation_follows_the_official_script():
    assert normalize_answer("  The Cat,  sat!  ") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    assert f1("the cat sat", "cat sat on mat") == pytest.approx(2 / 3)  # P = 2/2, R = 2/4
    assert f1("red fox", "blue whale") == 0.0
    assert f1("a", "the") == 0.0  # both normalise to nothing
    assert squad_scores("cat", ["The cat", "a dog"]) == (1.0, 1.0)  # max over gold answers
    assert squad_scores("big cat", ["cat", "big dog"]) == (0.0, pytest.approx(2 / 3))


def test_corpus_scores_match_torchmetrics():
    cases = [("Denver Broncos", ["Denver Broncos", "the Denver Broncos"]), ("the cat sat", ["cat sat on mat"]),
             ("Paris, France", ["Paris"]), ("1990s", ["the 1990s", "1990"]), ("", ["nothing"]),
             ("Saint-Étienne!", ["saint étienne", "Saint-Étienne"])]
    ours = SquadScore()
    ours.update([p for p, _ in cases], [g for _, g in cases])
    theirs = SQuAD()(
        [{"prediction_text": p, "id": str(i)} for i, (p, _) in enumerate(cases)],
        [{"answers": {"text": g, "answer_start": [0] * len(g)}, "id": str(i)} for i, (_, g) in enumerate(cases)])
    mine = ours.compute()
    assert float(mine["exact_match"]) == pytest.approx(float(theirs["exact_match"]), abs=1e-4)
    assert float(mine["f1"]) == pytest.approx(float(theirs["f1"]), abs=1e-4)
    em = sum(squad_scores(p, g)[0] for p, g in cases) / len(cases) * 100
    assert float(mine["exact_match"]) == pytest.approx(em, abs=1e-4)


# --- windows and character spans ---------------------------------------------------------------------------
def test_context_offsets_are_exact_characters(tokenizer):
    context = "Héllo wörld,  24–10 at Levi's"
    ids, offsets = encode_context(tokenizer, context)
    assert len(ids) == len(offsets)
    assert offsets[-1][1] == len(context)
    span = char_span_to_tokens(offsets, context.index("24–10"), context.index("24–10") + 5)
    assert context[offsets[span[0]][0] : offsets[span[1]][1]].strip() == "24–10"


def test_windows_map_answers_to_tokens_and_back(tokenizer):
    max_tokens, stride = 48, 8
    later = {}
    for row in ROWS:
        text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        windows = make_windows(tokenizer, row["question"], row["context"], max_tokens, stride, 16, (text, start))
        assert all(len(w.ids) <= max_tokens for w in windows)
        ids, offsets = encode_context(tokenizer, row["context"])
        assert windows[-1].offsets[-1] == offsets[-1]  # the windows reach the end of the context
        for a, b in zip(windows, windows[1:]):  # consecutive windows share `stride` context tokens
            assert a.offsets[-stride:] == b.offsets[:stride]
        labelled = [w for w in windows if w.start != NO_ANSWER]
        assert labelled, row["id"]
        for w in labelled:
            s, e = w.offsets[w.start - w.context_start], w.offsets[w.end - w.context_start]
            assert row["context"][s[0] : e[1]].strip() == text
            assert w.ids[w.start] == ids[[i for i, o in enumerate(offsets) if o == s][0]]
        later[row["id"]] = windows[0].start == NO_ANSWER and len(windows) > 1
    assert later["q3"] and not later["q2"]  # "Carol" lies beyond the first window; "The cat" opens it


def test_best_span_over_windows_gives_the_exact_answer_text(backbone_dir):
    """Put the highest logits on the labelled positions: decoding must return the gold text and offsets."""
    task = build(backbone_dir, doc_stride=8)
    batch = task.featurize(ROWS)
    assert len(batch["window_question"]) > len(ROWS)  # some contexts were split

    task.span_logits = lambda b: gold_logits(b, b["input_ids"].size(1))
    for row, answer in zip(ROWS, task.span_answers(batch)):
        text, start = row["answers"]["text"][0], row["answers"]["answer_start"][0]
        assert answer.text == text
        assert (answer.start, answer.end) == (start, start + len(text))
        assert answer.score == pytest.approx(20.0)


def test_span_length_and_order_limits(backbone_dir):
    task = build(backbone_dir, max_answer_length=3)
    context = "one two three four five six"
    rows = [{"question": "Who?", "context": context}]
    batch = task.featurize(rows, with_labels=False)
    start, end = task.span_logits(batch)
    allowed = batch["context_mask"][0].nonzero().flatten().tolist()
    cs, n = batch["context_start"][0], len(batch["offsets"][0])
    lowest = torch.finfo(start.dtype).min
    assert (start[0, 1:cs] == lowest).all() and (start[0, allowed] > lowest).all()  # only the context
    assert set(allowed) <= set(range(cs, cs + n)) and len(allowed) > 3
    p0, pn = allowed[0], allowed[-1]

    def rigged(b):  # the best unconstrained pair ends before it starts; the next best is too long
        s, e = torch.zeros(b["input_ids"].shape), torch.zeros(b["input_ids"].shape)
        s[0, pn], e[0, p0], s[0, p0], e[0, pn] = 100.0, 100.0, 60.0, 60.0
        return s, e

    task.span_logits = rigged
    answer = task.span_answers(batch)[0]
    assert answer.text == context[answer.start : answer.end]
    assert 0 <= answer.start < answer.end
    assert answer.score == pytest.approx(160.0)  # (p0, p0) or (pn, pn): one token each
    tokens = [i for i, (a, b) in enumerate(batch["offsets"][0]) if a < answer.end and b > answer.start]
    assert answer.text in ("one", "six") or 1 <= len(tokens) <= 3


# --- bad input ---------------------------------------------------------------------------------------------
def test_answer_that_does_not_match_the_context_is_skipped_in_training(backbone_dir, tmp_path):
    bad = {**ROWS[0], "id": "bad-1", "answers": {"text": ["London"], "answer_start": [3]}}
    files = write_files(tmp_path, ROWS + [bad], splits=("train",))
    (tmp_path / "eval").mkdir()
    files.update(write_files(tmp_path / "eval", ROWS + [bad], splits=("validation",)))
    data = QAData(backbone=str(backbone_dir), data_files=files)
    with pytest.warns(UserWarning, match=r"train: skipped 1 of 5 rows: id 'bad-1' \(row 4\): answer 'London'"):
        data.setup()
    assert len(data.splits["train"]) == 4
    assert len(data.splits["validation"]) == 5  # evaluation scores the texts: the row is kept
    assert data.splits["test"] is data.splits["validation"]  # SQuAD: test = the dev set


def test_unusable_rows_and_missing_columns(backbone_dir, tmp_path):
    rows = ROWS + [{**ROWS[0], "id": "", "context": "  "},
                   {**ROWS[1], "id": "none", "answers": {"text": [], "answer_start": []}}]
    data = QAData(backbone=str(backbone_dir), data_files=write_files(tmp_path, rows, splits=("train", "validation")))
    with pytest.warns(UserWarning, match=r"validation: skipped 2 of 6 rows: row 4: empty context; "
                                         r"id 'none' \(row 5\): no answer"):
        data.setup()
    assert len(data.splits["validation"]) == 4
    (tmp_path / "bad").mkdir()
    only_bad = write_files(tmp_path / "bad", [rows[-1]], splits=("train",))
    with pytest.raises(ValueError, match="train: no usable row"), pytest.warns(UserWarning):
        QAData(backbone=str(backbone_dir), data_files=only_bad).setup()
    (tmp_path / "nocol.jsonl").write_text(json.dumps({"question": "q", "context": "c"}) + "\n")
    with pytest.raises(ValueError, match="no column 'answers'"):
        QAData(backbone=str(backbone_dir), data_files={"train": str(tmp_path / "nocol.jsonl")}).setup()


def test_predict_rejects_empty_and_untyped_inputs(backbone_dir):
    task = build(backbone_dir)
    with pytest.raises(ValueError, match="item 1 is empty"):
        task.predict([Question("a?", "some text"), Question("b?", " ")])
    with pytest.raises(TypeError, match="a list of Question .or one.; item 0 is a str"):
        task.predict(["a?"])


# --- both paths, save / reload, the CLI --------------------------------------------------------------------
def test_generative_path_returns_the_same_shape(backbone_dir):
    task = build(backbone_dir, GenerativeQA, max_new_tokens=4)
    out = task.predict([Question(r["question"], r["context"]) for r in ROWS])
    assert all(isinstance(o, Answer) and o.score is None for o in out) and len(out) == len(ROWS)
    assert all("\n" not in o.text for o in out)
    batch = task.featurize(ROWS)
    assert batch["input_ids"].shape[1] <= task.max_input_tokens
    assert torch.isfinite(task.loss(batch))
    answer_ids = [t for t in batch["labels"][2].tolist() if t != -100]
    assert answer_ids == task.tokenizer.encode(" Carol")[:4] + [task.tokenizer.eos_id]  # cut to max_new_tokens


def test_extractive_answers_are_spans_of_their_context(backbone_dir):
    questions = [Question(r["question"], r["context"]) for r in ROWS]
    free = build(backbone_dir, GenerativeQA, max_new_tokens=4).predict(questions)
    assert any(a.text.strip() not in q.context for a, q in zip(free, questions))  # the random model wanders
    task = build(backbone_dir, GenerativeQA, max_new_tokens=4, extractive=True)
    answers = task.predict(questions)
    for answer, question in zip(answers, questions):  # the nano block (64 tokens) cuts every context short
        read = fit_context(task.tokenizer, question.question, question.context, task.max_input_tokens - 4,
                           task.prompt_template())
        assert answer.text in read and question.context[answer.start:answer.end] == answer.text
    assert sum(bool(a.text) for a in answers) >= 3  # (a span of a lone space strips to "")
    assert task.test_report()["test/path"] == "generated answer, plain prompt, constrained to spans of the context"


def test_chat_prompt_is_the_instruction_in_the_chat_template(backbone_dir):
    task = build(backbone_dir, GenerativeQA, prompt="chat")
    task.tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    try:
        row = ROWS[0]
        assert task.prompt_template() == f"<user>{INSTRUCTION}<assistant>"
        trained_on = task.tokenizer.decode(task.featurize([row])["input_ids"][0].tolist())  # its last 64 tokens
        assert trained_on.endswith("Question: Where was the sunny day?<assistant>Paris<|endoftext|>")
        assert fill_prompt(task.prompt_template(), row["question"], "ctx").startswith("<user>ctx\n\nAnswer")
    finally:
        task.tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        task.predict([Question(row["question"], row["context"])])
    with pytest.raises(TypeError, match="unexpected keyword argument 'prompt'"):  # the span module takes none
        build(backbone_dir, SpanQA, prompt="chat")


def test_generative_path_refuses_input_changing_adapters(backbone_dir):
    with pytest.raises(ValueError, match="PromptTuning changes the backbone's inputs"):
        build(backbone_dir, GenerativeQA, adapter=PromptTuning(4))


def test_each_module_takes_only_the_arguments_its_path_uses(backbone_dir):
    """A mode is a class: the span module takes no generation setting and the generative one no span setting,
    in Python and on the command line; the old keys of the one class that did both are refused by new name."""
    span_only = {"head": None, "doc_stride": 8, "max_question_tokens": 8, "max_answer_length": 8}
    generative_only = {"max_new_tokens": 4, "quantize": "none", "prompt": "chat", "extractive": True, "few_shot": 1,
                       "demonstrations": [], "engine": "gptsuite", "compile_steps": False}
    own = lambda cls: set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}  # noqa: E731
    assert own(SpanQA) == set(span_only) and own(GenerativeQA) == set(generative_only)
    for module, others in ((SpanQA, generative_only), (GenerativeQA, span_only)):
        for name, value in others.items():
            with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
                module(backbone=str(backbone_dir), **{name: value})
    common = ["--config", f"{ROOT}/configs/tasks/qa.yaml", "--model.backbone", str(backbone_dir),
              "--trainer.logger", "false"]
    for name, wrong in (("max_new_tokens", ["--model.max_new_tokens", "4"]),
                        ("doc_stride", ["--model", "tasks.qa.generative.GenerativeQA", "--model.doc_stride", "8"])):
        with pytest.raises(ArgumentError, match=f"'{name}' is not accepted"):  # by the module the config names
            run_cli("qa", [*common, *wrong], run=False)
    for old, new in (("layout", "model.head"), ("flow_width", "model.head.width"),
                     ("flow_layers", "model.head.layers")):
        with pytest.raises(RenamedKeyError, match=f"`model.{old}` was renamed `{new}`"):
            run_cli("qa", [*common, f"--model.{old}", "1"], run=False)


def test_saved_task_reloads_to_identical_predictions(backbone_dir, tmp_path):
    task = build(backbone_dir, doc_stride=8)
    with torch.no_grad():
        for p in task.head.parameters():
            p.add_(torch.randn_like(p))
    save_task(task, tmp_path / "task")
    again = load_task(tmp_path / "task")
    questions = [Question(r["question"], r["context"]) for r in ROWS]
    assert task.predict(questions) == again.predict(questions)
    assert again.hparams.doc_stride == 8


@pytest.mark.parametrize("head", ["span", "generate"])
def test_qa_cli_fit_and_test(backbone_dir, tmp_path, monkeypatch, head):
    module = [] if head == "span" else ["--model", "tasks.qa.generative.GenerativeQA", "--model.max_new_tokens", "4"]
    cli_main = functools.partial(run_cli, "qa")

    files = write_files(tmp_path)
    common = ["--config", f"{ROOT}/configs/tasks/qa.yaml", "--model.backbone", str(backbone_dir),
              "--data.data_files", json.dumps(files), "--trainer.precision", "32",
              "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--trainer.callbacks", "[]",
              *module, "--data.batch_size", "2"]
    cli_main(["fit", *common, "--trainer.fast_dev_run", "1", "--model.export_dir", str(tmp_path / "task")])
    assert (tmp_path / "task" / "task.json").is_file()
    cli_main(["test", *common, "--data.max_eval_examples", "3"])
    metrics = newest_metrics(tmp_path / "run")
    assert {"test/exact_match", "test/f1"} <= metrics.keys()
    assert metrics["test/examples"] == 3
    assert metrics["test/path"].startswith("span head" if head == "span" else "generated answer")
    if head == "generate":
        assert metrics["test/generation"] == {"decoding": "greedy", "max_new_tokens": 4, "stop": ["\n"],
                                              "truncate_prompt": True}
    assert 0 <= metrics["test/f1"] <= 100
    predictions = newest_file(tmp_path / "run", "test_predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 3


# the official evaluate-v1.1.py on fixed cases: (prediction, gold answers, its EM, its F1), counted by hand
# from that script's rules (lower-case, punctuation deleted, not replaced by a space; articles dropped)
OFFICIAL_CASES = [
    ("the Eiffel Tower", ["Eiffel Tower", "The Eiffel Tower in Paris"], 1.0, 1.0),
    ("in 1889.", ["1889"], 0.0, 2 / 3),
    ("Denver Broncos", ["Broncos", "Denver Broncos"], 1.0, 1.0),
    ("Carolina", ["Denver Broncos"], 0.0, 0.0),
    ("an apple a day", ["A  day!"], 0.0, 2 / 3),
    ("Saint-Denis", ["Saint Denis"], 0.0, 0.0),  # "saintdenis" vs "saint denis"
    ("", ["anything"], 0.0, 0.0),
    ("the the", ["The"], 1.0, 0.0),  # both normalise to "": equal, yet no token in common
]


@pytest.mark.parametrize("prediction, golds, em, f1_", OFFICIAL_CASES)
def test_squad_scores_equal_the_official_script(prediction, golds, em, f1_):
    assert squad_scores(prediction, golds) == (em, pytest.approx(f1_))


def test_squad_corpus_score_equals_the_official_script():
    metric = SquadScore()
    metric.update([c[0] for c in OFFICIAL_CASES], [c[1] for c in OFFICIAL_CASES])
    scores = {k: float(v) for k, v in metric.compute().items()}
    assert scores == pytest.approx({"exact_match": 37.5, "f1": 100 * (10 / 3) / 8})  # 3 of 8; (1+2/3+1+2/3)/8


def test_few_shot_shows_the_shortest_training_examples_first(backbone_dir, tmp_path):
    data = QAData(backbone=str(backbone_dir), data_files=write_files(tmp_path))
    data.setup("fit")
    shown = shortest_examples(data.splits["train"], 5)
    shortest = min(ROWS, key=lambda r: len(r["context"]))
    assert len(shown) == 2  # one question per context: two contexts
    assert shown[0]["context"] == shortest["context"] and shown[0]["answer"]
    task = build(backbone_dir, GenerativeQA, few_shot=1, demonstrations=shown)
    template = task.prompt_template()
    demo = shown[0]
    assert template == fill_prompt(PROMPT_TEMPLATE, demo["question"], demo["context"]) + f" {demo['answer']}\n\n" \
        + PROMPT_TEMPLATE
    assert task.test_report()["test/path"] == "generated answer, plain prompt, 1 solved example shown"
    with pytest.raises(ValueError, match="solved examples"):
        build(backbone_dir, GenerativeQA, few_shot=2).prompt_template()
    with pytest.raises(TypeError, match="unexpected keyword argument 'few_shot'"):  # the span module shows none
        build(backbone_dir, SpanQA, few_shot=1)


def test_few_shot_extractive_cli_exports_its_examples_and_answers_from_what_it_read(tmp_path):
    backbone_dir = make_backbone(tmp_path / "nano160", block_size=160)  # room for an example and some context
    files = write_files(tmp_path)
    run_cli("qa", ["fit", "--config", f"{ROOT}/configs/tasks/qa.yaml", "--model.backbone", str(backbone_dir),
                   "--data.data_files", json.dumps(files), "--trainer.precision", "32", "--trainer.fast_dev_run", "1",
                   "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false",
                   "--trainer.callbacks", "[]", "--model", "tasks.qa.generative.GenerativeQA",
                   "--model.max_new_tokens", "4", "--model.few_shot", "1", "--model.extractive", "true",
                   "--data.batch_size", "2",
                   "--model.export_dir", str(tmp_path / "task")])
    saved = json.loads((tmp_path / "task" / "task.json").read_text())["hparams"]
    shortest = min((r["context"] for r in ROWS), key=len)
    assert saved["few_shot"] == 1 and saved["demonstrations"][0]["context"] == shortest
    task = load_task(tmp_path / "task")
    tail = "The river ran past the old mill and on to the sea, where the boats of Zed waited. " * 20
    questions = [Question(q, "Ann met Bob at noon. " + tail) for q in ("Who?", "When?", "Where?", "What ran?")]
    answers = task.predict(questions)  # 160 tokens keep only the context's start
    for question, answer in zip(questions, answers):
        read = fit_context(task.tokenizer, question.question, question.context, task.max_input_tokens - 4,
                           task.prompt_template())
        assert len(read) < len(question.context) and answer.text in read and "Zed" not in answer.text
    assert any(a.text for a in answers)


def test_squad_by_name_reports_dev_and_chooses_on_held_out_training_articles():
    """The dev set is what the table reports: it becomes the test split, and validation is whole training
    articles held out (seeded), so no article is in both training and validation."""
    rows = [{"title": f"article {i % 40}", "question": f"q{i}"} for i in range(400)]
    dev = datasets.Dataset.from_list([{"title": "dev", "question": "d"}])
    split = reported_dev(datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "validation": dev}), seed=0)
    assert split["test"]["question"] == ["d"]
    held, kept = set(split["validation"]["title"]), set(split["train"]["title"])
    assert len(held) == 2 and not held & kept and len(split["train"]) + len(split["validation"]) == 400
    again = reported_dev(datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "validation": dev}), seed=0)
    assert set(again["validation"]["title"]) == held  # seeded: the same articles every run

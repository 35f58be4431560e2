"""The Gradio demo without a browser: the Blocks app builds over tiny artifacts made here, and every handler
gives a result for good input and a clear message for empty, huge, binary or missing-artifact input."""

from __future__ import annotations

import gradio as gr
import pytest

from tests.helpers import make_backbone

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def make_demo_artifacts(root):
    """artifacts/backbones/{nano (with a chat template), plain} + tasks/{classification, sentiment, ner}:
    random weights, real artifact folders. QA, translation and codegen stay missing."""
    from backbone.tokenizer import Tokenizer
    from tasks.base import save_task
    from tasks.classification.module import SequenceClassifier
    from tasks.ner.module import TokenClassifier

    nano = make_backbone(root / "backbones" / "nano")
    tokenizer = Tokenizer.from_pretrained(nano)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save(nano)
    make_backbone(root / "backbones" / "plain")
    labels = {"classification": ["business", "sport", "tech"], "sentiment": ["negative", "positive"]}
    for task, names in labels.items():
        module = SequenceClassifier(str(nano), label_names=names)
        module.configure_model()
        save_task(module, root / "tasks" / task)
    module = TokenClassifier(str(nano), label_names=NER_LABELS)
    module.configure_model()
    save_task(module, root / "tasks" / "ner")
    return root


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return make_demo_artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def reg(artifacts):
    from demos.common import Registry

    return Registry(artifacts)


def error_of(fn, *args) -> str:
    """The message a handler shows the person (it raises gr.Error), consuming generators."""
    with pytest.raises(gr.Error) as info:
        out = fn(*args)
        if hasattr(out, "__next__"):
            list(out)
    return info.value.message


HUGE = "x" * 100_000
BINARY = "\x00\x01\x02\xff\xfe" * 20


def test_build_app_has_every_tab_and_a_queue(artifacts):
    from demos.app import build_app

    demo = build_app(artifacts, concurrency_limit=2)
    config = demo.get_config_file()
    labels = {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert {"Topic classification", "Sentiment", "Named entities", "Question answering", "Translation",
            "Code generation", "Generation playground", "Attention", "Chat"} <= labels
    apis = {d["api_name"] for d in config["dependencies"] if d.get("api_name")}
    assert {"classification", "sentiment", "ner", "qa", "translation", "codegen", "run_tests", "generate",
            "compare_cache", "attention", "chat"} <= apis
    assert demo._queue.default_concurrency_limit == 2 and demo._queue.max_size == 64
    assert all(d["queue"] for d in config["dependencies"])
    dropdown = next(c for c in config["components"] if c["props"].get("elem_id") == "backbone")
    assert [choice[0] for choice in dropdown["props"]["choices"]] == ["nano", "plain"]


def test_missing_artifacts_name_the_command(tmp_path, artifacts):
    from demos import tabs_generate as g
    from demos import tabs_tasks as t
    from demos.common import Registry

    reg = Registry(artifacts)
    assert "gptsuite qa fit --config configs/tasks/qa.yaml" in error_of(t.answer, reg, "q?", "some context")
    assert "gptsuite translation fit" in error_of(t.translate, reg, "hello")
    assert "gptsuite codegen fit" in error_of(t.complete_code, reg, "def f():\n")
    empty = Registry(tmp_path / "nothing")
    assert "gptsuite classification fit" in error_of(t.classify, empty, "classification", "some text")
    assert "gptsuite pretrain fit" in error_of(g.attention, empty, None, "hello", 0, 0)
    assert "gptsuite pretrain fit" in error_of(g.generate_stream, empty, None, "hello", 8)


@pytest.mark.parametrize("text, expected", [("", "is empty"), ("   \n", "is empty"), (HUGE, "100,000 characters"),
                                            (BINARY, "binary data")])
def test_bad_input_gets_a_clear_message(reg, text, expected):
    from demos import tabs_generate as g
    from demos import tabs_tasks as t

    handlers = [(t.classify, reg, "sentiment", text), (t.ner, reg, text), (t.answer, reg, text, "context"),
                (t.answer, reg, "question?", text), (t.translate, reg, text),
                (t.run_tests, reg, "def f():\n", text, "def check(c):\n    pass\n", "f"),
                (g.generate_stream, reg, "nano", text, 8), (g.attention, reg, "nano", text, 0, 0),
                (g.chat_stream, reg, "nano", text, [])]
    for fn, *args in handlers:
        assert expected in error_of(fn, *args), fn.__name__


def test_classification_and_sentiment_give_probabilities(reg):
    from demos.tabs_tasks import classify

    for task, labels in (("classification", {"business", "sport", "tech"}), ("sentiment", {"negative", "positive"})):
        probs = classify(reg, task, "a wonderful, moving film")
        assert set(probs) == labels and abs(sum(probs.values()) - 1) < 1e-4


def test_ner_highlights_merged_entities(reg):
    from demos.tabs_tasks import entity_segments, ner

    text = "Angela Merkel met Macron in Paris ."
    words = text.split()
    entities = [{"type": "PER", "start": 0, "end": 2}, {"type": "PER", "start": 3, "end": 4},
                {"type": "LOC", "start": 5, "end": 6}]
    assert entity_segments(text, words, entities) == [("Angela Merkel", "PER"), (" met ", None), ("Macron", "PER"),
                                                      (" in ", None), ("Paris", "LOC"), (" .", None)]
    segments, found = ner(reg, "Angela Merkel visited Paris.")  # random weights: any tags, same text back
    assert "".join(piece for piece, _ in segments) == "Angela Merkel visited Paris."
    assert all(label in (None, "PER", "LOC") for _, label in segments)
    assert all(set(e) == {"type", "text", "words"} for e in found)


def test_qa_and_translation_and_codegen_with_stand_in_models(reg, monkeypatch):
    """QA / translation / codegen modules are written elsewhere: stand-ins with their predict() contracts."""
    from demos import tabs_tasks as t

    class QA:
        def predict(self, questions, contexts):
            return [{"answer": "Paris", "start": contexts[0].index("Paris"), "end": contexts[0].index("Paris") + 5,
                     "score": 0.9}]

    class Translation:
        def predict(self, texts):
            return [t.upper() for t in texts]

    class Codegen:
        def predict(self, prompt):
            return "    return a + b\n"

    stand_ins = {"qa": QA(), "translation": Translation(), "codegen": Codegen()}
    monkeypatch.setattr(type(reg), "task", lambda self, task: stand_ins[task])
    monkeypatch.setattr(type(reg), "has_task", lambda self, task: task in stand_ins)
    segments, summary = t.answer(reg, "Where?", "The tower is in Paris, France.")
    assert segments == [("The tower is in ", None), ("Paris", "answer"), (", France.", None)]
    assert "**Paris**" in summary and "0.900" in summary
    assert t.translate(reg, "hello") == "HELLO"
    completion = t.complete_code(reg, t.CODE_PROMPT)
    assert "passed" in t.run_tests(reg, t.CODE_PROMPT, completion, t.CODE_TEST, "add")


def test_run_tests_through_the_sandbox(reg):
    from demos.tabs_tasks import CODE_PROMPT, CODE_TEST, run_tests

    assert "**passed**" in run_tests(reg, CODE_PROMPT, "    return a + b\n", CODE_TEST, "add")
    assert "**failed**" in run_tests(reg, CODE_PROMPT, "    return a - b\n", CODE_TEST, "add")
    assert "not valid Python" in run_tests(reg, CODE_PROMPT, "    return a +\n", CODE_TEST, "add")
    assert "entry point" in error_of(run_tests, reg, CODE_PROMPT, "    return 1\n", CODE_TEST, "not a name")
    assert "check(candidate)" in error_of(run_tests, reg, CODE_PROMPT, "    return 1\n", "assert True", "add")


def test_playground_streams_clamps_and_reports_speed(reg):
    from demos.tabs_generate import compare_cache, generate_stream

    # temperature, top_k, top_p, min_p, repetition_penalty, no_repeat_ngram, beams, length_penalty, stop, seed, cache
    steps = list(generate_stream(reg, "nano", "a wonderful film", 10_000, 0.8, 20, 0.9, 0.05, 1.2, 2, 1, 1.0, "", 3, True))
    assert len(steps) > 2  # streamed
    text, stats = steps[-1]
    assert "tokens/s" in stats and "KV cache on" in stats and "clamped from 10000 to" in stats
    _, beam_stats = list(generate_stream(reg, "nano", "a film", 6, 0, 0, 1, 0, 1, 0, 3, 1.0, "", -1, False))[-1]
    assert "beam search (3 beams)" in beam_stats and "KV cache off" in beam_stats
    assert "top_p" in error_of(generate_stream, reg, "nano", "a film", 6, 0.5, 0, 0.0, 0, 1, 0, 1, 1.0, "", 0, True)
    table = compare_cache(reg, "nano", "a wonderful film", 12)
    assert "| on |" in table and "| off |" in table and "outputs identical" in table


def test_attention_view_draws_every_layer_and_head(reg):
    from demos.tabs_generate import attention

    grid, head, note = attention(reg, "nano", "the best movie", 99, 1)
    assert grid.size[0] > 200 and grid.size[1] > 200 and head.size[0] > 50
    assert "2 layers x 4 heads" in note and "layer 1, head 1" in note  # layer 99 clamped
    _, _, note = attention(reg, "nano", "word " * 200, 0, 0)
    assert "Only the first 32 of" in note


def test_chat_is_multi_turn_and_needs_a_template(reg):
    from demos.tabs_generate import chat_status, chat_stream

    steps = list(chat_stream(reg, "nano", "hello there", [], 8, 0))
    history, cleared = steps[-1]
    assert cleared == "" and [m["role"] for m in history] == ["user", "assistant"]
    history, _ = list(chat_stream(reg, "nano", "and again", history, 8, 0.7))[-1]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert "no chat template" in error_of(chat_stream, reg, "plain", "hello", [], 8, 0)
    assert "no chat template" in chat_status(reg, "plain") and "Chatting with" in chat_status(reg, "nano")


def test_demo_command_is_registered():
    from tasks.cli import build_parser

    args = build_parser().parse_args(["demo", "--port", "7861", "--artifacts", "somewhere"])
    assert (args.host, args.port, args.artifacts, args.func.__name__) == ("127.0.0.1", 7861, "somewhere", "cmd_demo")

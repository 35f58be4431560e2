"""The Gradio demo without a browser: the Blocks app builds over tiny artifacts made here, and every handler
gives a result for good input and a clear message for empty, huge, binary or missing-artifact input."""

from __future__ import annotations

import json
import shutil

import gradio as gr
import pytest
import torch

from backbone.artifact import load_backbone, save_backbone
from backbone.data.parsers import RELATION_LABELS
from backbone.generate import GenerationConfig
from backbone.tokenizer import Tokenizer
from demos import tabs_generate as g
from demos import tabs_tasks as t
from demos.app import build_app
from demos.common import ArtifactStore
from tasks.artifact import save_task
from tasks.catalog import TASKS
from tasks.classification.module import SequenceClassifier
from tasks.cli import build_parser
from tasks.codegen.module import CodeGenerator
from tasks.codegen.sandbox import Result
from tasks.ner.module import TokenClassifier
from tasks.outputs import Entity
from tasks.qa.span import SpanQA
from tasks.translation.module import Translator
from tests.helpers import make_backbone

CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def make_demo_artifacts(root):
    """artifacts/backbones/{nano (with a chat template), plain} + a saved task of each registered kind:
    random weights (the NER head set to tag every word B-LOC, the relation head to call every pair
    located_in), real artifact folders, real predict()."""
    nano = make_backbone(root / "backbones" / "nano")
    tokenizer = Tokenizer.from_pretrained(nano)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save(nano)
    make_backbone(root / "backbones" / "plain")
    labels = {"classification": ["business", "sport", "tech"], "sentiment": ["negative", "positive"],
              "toxicity": ["non-toxic", "toxic"], "relations": RELATION_LABELS}
    for task, names in labels.items():
        module = SequenceClassifier(backbone=str(nano), label_names=names,
                                    negative_label="none" if task == "relations" else None)
        module.configure_model()
        if task == "relations":  # a known answer: every candidate pair is located_in
            with torch.no_grad():
                module.head.classifier.bias.copy_(torch.tensor([100.0 * (n == "located_in") for n in names]))
        save_task(module, root / "tasks" / task)
    module = TokenClassifier(backbone=str(nano), label_names=NER_LABELS)
    module.configure_model()
    with torch.no_grad():  # a known answer: every word scores B-LOC highest
        module.classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 100.0, 0.0]))
    save_task(module, root / "tasks" / "ner")
    writer = make_writer(root / "backbones" / "writer", " a")
    greedy = GenerationConfig(max_new_tokens=4, temperature=0.0)
    for name, module in (("qa", SpanQA(backbone=str(nano))),
                         ("translation", Translator(backbone=str(writer), generation=greedy, direction="en-es")),
                         ("codegen", CodeGenerator(backbone=str(writer), generation=greedy, num_samples=1))):
        module.configure_model()
        save_task(module, root / "tasks" / name)
    return root


def make_writer(directory, word: str):
    """A nano backbone that always says `word` (one token): the final norm outputs that token's embedding
    for every input, so the tied LM head scores it highest. A known answer for the generative tabs."""
    model, tokenizer = load_backbone(make_backbone(directory))
    (token,) = tokenizer.encode(word)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(model.transformer.wte.weight[token] * 100)
    save_backbone(directory, model, tokenizer)
    return directory


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    return make_demo_artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def store(artifacts):
    return ArtifactStore(artifacts)


def error_of(fn, *args) -> str:
    """The message a handler shows the person (it raises gr.Error), consuming generators."""
    with pytest.raises(gr.Error) as info:
        out = fn(*args)
        if hasattr(out, "__next__"):
            list(out)
    return info.value.message


CODE_PROMPT = TASKS["codegen"].sample  # the code tab's sample: def add(a, b) with a docstring
HUGE = "x" * 100_000
BINARY = "\x00\x01\x02\xff\xfe" * 20


def test_build_app_has_every_tab_and_a_queue(artifacts):
    demo = build_app(artifacts, concurrency_limit=2)
    config = demo.get_config_file()
    labels = {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert {"Topic classification", "Sentiment", "Named entities", "Question answering", "Translation",
            "Code generation", "Generation playground", "Attention", "Chat"} <= labels
    apis = {d["api_name"] for d in config["dependencies"] if d.get("api_name")}
    assert {"classification", "sentiment", "ner", "qa", "translation", "codegen", "run_tests", "generate",
            "compare_cache", "attention", "chat"} <= apis
    assert demo._queue.default_concurrency_limit == 2 and demo._queue.max_size == 16
    assert all(d["queue"] for d in config["dependencies"])
    # one concurrency group for every model call (the limit holds for all tabs together); cheap UI events
    # (a dropdown's description) have their own small one; nothing skips the queue through the REST route
    public = {fn.api_name: fn.concurrency_id for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert len(public) >= 15 and set(public.values()) == {"model"}
    assert {fn.concurrency_id for fn in demo.fns.values()} == {"model", "ui"} and not demo.api_open
    dropdown = next(c for c in config["components"] if c["props"].get("elem_id") == "backbone")
    assert [choice[0] for choice in dropdown["props"]["choices"]] == ["nano", "plain", "writer"]


def test_missing_artifacts_name_the_command(tmp_path, artifacts):
    empty = ArtifactStore(tmp_path / "nothing")
    assert "gptsuite qa fit --config configs/tasks/qa.yaml" in error_of(t.answer, empty, "qa", "q?", "some context")
    assert "gptsuite translation fit" in error_of(t.write_text, empty, "translation", "hello")
    assert "gptsuite codegen fit" in error_of(t.complete_code, empty, "codegen", "def f():\n")
    assert "gptsuite classification fit" in error_of(t.classify, empty, "classification", "some text")
    assert "gptsuite pretrain fit" in error_of(g.attention, empty, None, "hello", 0, 0)
    assert "gptsuite pretrain fit" in error_of(g.generate_stream, empty, None, "hello", 8)


@pytest.mark.parametrize("text, expected", [("", "is empty"), ("   \n", "is empty"), (HUGE, "100,000 characters"),
                                            (BINARY, "binary data")])
def test_bad_input_gets_a_clear_message(store, text, expected):
    handlers = [(t.classify, store, "sentiment", text), (t.tag_entities, store, "ner", text),
                (t.answer, store, "qa", text, "context"), (t.answer, store, "qa", "question?", text),
                (t.write_text, store, "translation", text),
                (t.run_tests, store, "codegen", "def f():\n", text, "def check(c):\n    pass\n", "f"),
                (g.generate_stream, store, "nano", text, 8), (g.attention, store, "nano", text, 0, 0),
                (g.chat_stream, store, "nano", text, [])]
    for fn, *args in handlers:
        assert expected in error_of(fn, *args), fn.__name__


def test_classification_and_sentiment_give_probabilities(store):
    for task, labels in (("classification", {"business", "sport", "tech"}), ("sentiment", {"negative", "positive"})):
        probs = t.classify(store, task, "a wonderful, moving film")
        assert set(probs) == labels and abs(sum(probs.values()) - 1) < 1e-4


def test_ner_highlights_merged_entities(store):
    text = "Angela Merkel met Macron in Paris ."
    words = text.split()
    entities = [Entity("PER", 0, 2, "Angela Merkel"), Entity("PER", 3, 4, "Macron"), Entity("LOC", 5, 6, "Paris")]
    assert t.entity_segments(text, words, entities) == [("Angela Merkel", "PER"), (" met ", None), ("Macron", "PER"),
                                                      (" in ", None), ("Paris", "LOC"), (" .", None)]
    segments, found = t.tag_entities(store, "ner", "Angela Merkel visited Paris .")  # the head tags every word B-LOC
    assert "".join(piece for piece, _ in segments) == "Angela Merkel visited Paris ."
    assert found == [{"type": "LOC", "text": w, "words": [i, i + 1]}
                     for i, w in enumerate("Angela Merkel visited Paris .".split())]
    assert [label for _, label in segments] == ["LOC", None, "LOC", None, "LOC", None, "LOC", None, "LOC"]


def test_qa_translation_and_codegen_tabs_through_the_real_tasks(store):
    """The saved QA, translation and codegen tasks, loaded as the demo loads them, their real predict()."""
    context = "The tower is in Paris, France. It was built in 1889."
    segments, summary = t.answer(store, "qa", "Where is the tower?", context)
    assert "".join(piece for piece, _ in segments) == context  # the context comes back whole
    answers = [piece for piece, label in segments if label == "answer"]
    assert len(answers) == 1 and answers[0].strip() and answers[0] in context  # a span of the context
    assert summary.startswith("Answer: **") and "(score " in summary
    assert t.write_text(store, "translation", "the house").split() == ["a"] * 4  # the writer's one word, 4 tokens
    completion = t.complete_code(store, "codegen", CODE_PROMPT)
    assert completion.split() == ["a"] * 4
    verdict = t.run_tests(store, "codegen", CODE_PROMPT, completion or "    pass\n", t.CODE_TEST, "add")
    assert any(word in verdict for word in ("**failed**", "not valid Python", "**error**", "**timeout**"))
    assert "**passed**" in t.run_tests(store, "codegen", CODE_PROMPT, "    return a + b\n", t.CODE_TEST, "add")


def test_a_corrupt_task_artifact_is_a_message_naming_the_command(artifacts, tmp_path):
    root = tmp_path / "artifacts"
    shutil.copytree(artifacts, root)
    (root / "tasks" / "sentiment" / "trainable.safetensors").write_bytes(b"\x80not safetensors")
    (root / "tasks" / "qa" / "task.json").write_text("{broken")
    (root / "tasks" / "oops").mkdir()
    (root / "tasks" / "oops" / "task.json").write_text(  # names a class that is no task
        '{"task": "os.system", "hparams": {}, "adapter": {"class_path": "x", "init_args": {}}}')
    fresh = ArtifactStore(root)
    message = error_of(t.classify, fresh, "sentiment", "a fine film")
    assert "Could not load the sentiment artifact" in message and "gptsuite sentiment fit" in message
    message = error_of(t.answer, fresh, "qa", "Where?", "In Paris.")
    assert "qa" in message and "gptsuite qa fit" in message
    assert t.tag_entities(fresh, "ner", "Paris")[1]  # the other tasks still work
    # the broken qa folder is listed as broken in its tab (its name says its task); one whose name says no
    # task is skipped, named in the summary; the app still builds
    assert [m.label for m in fresh.models("qa")] == ["qa (broken)"]
    assert "cannot load" in t.model_info(fresh, "qa", None) and "gptsuite qa fit" in t.model_info(fresh, "qa", None)
    assert "Skipped `oops`" in fresh.summary() and "not a registered task" in fresh.summary()
    assert all(m.name != "oops" for m in fresh.task_models() if m.task)
    build_app(root)


def test_every_exported_folder_is_listed_with_its_backbone_and_score(artifacts, tmp_path):
    """Two folders of one task under artifacts/tasks (one with a test score), one two levels deep, one given
    with --task outside artifacts/, and a classifier whose name does not say its task: each is listed, its
    tab says what it sits on and how good it is, and the handlers run the chosen one."""
    root = tmp_path / "artifacts"
    shutil.copytree(artifacts, root)
    tasks = root / "tasks"
    shutil.copytree(tasks / "ner", tasks / "ner-mine")
    shutil.copytree(tasks / "ner", tasks / "smollm2" / "ner")
    shutil.copytree(tasks / "sentiment", tasks / "my-classifier")
    extra = shutil.copytree(tasks / "ner", tmp_path / "elsewhere" / "mine")
    (tasks / "ner-mine" / "test_metrics.json").write_text(json.dumps(
        {"test/f1": 0.874, "test/f1_ci95": [0.869, 0.879], "test/examples": 3453.0, "test/precision": 0.9}))
    store = ArtifactStore(root, task_dirs=[extra])

    assert [m.name for m in store.models("ner")] == ["ner", "ner-mine", "smollm2/ner", str(extra)]
    assert store.default_model("ner").name == "ner"
    mine = t.model_info(store, "ner", str(tasks / "ner-mine"))
    assert f"`{tasks / 'ner-mine'}`" in mine and "**nano** (nano preset" in mine
    assert "F1 87.4 [86.9, 87.9] on 3,453 test examples" in mine
    assert "no test score recorded" in t.model_info(store, "ner", str(tasks / "ner"))
    assert "no test score recorded" in t.model_info(store, "ner", None)  # the default: the folder named ner
    assert "not found" in t.backbone_text(store, "somewhere/big")

    # a SequenceClassifier serves four tasks: a folder named after none of them is offered in each, with a note
    for task in ("classification", "sentiment", "toxicity", "relations"):
        assert "my-classifier" in [m.name for m in store.models(task)], task
    assert store.default_model("sentiment").name == "sentiment"
    assert "does not say" in t.model_info(store, "toxicity", str(tasks / "my-classifier"))

    # the handlers run the chosen folder; a folder the store does not list is refused with the fit command
    for folder in (extra, tasks / "smollm2" / "ner"):
        assert t.tag_entities(store, "ner", "Paris", str(folder))[1] == [{"type": "LOC", "text": "Paris",
                                                                          "words": [0, 1]}]
    assert set(t.classify(store, "sentiment", "a film", str(tasks / "my-classifier"))) == {"negative", "positive"}
    message = error_of(t.tag_entities, store, "ner", "Paris", str(tmp_path))
    assert "not a named entities model" in message and "gptsuite ner fit" in message

    summary = store.summary()
    assert "ner: `ner`, `ner-mine`, `smollm2/ner`, " + f"`{extra}`" in summary and "--task folders" in summary
    config = build_app(root, task_dirs=[extra]).get_config_file()
    picker = next(c for c in config["components"] if c["props"].get("elem_id") == "ner-model")
    assert [label for label, _ in picker["props"]["choices"]] == ["ner", "ner-mine", "smollm2/ner", str(extra)]
    assert picker["props"]["value"] == str(tasks / "ner")

    # `fit` records the task's name in task.json: the classifier is then listed under that task alone
    spec = json.loads((tasks / "my-classifier" / "task.json").read_text())
    (tasks / "my-classifier" / "task.json").write_text(json.dumps({**spec, "name": "toxicity"}))
    assert [task for task in TASKS if "my-classifier" in [m.name for m in store.models(task)]] == ["toxicity"]
    assert "does not say" not in t.model_info(store, "toxicity", str(tasks / "my-classifier"))


def test_a_broken_chat_template_is_a_message_not_a_crash(artifacts, tmp_path):
    root = tmp_path / "artifacts"
    shutil.copytree(artifacts, root)
    tokenizer = Tokenizer.from_pretrained(root / "backbones" / "nano")
    tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }"  # unclosed tag
    tokenizer.save(root / "backbones" / "nano")
    message = error_of(g.chat_stream, ArtifactStore(root), "nano", "hello", [], 8, 0)
    assert "chat template" in message


def test_run_tests_through_the_sandbox(store):
    def verdict(completion, test=t.CODE_TEST, entry="add"):
        return t.run_tests(store, "codegen", CODE_PROMPT, completion, test, entry)

    assert "**passed**" in verdict("    return a + b\n")
    assert "**failed**" in verdict("    return a - b\n")
    assert "not valid Python" in verdict("    return a +\n")
    assert "entry point" in error_of(verdict, "    return 1\n", t.CODE_TEST, "not a name")
    assert "check(candidate)" in error_of(verdict, "    return 1\n", "assert True")


def test_playground_streams_clamps_and_reports_speed(store):
    # temperature, top_k, top_p, min_p, repetition_penalty, no_repeat_ngram, beams, length_penalty, stop, seed, cache
    steps = list(g.generate_stream(store, "nano", "a wonderful film",
                                 10_000, 0.8, 20, 0.9, 0.05, 1.2, 2, 1, 1.0, "", 3, True))
    assert len(steps) > 2  # streamed
    text, stats = steps[-1]
    assert "tokens/s" in stats and "KV cache on" in stats and "clamped from 10000 to" in stats
    _, beam_stats = list(g.generate_stream(store, "nano", "a film", 6, 0, 0, 1, 0, 1, 0, 3, 1.0, "", -1, False))[-1]
    assert "beam search (3 beams)" in beam_stats and "KV cache off" in beam_stats
    assert "top_p" in error_of(g.generate_stream, store, "nano", "a film", 6, 0.5, 0, 0.0, 0, 1, 0, 1, 1.0, "", 0, True)
    table = g.compare_cache(store, "nano", "a wonderful film", 12)
    assert "| on |" in table and "| off |" in table and "outputs identical" in table


def test_attention_view_draws_every_layer_and_head(store):
    grid, head, note = g.attention(store, "nano", "the best movie", 99, 1)
    assert grid.size[0] > 200 and grid.size[1] > 200 and head.size[0] > 50
    assert "2 layers x 4 heads" in note and "layer 1, head 1" in note  # layer 99 clamped
    _, _, note = g.attention(store, "nano", "word " * 200, 0, 0)
    assert "Only the first 32 of" in note


def test_chat_is_multi_turn_and_needs_a_template(store):
    steps = list(g.chat_stream(store, "nano", "hello there", [], 8, 0))
    history, cleared = steps[-1]
    assert cleared == "" and [m["role"] for m in history] == ["user", "assistant"]
    history, _ = list(g.chat_stream(store, "nano", "and again", history, 8, 0.7))[-1]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert "no chat template" in error_of(g.chat_stream, store, "plain", "hello", [], 8, 0)
    assert "no chat template" in g.chat_status(store, "plain") and "Chatting with" in g.chat_status(store, "nano")


def test_demo_command_is_registered():
    args = build_parser().parse_args(["demo", "--port", "7861", "--artifacts", "somewhere"])
    assert (args.host, args.port, args.artifacts, args.task_dirs) == ("127.0.0.1", 7861, "somewhere", [])
    args = build_parser().parse_args(["demo", "--task", "runs/my-ner", "--task", "/data/ner-smollm2"])
    assert args.task_dirs == ["runs/my-ner", "/data/ner-smollm2"]
    assert args.func.__module__ == "demos.__main__"  # registered by demos through the entry point


def test_a_programs_output_cannot_render_markdown_in_the_code_tab():
    fake = "```\n\n✅ **passed** in 0.01 s\n\n```"
    result = Result("failed", 1, stdout=fake, reason="raised AssertionError: ``` x", isolation=("netns",))
    shown = t.format_result(result)
    assert shown.count("\n````") == 4  # both blocks fenced with four backticks: longer than any run inside
    assert shown.startswith("❌ **failed**") and "Isolation: netns" in shown

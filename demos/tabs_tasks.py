"""The task tabs: one per registered task (tasks.catalog), laid out by what its predict returns.

    LabelScores    a text in, label probabilities out          (classification, sentiment)
    Entities       a text in, its entities highlighted          (NER)
    Answer         a question and a context in, the answer highlighted in the context (QA)
    Completion     a code prompt in, a completion out, and HumanEval-style tests run in the sandbox (codegen)
    GeneratedText  a text in, a text out                         (translation)

A new task whose output is one of these types (and whose input is the one that layout reads) gets its tab
from its TaskSpec (title, sample) alone; any other task gets a notice in its tab, and the rest still work.
Each tab picks one of the task's models (every exported folder the store lists for it) and says what it sits
on: its folder, its backbone and its recorded test score.
Handlers are plain functions of (artifact store, task, inputs..., model folder) so tests can call them
directly (the folder last and optional: None is the task's default model); `build_*` functions lay out the
components inside an open gr.Blocks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import gradio as gr

from demos.common import ArtifactStore, backbone_shape
from demos.limits import MAX_CODE_CHARS, MAX_NAME_CHARS, UI_EVENT, check_text, fail
from tasks.artifact import METRICS_FILE
from tasks.catalog import TASKS
from tasks.codegen.sandbox import check_program
from tasks.outputs import Answer, Completion, Entities, GeneratedText, LabelScores, Question
from tasks.spec import TaskSpec

CODE_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
CODE_ENTRY_POINT = "add"  # the function the sample code prompt defines and CODE_TEST checks


# --------------------------------------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------------------------------------
def classify(store: ArtifactStore, task: str, text: str, model: str | None = None) -> dict[str, float]:
    """Label probabilities for gr.Label."""
    return store.task(task, model).predict(check_text(text)).scores


def entity_segments(text: str, words: list[str], entities) -> list[tuple[str, str | None]]:
    """Cut `text` into (piece, entity type or None) for gr.HighlightedText; entities are word spans
    [start, end) whose B-/I- tags are already merged (tasks.outputs.Entity)."""
    offsets, cursor = [], 0
    for word in words:  # char span of every word, found in order
        at = text.find(word, cursor)
        at = cursor if at < 0 else at
        offsets.append((at, at + len(word)))
        cursor = at + len(word)
    segments, cursor = [], 0
    for ent in sorted(entities, key=lambda e: e.start):
        if ent.start >= len(offsets) or ent.end <= ent.start:
            continue
        begin, end = offsets[ent.start][0], offsets[min(ent.end, len(offsets)) - 1][1]
        if begin < cursor:
            continue
        if begin > cursor:
            segments.append((text[cursor:begin], None))
        segments.append((text[begin:end], ent.type))
        cursor = end
    if cursor < len(text):
        segments.append((text[cursor:], None))
    return segments


def tag_entities(store: ArtifactStore, task: str, text: str, model: str | None = None):
    """(highlighted segments, entity list) for an Entities tab."""
    text = check_text(text)
    out: Entities = store.task(task, model).predict(text)
    entities = [{"type": e.type, "text": e.text, "words": [e.start, e.end]} for e in out.entities]
    return entity_segments(text, out.words, out.entities), entities


def answer(store: ArtifactStore, task: str, question: str, context: str, model: str | None = None):
    """(context with the answer highlighted, a one-line summary) for an Answer tab."""
    question = check_text(question, "question")
    context = check_text(context, "context")
    out: Answer = store.task(task, model).predict(Question(question, context))
    start, end = out.start, out.end
    if not 0 <= start < end <= len(context):  # a generated answer: find it in the context
        start = context.find(out.text) if out.text else -1
        end = start + len(out.text)
    score_text = f" (score {out.score:.3f})" if out.score is not None else ""
    if not out.text or start < 0:
        return [(context, None)], f"No answer found in the context{score_text}."
    segments = [(context[:start], None), (context[start:end], "answer"), (context[end:], None)]
    return [s for s in segments if s[0]], f"Answer: **{context[start:end]}**{score_text}"


def write_text(store: ArtifactStore, task: str, text: str, model: str | None = None) -> str:
    """The text a GeneratedText task writes for `text` (a translation)."""
    return store.task(task, model).predict(check_text(text)).text


def complete_code(store: ArtifactStore, task: str, prompt: str, model: str | None = None) -> str:
    return store.task(task, model).predict(check_text(prompt, "prompt", MAX_CODE_CHARS)).text


def run_tests(store: ArtifactStore, task: str, prompt: str, completion: str, test: str, entry_point: str,
              model: str | None = None) -> str:
    """Run HumanEval-style tests (`def check(candidate): ...`) on prompt + completion in the sandbox, through
    the model's own run_tests where it has one (no model: the plain sandbox, so tests run without one)."""
    prompt = check_text(prompt, "prompt", MAX_CODE_CHARS)
    completion = check_text(completion, "completion", MAX_CODE_CHARS)
    test = check_text(test, "test code", MAX_CODE_CHARS)
    entry_point = check_text(entry_point, "entry point", MAX_NAME_CHARS, required=False).strip()
    if not entry_point.isidentifier():
        fail(f"The entry point must be a Python function name, got {entry_point!r}.")
    if "def check(" not in test:
        fail("The test code must define `check(candidate)`, as HumanEval's tests do.")
    module = store.task(task, model) if model or store.has_task(task) else None
    if module is not None and hasattr(module, "run_tests"):
        result = module.run_tests(prompt, completion, test, entry_point)
    else:
        result = check_program(prompt + completion, test, entry_point, prompt=prompt)
    return format_result(result)


def format_result(result) -> str:
    """A sandbox Result as Markdown."""
    icon = {"passed": "✅", "failed": "❌", "timeout": "⏱️"}.get(result.status, "⚠️")
    lines = [f"{icon} **{result.status}** in {result.wall_s:.2f} s"]
    if result.reason:  # the sample's text is in it: shown as code, never as Markdown
        lines.append(f"Reason:\n{code_block(result.reason)}")
    lines.append("Isolation: " + (", ".join(result.isolation) if result.isolation else
                                  "none (the code did not run)"))
    for stream in ("stdout", "stderr"):
        tail = (getattr(result, stream) or "").strip()
        if tail:
            lines.append(f"{stream}:\n{code_block(tail[-1500:])}")
    return "\n\n".join(lines)


def code_block(text: str) -> str:
    """`text` in a fenced block it cannot close: the fence is longer than any run of backticks in it, so a
    program that prints a fence cannot render Markdown of its own (a fake "passed" line)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{text}\n{fence}"


# --------------------------------------------------------------------------------------------------------
# what a model is
# --------------------------------------------------------------------------------------------------------
METRIC_NAMES = {"f1": "F1", "macro_f1": "macro F1", "micro_f1": "micro F1", "exact_match": "exact match",
                "bleu": "BLEU", "chrf": "chrF"}


def recorded_score(folder: Path, spec: TaskSpec) -> str:
    """The task's main metric as `fit` recorded it in the folder's test_metrics.json: "F1 87.4 [86.9, 87.9]
    on 3,453 test examples", on the benchmark table's scale (fractions as percentages)."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return "no test score recorded"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return f"test score unreadable ({path}: {err})"
    reported = [m for m in spec.metrics if _is_number(values.get(f"test/{m}"))] if isinstance(values, dict) else []
    metric = reported[0] if reported else spec.metrics[0]  # metrics are in preference order (TaskSpec)
    value = values.get(f"test/{metric}") if isinstance(values, dict) else None
    if not _is_number(value):
        return f"no test {metric} recorded in {path}"
    scale = 100 if spec.fraction else 1
    text = f"{METRIC_NAMES.get(metric, metric)} {value * scale:.1f}"
    interval = values.get(f"test/{metric}_ci95")
    if isinstance(interval, list) and len(interval) == 2 and all(map(_is_number, interval)):
        text += f" [{interval[0] * scale:.1f}, {interval[1] * scale:.1f}]"
    examples = values.get("test/examples")
    return text + (f" on {int(examples):,} test examples" if _is_number(examples) else "")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def model_info(store: ArtifactStore, task: str, folder: str | None) -> str:
    """What the tab says about the chosen model: its folder, the backbone it sits on and its test score; or
    what is wrong with it, or the command that creates one."""
    spec = TASKS[task]
    if not store.models(task):
        return f"⚠️ {store.missing_message(task)}"
    try:
        model = store.find(task, folder)
    except gr.Error as err:
        return f"⚠️ {err.message}"
    if model.problem:
        return f"⚠️ `{model.path}` cannot load: {model.problem}. Recreate it with `{spec.fit_command}`."
    lines = [f"Model: `{model.path}`", f"Backbone: {backbone_text(store, model.backbone)}",
             f"Test score: {recorded_score(model.path, spec)}"]
    if model.note:
        lines.append(f"⚠️ {model.note}")
    return "  \n".join(lines)


def backbone_text(store: ArtifactStore, recorded: str | None) -> str:
    """**smollm2** (smollm2-135m preset, 134.5M parameters), from the backbone's config.json when found."""
    if not recorded:
        return "not recorded in task.json"
    folder = store.backbone_folder(recorded)
    if folder is None:
        return f"**{Path(recorded).name}** (not found: {recorded}, nor under {store.root / 'backbones'})"
    shape = backbone_shape(folder)
    return f"**{Path(recorded).name}**" + (f" ({shape})" if shape else "")


# --------------------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------------------
def model_picker(store: ArtifactStore, task: str) -> gr.Dropdown:
    """The tab's choice of model (every folder listed for the task) and what it is; the dropdown's value, a
    folder, is the last input of the tab's handlers."""
    models = store.models(task)
    default = store.default_model(task)
    picker = gr.Dropdown([(m.label, str(m.path)) for m in models], value=str(default.path) if default else None,
                         label="Model", elem_id=f"{task}-model", visible=bool(models), allow_custom_value=False)
    info = gr.Markdown(model_info(store, task, picker.value), elem_id=f"{task}-status")
    picker.change(lambda folder: model_info(store, task, folder), picker, info, api_name=False, **UI_EVENT)
    return picker


def build_label_tab(store: ArtifactStore, spec: TaskSpec, model: gr.Dropdown) -> None:
    task = spec.name
    text = gr.Textbox(label="Text", lines=3, value=spec.sample, elem_id=f"{task}-input")
    button = gr.Button("Classify", variant="primary", elem_id=f"{task}-button")
    label = gr.Label(label="Label probabilities", num_top_classes=10, elem_id=f"{task}-output")
    button.click(lambda t, m: classify(store, task, t, m), [text, model], label, api_name=task)
    text.submit(lambda t, m: classify(store, task, t, m), [text, model], label, api_name=False)


def build_entities_tab(store: ArtifactStore, spec: TaskSpec, model: gr.Dropdown) -> None:
    task = spec.name
    text = gr.Textbox(label="Text", lines=3, value=spec.sample, elem_id=f"{task}-input")
    button = gr.Button("Find entities", variant="primary", elem_id=f"{task}-button")
    spans = gr.HighlightedText(label="Entities", show_legend=True, elem_id=f"{task}-output")
    table = gr.JSON(label="Merged entities (word spans)", elem_id=f"{task}-entities")
    button.click(lambda t, m: tag_entities(store, task, t, m), [text, model], [spans, table], api_name=task)


def build_answer_tab(store: ArtifactStore, spec: TaskSpec, model: gr.Dropdown) -> None:
    task, sample = spec.name, spec.sample
    question = gr.Textbox(label="Question", value=sample.question, elem_id=f"{task}-question")
    context = gr.Textbox(label="Context", lines=5, value=sample.context, elem_id=f"{task}-context")
    button = gr.Button("Answer", variant="primary", elem_id=f"{task}-button")
    summary = gr.Markdown(elem_id=f"{task}-summary")
    spans = gr.HighlightedText(label="Answer in its context", color_map={"answer": "green"}, elem_id=f"{task}-output")
    button.click(lambda q, c, m: answer(store, task, q, c, m), [question, context, model], [spans, summary],
                 api_name=task)


def build_text_tab(store: ArtifactStore, spec: TaskSpec, model: gr.Dropdown) -> None:
    task = spec.name
    text = gr.Textbox(label="Source text", lines=3, value=spec.sample, elem_id=f"{task}-input")
    button = gr.Button("Write", variant="primary", elem_id=f"{task}-button")
    out = gr.Textbox(label=spec.title, lines=3, interactive=False, elem_id=f"{task}-output")
    button.click(lambda t, m: write_text(store, task, t, m), [text, model], out, api_name=task)


def build_code_tab(store: ArtifactStore, spec: TaskSpec, model: gr.Dropdown) -> None:
    task = spec.name
    gr.Markdown("Write or generate a completion, then run HumanEval-style tests on prompt + completion in "
                "the sandbox: two jailed processes, the verdict in the tests' one. Each result lists the isolation "
                "layers it ran under; where this machine offers no network, process and file-system isolation, "
                "the code is not run ([docs/sandbox.md](docs/sandbox.md)).")
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label="Prompt (function signature + docstring)", lines=6, value=spec.sample,
                                elem_id=f"{task}-prompt")
            generate = gr.Button("Generate completion", elem_id=f"{task}-generate")
            completion = gr.Textbox(label="Completion (editable)", lines=6, elem_id=f"{task}-completion")
        with gr.Column():
            test = gr.Textbox(label="Tests: def check(candidate)", lines=6, value=CODE_TEST, elem_id=f"{task}-test")
            entry = gr.Textbox(label="Entry point", value=CODE_ENTRY_POINT, elem_id=f"{task}-entry")
            run = gr.Button("Run tests", variant="primary", elem_id=f"{task}-run")
            result = gr.Markdown(elem_id=f"{task}-result")
    generate.click(lambda p, m: complete_code(store, task, p, m), [prompt, model], completion, api_name=task)
    # a second code tab's endpoint becomes run_tests_1 (Gradio numbers repeated names)
    run.click(lambda p, c, t, e, m: run_tests(store, task, p, c, t, e, m), [prompt, completion, test, entry, model],
              result, api_name="run_tests")


# the layout of each output type (the first match along the output type's class hierarchy) and the input
# type it reads
TAB_LAYOUTS = {
    LabelScores: (build_label_tab, str),
    Entities: (build_entities_tab, str),
    Answer: (build_answer_tab, Question),
    Completion: (build_code_tab, str),
    GeneratedText: (build_text_tab, str),
}


def tab_layout(spec: TaskSpec):
    """The builder of a task's tab, chosen by its output type (and the input type that layout reads); None
    when no layout shows the task, or its sample is not an input of its type."""
    if not isinstance(spec.sample, spec.input_type):
        return None
    for kind in spec.output_type.__mro__:
        if kind in TAB_LAYOUTS and issubclass(spec.input_type, TAB_LAYOUTS[kind][1]):
            return TAB_LAYOUTS[kind][0]
    return None


def build_task_tabs(store: ArtifactStore) -> None:
    for spec in TASKS.values():
        with gr.Tab(spec.title, id=spec.name):
            build = tab_layout(spec)
            if build is None:  # one task the demo cannot show never takes the others down
                gr.Markdown(f"⚠️ The demo has no layout for {spec.name}: {spec.input_type.__name__} in, "
                            f"{spec.output_type.__name__} out, sample {spec.sample!r}. Layouts: "
                            + ", ".join(f"{k.__name__} (from {t.__name__})" for k, (_, t) in TAB_LAYOUTS.items()),
                            elem_id=f"{spec.name}-status")
                continue
            build(store, spec, model_picker(store, spec.name))

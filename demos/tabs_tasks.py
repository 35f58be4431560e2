"""The task tabs: one per registered task (tasks.registry), laid out by what its predict returns.

    LabelScores    a text in, label probabilities out          (classification, sentiment)
    Entities       a text in, its entities highlighted          (NER)
    Answer         a question and a context in, the answer highlighted in the context (QA)
    Completion     a code prompt in, a completion out, and HumanEval-style tests run in the sandbox (codegen)
    GeneratedText  a text in, a text out                         (translation)

A new task whose output is one of these types (and whose input is the one that layout reads) gets its tab
from its TaskSpec (title, sample) alone; any other task gets a notice in its tab, and the rest still work.
Handlers are plain functions of (artifact store, task, inputs...) so tests can call them directly; `build_*`
functions lay out the components inside an open gr.Blocks.
"""

from __future__ import annotations

import gradio as gr

from demos.common import MAX_CODE_CHARS, ArtifactStore, check_text, fail
from tasks.outputs import Answer, Completion, Entities, GeneratedText, LabelScores, Question
from tasks.registry import TASKS
from tasks.spec import TaskSpec

CODE_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
CODE_ENTRY_POINT = "add"  # the function the sample code prompt defines and CODE_TEST checks


# --------------------------------------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------------------------------------
def classify(reg: ArtifactStore, task: str, text: str) -> dict[str, float]:
    """Label probabilities for gr.Label."""
    return reg.task(task).predict(check_text(text)).scores


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


def tag_entities(reg: ArtifactStore, task: str, text: str):
    """(highlighted segments, entity list) for an Entities tab."""
    text = check_text(text)
    out: Entities = reg.task(task).predict(text)
    entities = [{"type": e.type, "text": e.text, "words": [e.start, e.end]} for e in out.entities]
    return entity_segments(text, out.words, out.entities), entities


def answer(reg: ArtifactStore, task: str, question: str, context: str):
    """(context with the answer highlighted, a one-line summary) for an Answer tab."""
    question = check_text(question, "question")
    context = check_text(context, "context")
    out: Answer = reg.task(task).predict(Question(question, context))
    start, end = out.start, out.end
    if not 0 <= start < end <= len(context):  # a generated answer: find it in the context
        start = context.find(out.text) if out.text else -1
        end = start + len(out.text)
    score_text = f" (score {out.score:.3f})" if out.score is not None else ""
    if not out.text or start < 0:
        return [(context, None)], f"No answer found in the context{score_text}."
    segments = [(context[:start], None), (context[start:end], "answer"), (context[end:], None)]
    return [s for s in segments if s[0]], f"Answer: **{context[start:end]}**{score_text}"


def write_text(reg: ArtifactStore, task: str, text: str) -> str:
    """The text a GeneratedText task writes for `text` (a translation)."""
    return reg.task(task).predict(check_text(text)).text


def complete_code(reg: ArtifactStore, task: str, prompt: str) -> str:
    return reg.task(task).predict(check_text(prompt, "prompt", MAX_CODE_CHARS)).text


def run_tests(reg: ArtifactStore, task: str, prompt: str, completion: str, test: str, entry_point: str) -> str:
    """Run HumanEval-style tests (`def check(candidate): ...`) on prompt + completion in the sandbox."""
    prompt = check_text(prompt, "prompt", MAX_CODE_CHARS)
    completion = check_text(completion, "completion", MAX_CODE_CHARS)
    test = check_text(test, "test code", MAX_CODE_CHARS)
    entry_point = (entry_point or "").strip()
    if not entry_point.isidentifier():
        fail(f"The entry point must be a Python function name, got {entry_point!r}.")
    if "def check(" not in test:
        fail("The test code must define `check(candidate)`, as HumanEval's tests do.")
    module = reg.task(task) if reg.has_task(task) else None
    if module is not None and hasattr(module, "run_tests"):
        result = module.run_tests(prompt, completion, test, entry_point)
    else:
        from tasks.codegen.sandbox import check_program

        result = check_program(prompt + completion, test, entry_point, prompt=prompt)
    return format_result(result)


def format_result(result) -> str:
    """A sandbox Result as Markdown."""
    icon = {"passed": "✅", "failed": "❌", "timeout": "⏱️"}.get(result.status, "⚠️")
    lines = [f"{icon} **{result.status}** in {result.wall_s:.2f} s"]
    if result.reason:
        lines.append(f"Reason: {result.reason}")
    for stream in ("stdout", "stderr"):
        tail = (getattr(result, stream) or "").strip()
        if tail:
            lines.append(f"{stream}:\n```\n{tail[-1500:]}\n```")
    return "\n\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------------------
def _status(reg: ArtifactStore, task: str):
    """A note at the top of a tab: the artifact in use, or the command that creates it."""
    if reg.has_task(task):
        return gr.Markdown(f"Model: `{reg.task_dir(task)}`", elem_id=f"{task}-status")
    return gr.Markdown(f"⚠️ {reg.missing_message(task)}", elem_id=f"{task}-status")


def build_label_tab(reg: ArtifactStore, spec: TaskSpec) -> None:
    task = spec.name
    text = gr.Textbox(label="Text", lines=3, value=spec.sample, elem_id=f"{task}-input")
    button = gr.Button("Classify", variant="primary", elem_id=f"{task}-button")
    label = gr.Label(label="Label probabilities", num_top_classes=10, elem_id=f"{task}-output")
    button.click(lambda t: classify(reg, task, t), text, label, api_name=task)
    text.submit(lambda t: classify(reg, task, t), text, label, api_name=False)


def build_entities_tab(reg: ArtifactStore, spec: TaskSpec) -> None:
    task = spec.name
    text = gr.Textbox(label="Text", lines=3, value=spec.sample, elem_id=f"{task}-input")
    button = gr.Button("Find entities", variant="primary", elem_id=f"{task}-button")
    spans = gr.HighlightedText(label="Entities", show_legend=True, elem_id=f"{task}-output")
    table = gr.JSON(label="Merged entities (word spans)", elem_id=f"{task}-entities")
    button.click(lambda t: tag_entities(reg, task, t), text, [spans, table], api_name=task)


def build_answer_tab(reg: ArtifactStore, spec: TaskSpec) -> None:
    task, sample = spec.name, spec.sample
    question = gr.Textbox(label="Question", value=sample.question, elem_id=f"{task}-question")
    context = gr.Textbox(label="Context", lines=5, value=sample.context, elem_id=f"{task}-context")
    button = gr.Button("Answer", variant="primary", elem_id=f"{task}-button")
    summary = gr.Markdown(elem_id=f"{task}-summary")
    spans = gr.HighlightedText(label="Answer in its context", color_map={"answer": "green"}, elem_id=f"{task}-output")
    button.click(lambda q, c: answer(reg, task, q, c), [question, context], [spans, summary], api_name=task)


def build_text_tab(reg: ArtifactStore, spec: TaskSpec) -> None:
    task = spec.name
    text = gr.Textbox(label="Source text", lines=3, value=spec.sample, elem_id=f"{task}-input")
    button = gr.Button("Write", variant="primary", elem_id=f"{task}-button")
    out = gr.Textbox(label=spec.title, lines=3, interactive=False, elem_id=f"{task}-output")
    button.click(lambda t: write_text(reg, task, t), text, out, api_name=task)


def build_code_tab(reg: ArtifactStore, spec: TaskSpec) -> None:
    task = spec.name
    gr.Markdown("Write or generate a completion, then run HumanEval-style tests on prompt + completion in "
                "the sandbox (a separate process with time, memory and network limits).")
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
    generate.click(lambda p: complete_code(reg, task, p), prompt, completion, api_name=task)
    # a second code tab's endpoint becomes run_tests_1 (Gradio numbers repeated names)
    run.click(lambda p, c, t, e: run_tests(reg, task, p, c, t, e), [prompt, completion, test, entry], result,
              api_name="run_tests")


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


def build_task_tabs(reg: ArtifactStore) -> None:
    for spec in TASKS.values():
        with gr.Tab(spec.title, id=spec.name):
            build = tab_layout(spec)
            if build is None:  # one task the demo cannot show never takes the others down
                gr.Markdown(f"⚠️ The demo has no layout for {spec.name}: {spec.input_type.__name__} in, "
                            f"{spec.output_type.__name__} out, sample {spec.sample!r}. Layouts: "
                            + ", ".join(f"{k.__name__} (from {t.__name__})" for k, (_, t) in TAB_LAYOUTS.items()),
                            elem_id=f"{spec.name}-status")
                continue
            _status(reg, spec.name)
            build(reg, spec)

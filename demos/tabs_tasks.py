"""The task tabs: classification, sentiment, NER, QA, translation, code generation (with sandboxed tests).

Handlers are plain functions of (registry, inputs...) so tests can call them directly; `build_*` functions
lay out the components inside an open gr.Blocks.
"""

from __future__ import annotations

import gradio as gr

from demos.common import MAX_CODE_CHARS, TASK_TITLES, Registry, check_text, fail

SAMPLE = {
    "classification": "The central bank raised interest rates again as inflation stayed high.",
    "sentiment": "a wonderful, moving film with great acting",
    "ner": "Angela Merkel met Emmanuel Macron in Paris on Monday.",
    "qa_question": "Where is the Eiffel Tower?",
    "qa_context": "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was completed in 1889.",
    "translation": "The house is small.",
}
CODE_PROMPT = 'def add(a, b):\n    """Return the sum of a and b."""\n'
CODE_TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


# --------------------------------------------------------------------------------------------------------
# handlers
# --------------------------------------------------------------------------------------------------------
def classify(reg: Registry, task: str, text: str) -> dict[str, float]:
    """Label probabilities for gr.Label."""
    text = check_text(text)
    return reg.task(task).predict([text])[0]


def entity_segments(text: str, words: list[str], entities: list[dict]) -> list[tuple[str, str | None]]:
    """Cut `text` into (piece, entity type or None) for gr.HighlightedText; entities are word spans
    [start, end) whose B-/I- tags are already merged."""
    offsets, cursor = [], 0
    for word in words:  # char span of every word, found in order
        at = text.find(word, cursor)
        at = cursor if at < 0 else at
        offsets.append((at, at + len(word)))
        cursor = at + len(word)
    segments, cursor = [], 0
    for ent in sorted(entities, key=lambda e: e["start"]):
        if ent["start"] >= len(offsets) or ent["end"] <= ent["start"]:
            continue
        begin, end = offsets[ent["start"]][0], offsets[min(ent["end"], len(offsets)) - 1][1]
        if begin < cursor:
            continue
        if begin > cursor:
            segments.append((text[cursor:begin], None))
        segments.append((text[begin:end], ent["type"]))
        cursor = end
    if cursor < len(text):
        segments.append((text[cursor:], None))
    return segments


def ner(reg: Registry, text: str):
    """(highlighted segments, entity list) for the NER tab."""
    text = check_text(text)
    out = reg.task("ner").predict([text])[0]
    entities = [{"type": e["type"], "text": e["text"], "words": [e["start"], e["end"]]} for e in out["entities"]]
    return entity_segments(text, out["words"], out["entities"]), entities


def answer(reg: Registry, question: str, context: str):
    """(context with the answer highlighted, a one-line summary) for the QA tab."""
    question = check_text(question, "question")
    context = check_text(context, "context")
    out = reg.task("qa").predict([question], [context])[0]
    text, start, end = out.get("answer") or "", out.get("start"), out.get("end")
    if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(context)):
        start = context.find(text) if text else -1
        end = start + len(text)
    score = out.get("score")
    score_text = f" (score {score:.3f})" if isinstance(score, (int, float)) else ""
    if not text or start < 0:
        return [(context, None)], f"No answer found in the context{score_text}."
    segments = [(context[:start], None), (context[start:end], "answer"), (context[end:], None)]
    return [s for s in segments if s[0]], f"Answer: **{context[start:end]}**{score_text}"


def translate(reg: Registry, text: str) -> str:
    text = check_text(text)
    return reg.task("translation").predict([text])[0]


def complete_code(reg: Registry, prompt: str) -> str:
    prompt = check_text(prompt, "prompt", MAX_CODE_CHARS)
    out = reg.task("codegen").predict(prompt)
    return out[0] if isinstance(out, (list, tuple)) else str(out)


def run_tests(reg: Registry, prompt: str, completion: str, test: str, entry_point: str) -> str:
    """Run HumanEval-style tests (`def check(candidate): ...`) on prompt + completion in the sandbox."""
    prompt = check_text(prompt, "prompt", MAX_CODE_CHARS)
    completion = check_text(completion, "completion", MAX_CODE_CHARS)
    test = check_text(test, "test code", MAX_CODE_CHARS)
    entry_point = (entry_point or "").strip()
    if not entry_point.isidentifier():
        fail(f"The entry point must be a Python function name, got {entry_point!r}.")
    if "def check(" not in test:
        fail("The test code must define `check(candidate)`, as HumanEval's tests do.")
    module = reg.task("codegen") if reg.has_task("codegen") else None
    if module is not None and hasattr(module, "run_tests"):
        result = module.run_tests(prompt, completion, test, entry_point)
    else:
        from tasks.codegen.sandbox import check_program

        result = check_program(prompt + completion, test, entry_point)
    return format_result(result)


def format_result(result) -> str:
    """A sandbox Result (or a dict with the same fields) as Markdown."""
    if isinstance(result, dict):
        from types import SimpleNamespace

        result = SimpleNamespace(**result)
    status = getattr(result, "status", "error")
    icon = {"passed": "✅", "failed": "❌", "timeout": "⏱️"}.get(status, "⚠️")
    lines = [f"{icon} **{status}** in {getattr(result, 'wall_s', 0.0):.2f} s"]
    if getattr(result, "reason", ""):
        lines.append(f"Reason: {result.reason}")
    for stream in ("stdout", "stderr"):
        tail = (getattr(result, stream, "") or "").strip()
        if tail:
            lines.append(f"{stream}:\n```\n{tail[-1500:]}\n```")
    return "\n\n".join(lines)


# --------------------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------------------
def _status(reg: Registry, task: str):
    """A note at the top of a tab: the artifact in use, or the command that creates it."""
    if reg.has_task(task):
        return gr.Markdown(f"Model: `{reg.task_dir(task)}`", elem_id=f"{task}-status")
    return gr.Markdown(f"⚠️ {reg.missing_message(task)}", elem_id=f"{task}-status")


def build_label_tab(reg: Registry, task: str) -> None:
    with gr.Tab(TASK_TITLES[task], id=task):
        _status(reg, task)
        text = gr.Textbox(label="Text", lines=3, value=SAMPLE[task], elem_id=f"{task}-input")
        button = gr.Button("Classify", variant="primary", elem_id=f"{task}-button")
        label = gr.Label(label="Label probabilities", num_top_classes=10, elem_id=f"{task}-output")
        button.click(lambda t: classify(reg, task, t), text, label, api_name=task)
        text.submit(lambda t: classify(reg, task, t), text, label, api_name=False)


def build_ner_tab(reg: Registry) -> None:
    with gr.Tab(TASK_TITLES["ner"], id="ner"):
        _status(reg, "ner")
        text = gr.Textbox(label="Text", lines=3, value=SAMPLE["ner"], elem_id="ner-input")
        button = gr.Button("Find entities", variant="primary", elem_id="ner-button")
        spans = gr.HighlightedText(label="Entities", show_legend=True, elem_id="ner-output")
        table = gr.JSON(label="Merged entities (word spans)", elem_id="ner-entities")
        button.click(lambda t: ner(reg, t), text, [spans, table], api_name="ner")


def build_qa_tab(reg: Registry) -> None:
    with gr.Tab(TASK_TITLES["qa"], id="qa"):
        _status(reg, "qa")
        question = gr.Textbox(label="Question", value=SAMPLE["qa_question"], elem_id="qa-question")
        context = gr.Textbox(label="Context", lines=5, value=SAMPLE["qa_context"], elem_id="qa-context")
        button = gr.Button("Answer", variant="primary", elem_id="qa-button")
        summary = gr.Markdown(elem_id="qa-summary")
        spans = gr.HighlightedText(label="Answer in its context", color_map={"answer": "green"}, elem_id="qa-output")
        button.click(lambda q, c: answer(reg, q, c), [question, context], [spans, summary], api_name="qa")


def build_translation_tab(reg: Registry) -> None:
    with gr.Tab(TASK_TITLES["translation"], id="translation"):
        _status(reg, "translation")
        text = gr.Textbox(label="Source text", lines=3, value=SAMPLE["translation"], elem_id="translation-input")
        button = gr.Button("Translate", variant="primary", elem_id="translation-button")
        out = gr.Textbox(label="Translation", lines=3, interactive=False, elem_id="translation-output")
        button.click(lambda t: translate(reg, t), text, out, api_name="translation")


def build_codegen_tab(reg: Registry) -> None:
    with gr.Tab(TASK_TITLES["codegen"], id="codegen"):
        _status(reg, "codegen")
        gr.Markdown("Write or generate a completion, then run HumanEval-style tests on prompt + completion in "
                    "the sandbox (a separate process with time, memory and network limits).")
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt (function signature + docstring)", lines=6, value=CODE_PROMPT,
                                    elem_id="codegen-prompt")
                generate = gr.Button("Generate completion", elem_id="codegen-generate")
                completion = gr.Textbox(label="Completion (editable)", lines=6, elem_id="codegen-completion")
            with gr.Column():
                test = gr.Textbox(label="Tests: def check(candidate)", lines=6, value=CODE_TEST, elem_id="codegen-test")
                entry = gr.Textbox(label="Entry point", value="add", elem_id="codegen-entry")
                run = gr.Button("Run tests", variant="primary", elem_id="codegen-run")
                result = gr.Markdown(elem_id="codegen-result")
        generate.click(lambda p: complete_code(reg, p), prompt, completion, api_name="codegen")
        run.click(lambda p, c, t, e: run_tests(reg, p, c, t, e), [prompt, completion, test, entry], result,
                  api_name="run_tests")


def build_task_tabs(reg: Registry) -> None:
    build_label_tab(reg, "classification")
    build_label_tab(reg, "sentiment")
    build_ner_tab(reg)
    build_qa_tab(reg)
    build_translation_tab(reg)
    build_codegen_tab(reg)

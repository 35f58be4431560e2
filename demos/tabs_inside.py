"""Inside the model: the logit lens (what each layer would predict next), the layer probe (how well each
layer's frozen states predict NER tags or sentiment) and token attribution (which tokens made a classifier
decide). The attention view, the fourth way in, is its own tab (demos.tabs_generate)."""

from __future__ import annotations

import html
from typing import get_args

import gradio as gr

from backbone.lens import logit_lens
from demos.common import ArtifactStore
from demos.limits import (
    MAX_ATTRIBUTION_STEPS,
    MAX_LENS_TOKENS,
    MAX_PROBE_TEST,
    MAX_PROBE_TRAIN,
    check_text,
    fail,
)
from tasks.attribution import attribute
from tasks.catalog import TASKS
from tasks.classification.module import SequenceClassifier
from tasks.probe import ProbeTask, benchmark_examples, probe_layers, probe_table

CLASSIFIERS = tuple(name for name, spec in TASKS.items()  # the tasks attribution reads
                    if spec.module == f"{SequenceClassifier.__module__}.{SequenceClassifier.__qualname__}")
PROBE_TASKS = get_args(ProbeTask)
BENCHMARK_OF = {"ner": "conll2003", "sentiment": "mr_sentiment"}  # for the message when the data is missing


def shown(token: str) -> str:
    """A token as a Markdown table cell: its repr, with the characters that would end the cell or the code escaped."""
    return "<code>" + html.escape(repr(token)).replace("|", "&#124;") + "</code>"


def lens_markdown(store: ArtifactStore, backbone: str | None, text: str) -> str:
    model, tokenizer = store.backbone(backbone)
    text = check_text(text)
    grid = logit_lens(model, tokenizer, text, top=1, max_tokens=MAX_LENS_TOKENS)
    header = "| layer | " + " | ".join(shown(t) for t in grid.tokens) + " |"
    cells = grid.cells()
    rows = [f"| {k}{' (output)' if k == len(cells) - 1 else ''} | "
            + " | ".join(f"{shown(token)} {p:.2f}" for token, p in row) + " |" for k, row in enumerate(cells)]
    note = (f"Each cell: the most likely next token read from that layer's stream, and its probability (the first "
            f"{MAX_LENS_TOKENS} tokens at most; the backbone as this demo loaded it, quantised or not: --quantize).")
    return "\n".join([note, "", header, "|---" * (len(grid.tokens) + 1) + "|", *rows])


def probe_markdown(store: ArtifactStore, backbone: str | None, task: str, train: int, test: int) -> str:
    if task not in PROBE_TASKS:
        fail(f"The probe reads {' or '.join(PROBE_TASKS)}, not {task!r}.")
    train, test = int(min(max(train or 1, 1), MAX_PROBE_TRAIN)), int(min(max(test or 1, 1), MAX_PROBE_TEST))
    model, tokenizer = store.backbone(backbone)
    rows = [store.cached(("probe rows", task, split, n), lambda split=split, n=n: benchmark_examples(task, split, n),
                         f"the {task} benchmark", f"gptsuite data prepare {BENCHMARK_OF[task]}")
            for split, n in (("train", train), ("test", test))]  # read once per size, not at every click
    scores = probe_layers(model, tokenizer, task, *rows)
    return (f"{train} training and {test} test rows (seeded random subsets; `gptsuite probe` reads the whole test "
            f"split).\n\n" + probe_table(scores, task))


def attribution_markdown(store: ArtifactStore, task: str, text: str, method: str, steps: int) -> str:
    if task not in CLASSIFIERS:
        fail(f"Attribution reads a classifier ({', '.join(CLASSIFIERS)}), not {task!r}.")
    text = check_text(text)
    steps = int(min(max(steps or 1, 1), MAX_ATTRIBUTION_STEPS))
    try:
        result = attribute(store.task(task), text, method=method, steps=steps)
    except ValueError as err:
        fail(str(err))
    rows = [f"| {shown(token)} | {score:+.3f} |" for token, score in zip(result.tokens, result.scores)]
    return "\n".join([f"**{result.label}** (p = {result.probability:.3f}); {method.replace('_', ' ')}: each token's "
                      "share of the label's logit (positive: for the label).", "", "| token | attribution |",
                      "|---|---|", *rows])


def build_inside_tab(store: ArtifactStore, backbone: gr.Dropdown) -> None:
    with gr.Tab("Inside the model", id="inside"):
        with gr.Accordion("Logit lens: what each layer would predict next", open=True):
            lens_text = gr.Textbox(value="The capital of France is", label="Text", elem_id="lens-input")
            lens_run = gr.Button("Read every layer", variant="primary", elem_id="lens-button")
            lens_out = gr.Markdown(elem_id="lens-output")
            lens_run.click(lambda b, t: lens_markdown(store, b, t), [backbone, lens_text], lens_out,
                           api_name="lens")
        with gr.Accordion("Layer probe: how well each layer's states predict NER tags or sentiment", open=False):
            with gr.Row():
                probe_task = gr.Radio(list(PROBE_TASKS), value="sentiment", label="Task")
                train = gr.Number(value=200, precision=0, label=f"training rows (at most {MAX_PROBE_TRAIN})")
                test = gr.Number(value=100, precision=0, label=f"test rows (at most {MAX_PROBE_TEST})")
            probe_run = gr.Button("Probe every layer", elem_id="probe-button")
            probe_out = gr.Markdown(elem_id="probe-output")
            probe_run.click(lambda b, k, n, m: probe_markdown(store, b, k, n, m), [backbone, probe_task, train, test],
                            probe_out, api_name="probe")
        with gr.Accordion("Token attribution: which tokens made a classifier decide", open=False):
            with gr.Row():
                task = gr.Dropdown(list(CLASSIFIERS), value="sentiment", label="Classifier (its default model)")
                method = gr.Radio(["integrated_gradients", "gradient_x_input"], value="integrated_gradients",
                                  label="Method")
                steps = gr.Number(value=32, precision=0, label=f"steps (at most {MAX_ATTRIBUTION_STEPS})")
            attr_text = gr.Textbox(value="a warm, funny and beautifully made film", label="Text",
                                   elem_id="attr-input")
            attr_run = gr.Button("Explain", elem_id="attr-button")
            attr_out = gr.Markdown(elem_id="attr-output")
            attr_run.click(lambda k, t, m, s: attribution_markdown(store, k, t, m, s), [task, attr_text, method, steps],
                           attr_out, api_name="attribute")

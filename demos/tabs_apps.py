"""The applications' tabs (tasks.apps): article writing (streamed), the creativity-coherence sweep on your own
prompt, and the bias probe over the saved sentiment and NER tasks."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import gradio as gr

from demos.common import ArtifactStore, check_text, fail


# --------------------------------------------------------------------------------------------------------
# article writing
# --------------------------------------------------------------------------------------------------------
def article_stream(reg: ArtifactStore, backbone, title, outline="", sections=3, words=80, style="neutral",
                   temperature=0.7):
    """Yield the article as Markdown while it is written (the outline first, then each section)."""
    from backbone.generate import GenerationConfig
    from tasks.apps.article import STYLES, ArticleWriter, parse_outline

    title = check_text(title, "title", max_chars=200)
    if style not in STYLES:
        fail(f"Unknown style {style!r}: choose one of {', '.join(STYLES)}.")
    model, tokenizer = reg.backbone(backbone)
    temperature = float(temperature or 0)
    decoding = GenerationConfig(temperature=temperature, top_p=0.9 if temperature > 0 else 1.0,
                                repetition_penalty=1.1, seed=0)
    headings = parse_outline(outline, 12) if outline and outline.strip() else None
    writer = ArticleWriter(model, tokenizer, decoding)
    text, current = f"# {title.strip()}\n", -1
    try:
        for index, piece in writer.stream(title, headings, int(sections), int(words), style):
            if index == -1:
                headings = piece.splitlines()
                yield text + "\n*Outline: " + " · ".join(headings) + "*\n"
                continue
            if index != current:
                current = index
                text += f"\n## {headings[index]}\n\n"
            text += piece
            yield text
    except ValueError as err:
        fail(f"Cannot write the article: {err}")
    yield text


def build_article_tab(reg: ArtifactStore, backbone: gr.Dropdown) -> None:
    from tasks.apps.article import STYLES

    with gr.Tab("Article writing", id="article"):
        gr.Markdown("A title (and optionally an outline) in, an article out, one section at a time: each section "
                    "sees the outline and the previous section, so a long text stays on topic.")
        title = gr.Textbox(label="Title", value="Why small libraries still matter", elem_id="article-title")
        outline = gr.Textbox(label="Outline: headings separated by ';' (empty: the model writes one)",
                             elem_id="article-outline")
        with gr.Row():
            sections = gr.Slider(1, 6, value=3, step=1, label="sections (when the model writes the outline)")
            words = gr.Slider(20, 300, value=80, step=10, label="words per section")
            style = gr.Dropdown(list(STYLES), value="neutral", label="style")
            temperature = gr.Slider(0, 1.5, value=0.7, step=0.05, label="temperature (0 = greedy)")
        run = gr.Button("Write", variant="primary", elem_id="article-button")
        output = gr.Markdown(elem_id="article-output")

        def on_write(b, t, o, s, w, st, temp):
            yield from article_stream(reg, b, t, o, s, w, st, temp)

        run.click(on_write, [backbone, title, outline, sections, words, style, temperature], output,
                  api_name="article")


# --------------------------------------------------------------------------------------------------------
# creativity against coherence
# --------------------------------------------------------------------------------------------------------
def sweep_prompt(reg: ArtifactStore, backbone, prompt, settings, samples=3, max_new_tokens=32):
    """The chosen settings on one prompt: a table of the figures and the plot."""
    from tasks.apps.sweep import SETTINGS, measure_setting, plot, recommend

    prompt = check_text(prompt, "prompt")
    chosen = [(name, fields) for name, fields in SETTINGS if name in (settings or [])]
    if not chosen:
        fail("Pick at least one decoding setting.")
    model, tokenizer = reg.backbone(backbone)
    points = [measure_setting(model, tokenizer, [prompt], name, fields, samples=int(samples),
                              max_new_tokens=int(max_new_tokens)) for name, fields in chosen]
    lines = ["| setting | distinct-2 | repetition-4 | perplexity | first text |", "|---|---|---|---|---|"]
    for p in points:
        f = p.figures
        example = f["example"].replace("\n", " ").replace("|", "/")[:80]
        lines.append(f"| {p.setting} | {f['distinct_2']:.2f} | {f['repetition_4']:.2f} | {f['perplexity']:.1f} | "
                     f"{example} |")
    path = Path(tempfile.gettempdir()) / f"gptsuite-sweep-{uuid.uuid4().hex}.png"
    plot(points, recommend(points), path)
    note = ("\n\nPerplexity is the backbone's own (the CLI, `gptsuite sweep`, takes a separate judge). "
            "Lower perplexity and repetition: more coherent; higher distinct-2: more diverse.")
    return "\n".join(lines) + note, str(path)


def build_sweep_tab(reg: ArtifactStore, backbone: gr.Dropdown) -> None:
    from tasks.apps.sweep import SETTINGS

    with gr.Tab("Creativity vs coherence", id="sweep"):
        prompt = gr.Textbox(label="Prompt", value="The old lighthouse keeper opened the door and",
                            elem_id="sweep-prompt")
        names = [name for name, _ in SETTINGS]
        settings = gr.CheckboxGroup(names, value=["greedy", "T=0.7", "T=1.3", "top-p=0.8", "min-p=0.1"],
                                    label="decoding settings", elem_id="sweep-settings")
        with gr.Row():
            samples = gr.Slider(2, 8, value=3, step=1, label="samples per setting")
            max_new = gr.Slider(8, 128, value=32, step=8, label="max_new_tokens")
            run = gr.Button("Sweep", variant="primary", elem_id="sweep-button")
        table = gr.Markdown(elem_id="sweep-table")
        image = gr.Image(label="diversity against coherence", type="filepath", elem_id="sweep-plot")
        run.click(lambda b, p, s, n, m: sweep_prompt(reg, b, p, s, n, m),
                  [backbone, prompt, settings, samples, max_new], [table, image], api_name="sweep")


# --------------------------------------------------------------------------------------------------------
# bias probe
# --------------------------------------------------------------------------------------------------------
def bias_probe(reg: ArtifactStore, frames=12) -> str:
    """The gaps of the saved sentiment and NER tasks on `frames` sentence frames per pair."""
    from tasks.apps.bias import ner_gaps, sentiment_gaps, template_slots, write_report

    slots = template_slots(max(1, min(int(frames), 144)))
    rows = []
    for task, probe in (("sentiment", sentiment_gaps), ("ner", ner_gaps)):
        if reg.has_task(task):
            rows += probe(reg.task(task), slots=slots)
    if not rows:
        fail("No saved sentiment or NER task: create one with `gptsuite sentiment fit` or `gptsuite ner fit`.")
    out = Path(tempfile.gettempdir()) / f"gptsuite-bias-{uuid.uuid4().hex}"
    table = write_report(rows, out, {})
    examples = [f"- {r['model']}, {r['comparison']}: “{e['a']}” vs “{e['b']}”: {e['difference']:+.3f}"
                for r in rows for e in r["largest"][:1]]
    return (f"{len(slots)} sentence frames per pair (Equity Evaluation Corpus templates).\n\n{table}\n"
            "Largest difference of each comparison:\n\n" + "\n".join(examples))


def build_bias_tab(reg: ArtifactStore) -> None:
    with gr.Tab("Bias probe", id="bias"):
        gr.Markdown("The same sentence about different people (“my sister” / “my brother”, “Ebony” / “Amanda”): "
                    "does the sentiment score or the NER tag move? Gap = group A − group B, with a 95% interval.")
        with gr.Row():
            frames = gr.Slider(1, 144, value=12, step=1, label="sentence frames per pair (144 = the whole set)")
            run = gr.Button("Run the probe", variant="primary", elem_id="bias-button")
        output = gr.Markdown(elem_id="bias-output")
        run.click(lambda f: bias_probe(reg, f), frames, output, api_name="bias")

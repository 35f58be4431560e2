"""The applications' tabs (tasks.apps, tasks.kg), under one Applications tab: the knowledge graph (drawn, with
each edge's evidence), article writing (streamed), the creativity-coherence sweep on your own prompt, the
bias probe over the saved sentiment and NER tasks, safe output (refuse, block, mask, each said why) and
what each inference option buys."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from backbone.artifact import load_backbone
from backbone.generate import GenerationConfig
from demos.common import ArtifactStore, output_path
from demos.limits import (
    MAX_OUTLINE_CHARS,
    MAX_SWEEP_SAMPLES,
    MAX_SWEEP_TOKENS,
    MAX_TITLE_CHARS,
    check_text,
    fail,
)
from tasks.apps.article import STYLES, ArticleWriter, article_markdown, parse_outline
from tasks.apps.bias import PROBES, probe_tasks, template_slots, write_report
from tasks.apps.inference import compare_options, markdown
from tasks.apps.safety import SafeGenerator, default_block_list, moderator_of
from tasks.apps.sweep import SETTINGS, measure_setting, plot, recommend
from tasks.kg.graph import build_graph


# --------------------------------------------------------------------------------------------------------
# article writing
# --------------------------------------------------------------------------------------------------------
def article_stream(store: ArtifactStore, backbone, title, outline="", sections=3, words=80, style="neutral",
                   temperature=0.7):
    """Yield the article as Markdown while it is written (the outline first, then each section)."""
    title = check_text(title, "title", MAX_TITLE_CHARS)
    outline = check_text(outline, "outline", MAX_OUTLINE_CHARS, required=False)
    if style not in STYLES:
        fail(f"Unknown style {style!r}: choose one of {', '.join(STYLES)}.")
    model, tokenizer = store.decoder(backbone)
    temperature = float(temperature or 0)
    decoding = GenerationConfig(temperature=temperature, top_p=0.9 if temperature > 0 else 1.0,
                                repetition_penalty=1.1, seed=0)
    headings = parse_outline(outline, 12) if outline and outline.strip() else None
    if outline and outline.strip() and not headings:
        fail("The outline holds no heading: separate headings with ';' (or leave it empty).")
    writer = ArticleWriter(model, tokenizer, decoding)
    text = ""
    try:
        for piece in article_markdown(writer, title, headings, int(sections), int(words), style, show_outline=True):
            text += piece
            yield text
    except ValueError as err:
        fail(f"Cannot write the article: {err}")
    yield text


def build_article_tab(store: ArtifactStore, backbone: gr.Dropdown) -> None:
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
            yield from article_stream(store, b, t, o, s, w, st, temp)

        run.click(on_write, [backbone, title, outline, sections, words, style, temperature], output,
                  api_name="article")


# --------------------------------------------------------------------------------------------------------
# creativity against coherence
# --------------------------------------------------------------------------------------------------------
def sweep_prompt(store: ArtifactStore, backbone, prompt, settings, samples=3, max_new_tokens=32):
    """The chosen settings on one prompt: a table of the figures and the plot."""
    prompt = check_text(prompt, "prompt")
    chosen = [(name, fields) for name, fields in SETTINGS if name in (settings or [])]
    if not chosen:
        fail("Pick at least one decoding setting.")
    model, tokenizer = store.backbone(backbone)
    samples = max(1, min(int(samples), MAX_SWEEP_SAMPLES))  # the sliders' ranges, also for API callers
    max_new_tokens = max(1, min(int(max_new_tokens), MAX_SWEEP_TOKENS))
    points = [measure_setting(model, tokenizer, [prompt], name, fields, samples=samples,
                              max_new_tokens=max_new_tokens) for name, fields in chosen]
    lines = ["| setting | distinct-2 | repetition-4 | perplexity | first text |", "|---|---|---|---|---|"]
    for p in points:
        f = p.figures
        example = " ".join(f["example"].split()).replace("|", "/")[:80]  # one table cell: no line breaks
        lines.append(f"| {p.setting} | {f['distinct_2']:.2f} | {f['repetition_4']:.2f} | {f['perplexity']:.1f} | "
                     f"{example} |")
    path = output_path("sweep", ".png")
    plot(points, recommend(points), path)
    note = ("\n\nPerplexity is the backbone's own (the CLI, `gptsuite sweep`, takes a separate judge). "
            "Lower perplexity and repetition: more coherent; higher distinct-2: more diverse.")
    return "\n".join(lines) + note, str(path)


def build_sweep_tab(store: ArtifactStore, backbone: gr.Dropdown) -> None:
    with gr.Tab("Creativity vs coherence", id="sweep"):
        prompt = gr.Textbox(label="Prompt", value="The old lighthouse keeper opened the door and",
                            elem_id="sweep-prompt")
        names = [name for name, _ in SETTINGS]
        settings = gr.CheckboxGroup(names, value=["greedy", "T=0.7", "T=1.3", "top-p=0.8", "min-p=0.1"],
                                    label="decoding settings", elem_id="sweep-settings")
        with gr.Row():
            samples = gr.Slider(2, MAX_SWEEP_SAMPLES, value=3, step=1, label="samples per setting")
            max_new = gr.Slider(8, MAX_SWEEP_TOKENS, value=32, step=8, label="max_new_tokens")
            run = gr.Button("Sweep", variant="primary", elem_id="sweep-button")
        table = gr.Markdown(elem_id="sweep-table")
        image = gr.Image(label="diversity against coherence", type="filepath", elem_id="sweep-plot")
        run.click(lambda b, p, s, n, m: sweep_prompt(store, b, p, s, n, m),
                  [backbone, prompt, settings, samples, max_new], [table, image], api_name="sweep")


# --------------------------------------------------------------------------------------------------------
# bias probe
# --------------------------------------------------------------------------------------------------------
def bias_probe(store: ArtifactStore, frames=12) -> str:
    """The gaps of the saved sentiment and NER tasks on `frames` sentence frames per pair."""
    slots = template_slots(max(1, min(int(frames), 144)))
    rows = probe_tasks({task: store.task(task) for task in PROBES if store.has_task(task)}, slots)
    if not rows:
        fail("No saved sentiment or NER task: create one with `gptsuite sentiment fit` or `gptsuite ner fit`.")
    table = write_report(rows, output_path("bias", ""), {})
    examples = [f"- {r['model']}, {r['comparison']}: “{e['a']}” vs “{e['b']}”: {e['difference']:+.3f}"
                for r in rows for e in r["largest"][:1]]
    return (f"{len(slots)} sentence frames per pair (Equity Evaluation Corpus templates).\n\n{table}\n"
            "Largest difference of each comparison:\n\n" + "\n".join(examples))


def build_bias_tab(store: ArtifactStore) -> None:
    with gr.Tab("Bias probe", id="bias"):
        gr.Markdown("The same sentence about different people (“my sister” / “my brother”, “Ebony” / “Amanda”): "
                    "does the sentiment score or the NER tag move? Gap = group A − group B, with a 95% interval.")
        with gr.Row():
            frames = gr.Slider(1, 144, value=12, step=1, label="sentence frames per pair (144 = the whole set)")
            run = gr.Button("Run the probe", variant="primary", elem_id="bias-button")
        output = gr.Markdown(elem_id="bias-output")
        run.click(lambda f: bias_probe(store, f), frames, output, api_name="bias")


# --------------------------------------------------------------------------------------------------------
# safe output
# --------------------------------------------------------------------------------------------------------
def safe_reply(store: ArtifactStore, backbone, prompt, use_block_list=True, threshold=0.5, max_new_tokens=64):
    """A reply through the three layers: (reply, what happened and why)."""
    prompt = check_text(prompt, "prompt")
    model, tokenizer = store.decoder(backbone)
    words = block_list(store) if use_block_list else []
    try:
        toxicity = store.task("toxicity") if store.has_task("toxicity") else None
        moderator = moderator_of(toxicity, words, float(threshold))
    except ValueError as err:
        fail(f"Nothing to moderate with: {err}.")
    reply = SafeGenerator(model, tokenizer, moderator, words).reply(prompt, int(max_new_tokens))
    if reply.refused:
        status = "🛑 **Refused**: the prompt was flagged."
    elif reply.masked:
        status = f"⚠️ **{reply.masked} sentence(s) masked** in the reply."
    else:
        status = "✅ Nothing flagged."
    details = "".join(f"\n- {r}" for r in reply.reasons)
    return reply.text, (f"{status}{details}\n\nModerator: {moderator.name}; block list: "
                        f"{len(words)} words banned in decoding.")


def block_list(store: ArtifactStore) -> list[str]:
    """The default block list (tasks.apps.safety.default_block_list), read once per demo; empty when
    alt-profanity-check is not installed."""
    return store.cached(("block list",), default_block_list, "the default block list", "pip install -e '.[safety]'")


def build_safety_tab(store: ArtifactStore, backbone: gr.Dropdown) -> None:
    with gr.Tab("Safe output", id="safety"):
        gr.Markdown("Three layers: a flagged prompt is refused; words of the block list are never generated; "
                    "flagged sentences of the reply are masked. Each says why.")
        prompt = gr.Textbox(label="Prompt", value="Tell me about your favourite book.", elem_id="safety-prompt")
        with gr.Row():
            block = gr.Checkbox(value=True, label="block list in decoding")
            threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="flag at P(toxic) >=")
            max_new = gr.Slider(8, 128, value=64, step=8, label="max_new_tokens")
            run = gr.Button("Reply", variant="primary", elem_id="safety-button")
        reply = gr.Textbox(label="Reply", lines=4, interactive=False, elem_id="safety-reply")
        status = gr.Markdown(elem_id="safety-status")
        run.click(lambda b, p, k, t, n: safe_reply(store, b, p, k, t, n), [backbone, prompt, block, threshold, max_new],
                  [reply, status], api_name="safety")


# --------------------------------------------------------------------------------------------------------
# knowledge graph
# --------------------------------------------------------------------------------------------------------
KG_SAMPLE = ("Arsenal striker Thierry Henry scored twice at Highbury. Arsene Wenger, the Arsenal manager, praised "
             "Henry after the game. Tesco, the UK's biggest retailer, is based in Cheshunt.")


def knowledge_graph(store: ArtifactStore, text, min_score=0.5):
    """(the graph as a PNG, a table of its triples with their evidence, the GraphML and JSON-lines files)."""
    text = check_text(text, "text")
    for task in ("ner", "relations"):
        if not store.has_task(task):
            fail(store.missing_message(task))
    graph = build_graph(text, store.task("ner"), store.task("relations"), float(min_score))
    folder = output_path("kg", "")
    graph.export(folder)
    if graph.triples:
        rows = ["| head | relation | tail | p | evidence |", "|---|---|---|---|---|"]
        rows += [f"| {t.head} ({graph.nodes[t.head]}) | {t.relation} | {t.tail} ({graph.nodes[t.tail]}) | "
                 f"{t.score:.2f} | {' / '.join(e.replace('|', '/') for e in t.evidence)} |" for t in graph.triples]
        table = "\n".join(rows)
    else:
        table = "No relation found above the threshold."
    return str(folder / "graph.png"), table, [str(folder / "graph.graphml"), str(folder / "graph.jsonl")]


def build_kg_tab(store: ArtifactStore) -> None:
    with gr.Tab("Knowledge graph", id="kg"):
        gr.Markdown("Entities from the NER task, relations between them from the relation task, merged over the "
                    "sentences (a surname joins the full name); each edge keeps the sentences it came from.")
        text = gr.Textbox(label="Text", lines=5, value=KG_SAMPLE, elem_id="kg-text")
        with gr.Row():
            min_score = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="least relation probability")
            run = gr.Button("Build the graph", variant="primary", elem_id="kg-button")
        image = gr.Image(label="graph", type="filepath", elem_id="kg-graph")
        table = gr.Markdown(elem_id="kg-table")
        files = gr.File(label="GraphML and JSON lines", file_count="multiple", elem_id="kg-files")
        run.click(lambda t, m: knowledge_graph(store, t, m), [text, min_score], [image, table, files], api_name="kg")


# --------------------------------------------------------------------------------------------------------
# faster inference
# --------------------------------------------------------------------------------------------------------
TIMING = threading.Lock()  # the comparison runs in the shared model group (demos.limits), one at a time


def inference_options(store: ArtifactStore, backbone, prompt, max_new_tokens=48) -> str:
    """The table of tasks.apps.inference for the chosen backbone (its fp32 weights, loaded once for this
    comparison whatever --quantize the demo runs with; quantised copies kept for the next request)."""
    prompt = check_text(prompt, "prompt")
    store.backbone(backbone)  # the checks and messages of a missing backbone
    directory = store.root / "backbones" / Path(backbone).name
    model, tokenizer = store.cached(("fp32", str(directory)), lambda: load_backbone(directory, quantize="none"),
                                  f"backbone {directory}", "gptsuite import smollm2")
    copies = store.cached(("quantised copies", str(directory)), dict, "quantised copies", "")
    n = max(1, min(int(max_new_tokens), model.config.block_size // 2))
    with TIMING:  # one at a time: two timing runs at once on a 2-core machine would each measure half of it
        rows = compare_options(model, tokenizer, prompt, n, copies)
    return (markdown(rows) + f"\n\nGreedy, {n} new tokens per row (eos does not stop a row). The batch row "
            "decodes the prompt 8 times at once; prompt lookup guesses tokens from the text so far.")


def build_inference_tab(store: ArtifactStore, backbone: gr.Dropdown) -> None:
    with gr.Tab("Faster inference", id="inference"):
        gr.Markdown("What each option buys on your prompt: the KV cache, a batch, prompt-lookup decoding, "
                    "int8 and int4 weights. The first run also builds the quantised copies.")
        prompt = gr.Textbox(label="Prompt", lines=2, elem_id="inference-prompt",
                            value="The capital of France is Paris. The capital of Italy is Rome. The capital")
        with gr.Row():
            max_new = gr.Slider(8, 128, value=48, step=8, label="max_new_tokens")
            run = gr.Button("Compare", variant="primary", elem_id="inference-button")
        table = gr.Markdown(elem_id="inference-table")
        run.click(lambda b, p, n: inference_options(store, b, p, n), [backbone, prompt, max_new], table,
                  api_name="inference")

"""The backbone tabs: a generation playground (every decoding option, streaming, KV cache on/off with
tokens/s), an attention view (a heatmap per layer and head), and a multi-turn streaming chat for backbones
that carry a chat template."""

from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr
import torch

from backbone.chat import chat_prompt
from backbone.generate import GenerationConfig, generate_text, stream
from demos.common import ArtifactStore, output_path
from demos.heatmap import grid_image, head_image
from demos.limits import (
    MAX_ATTENTION_TOKENS,
    MAX_NEW_TOKENS,
    UI_EVENT,
    check_history,
    check_stops,
    check_text,
    fail,
)


# --------------------------------------------------------------------------------------------------------
# playground
# --------------------------------------------------------------------------------------------------------
def clamp_length(requested, block_size: int) -> int:
    """max_new_tokens within [1, MAX_NEW_TOKENS] and below the context (the prompt keeps its last tokens)."""
    try:
        requested = int(requested)
    except (TypeError, ValueError):
        requested = 64
    return max(1, min(requested, MAX_NEW_TOKENS, block_size - 1))


def make_config(max_new_tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                no_repeat_ngram_size=0, num_beams=1, length_penalty=1.0, stop="", seed=-1, use_cache=True):
    stops = check_stops(stop)
    seed = None if seed is None or int(seed) < 0 else int(seed)
    try:
        return GenerationConfig(max_new_tokens=max_new_tokens, temperature=float(temperature), top_k=int(top_k),
                                top_p=float(top_p), min_p=float(min_p), repetition_penalty=float(repetition_penalty),
                                no_repeat_ngram_size=int(no_repeat_ngram_size), num_beams=int(num_beams),
                                length_penalty=float(length_penalty), stop=stops, seed=seed,
                                use_cache=bool(use_cache), truncate_prompt=True)
    except ValueError as err:
        fail(f"Invalid decoding setting: {err}")


def _speed(tokenizer, text: str, seconds: float, cfg, note: str) -> str:
    n = len(tokenizer.encode(text)) if text else 0
    mode = f"beam search ({cfg.num_beams} beams)" if cfg.num_beams > 1 else ("sampling" if cfg.sampling else "greedy")
    return (f"**{n} tokens** in {seconds:.2f} s: **{n / max(seconds, 1e-9):.1f} tokens/s**, "
            f"KV cache {'on' if cfg.use_cache else 'off'}, {mode}{note}")


def generate_stream(store: ArtifactStore, backbone, prompt, max_new_tokens, *options):
    """Yield (completion so far, stats) while generating; beam search yields once at the end."""
    prompt = check_text(prompt, "prompt")
    model, tokenizer = store.decoder(backbone)
    n = clamp_length(max_new_tokens, model.config.block_size)
    note = "" if n == max_new_tokens else f" (max_new_tokens clamped from {max_new_tokens} to {n})"
    cfg = make_config(n, *options)
    start, text = time.perf_counter(), ""
    try:
        if cfg.num_beams > 1:
            text = generate_text(model, tokenizer, prompt, cfg)[0]
        else:
            for piece in stream(model, tokenizer, prompt, cfg):
                text += piece
                yield text, f"generating… {len(text)} characters"
    except ValueError as err:
        fail(f"Generation failed: {err}")
    yield text, _speed(tokenizer, text, time.perf_counter() - start, cfg, note)


def compare_cache(store: ArtifactStore, backbone, prompt, max_new_tokens) -> str:
    """Greedy decoding of the same prompt with the KV cache on and off: tokens/s side by side."""
    prompt = check_text(prompt, "prompt")
    model, tokenizer = store.decoder(backbone)
    n = clamp_length(max_new_tokens, model.config.block_size)
    rows, outputs = [], []
    for use_cache in (True, False):
        cfg = make_config(n, use_cache=use_cache)
        start = time.perf_counter()
        text = generate_text(model, tokenizer, prompt, cfg)[0]
        seconds = time.perf_counter() - start
        tokens = len(tokenizer.encode(text)) if text else 0
        outputs.append(text)
        rows.append((use_cache, tokens, seconds, tokens / max(seconds, 1e-9)))
    speedup = rows[0][3] / max(rows[1][3], 1e-9)
    table = ["| KV cache | tokens | seconds | tokens/s |", "|---|---:|---:|---:|"]
    table += [f"| {'on' if c else 'off'} | {t} | {s:.2f} | {r:.1f} |" for c, t, s, r in rows]
    same = "identical" if outputs[0] == outputs[1] else "different (!)"
    return "\n".join(table) + f"\n\nSpeed-up with the cache: **{speedup:.2f}x**; outputs {same}."


# --------------------------------------------------------------------------------------------------------
# attention
# --------------------------------------------------------------------------------------------------------
def attention(store: ArtifactStore, backbone, text, layer, head):
    """(grid of every layer x head, the chosen head with its tokens, a note)."""
    text = check_text(text)
    model, tokenizer = store.backbone(backbone)
    ids = tokenizer.encode(text, add_bos=True)
    limit = min(MAX_ATTENTION_TOKENS, model.config.block_size)
    note = f"{len(ids)} tokens."
    if len(ids) > limit:
        note = f"Only the first {limit} of {len(ids)} tokens are shown (the attention view is for short inputs)."
        ids = ids[:limit]
    weights = torch.stack([w[0] for w in model.attention_weights(torch.tensor([ids]))]).float().numpy()
    n_layer, n_head = weights.shape[:2]
    layer = min(max(int(layer or 0), 0), n_layer - 1)
    head = min(max(int(head or 0), 0), n_head - 1)
    note += f" {n_layer} layers x {n_head} heads; enlarged: layer {layer}, head {head}."
    return grid_image(weights), head_image(weights[layer, head], tokenizer.token_strings(ids)), note


def image_file(image) -> str:
    """Save a PIL image under a name of its own and return the path.

    Gradio caches a returned PIL image at a path derived from its bytes and rewrites that file on every
    request, so two users who get the same heatmap at once can download a file in the middle of being
    rewritten (a truncated response). A unique file name gives every request its own cached copy.
    """
    path = output_path("attention", ".png")
    image.save(path)
    return str(path)


# --------------------------------------------------------------------------------------------------------
# chat
# --------------------------------------------------------------------------------------------------------
def _tokenizer_config(store: ArtifactStore, backbone) -> dict:
    path = store.root / "backbones" / Path(backbone or "").name / "tokenizer_config.json"
    return json.loads(path.read_text()) if backbone and path.is_file() else {}


def no_template_message(backbone) -> str:
    return (f"The backbone `{backbone}` carries no chat template, so it cannot chat. Pick a chat backbone above, "
            "or import an instruct model: `gptsuite import hf PATH` (a local SmolLM2-135M-Instruct folder).")


def chat_status(store: ArtifactStore, backbone) -> str:
    if not backbone:
        return f"No backbone found under `{store.root / 'backbones'}`."
    if _tokenizer_config(store, backbone).get("chat_template"):
        return f"Chatting with `{backbone}` (its chat template formats the conversation)."
    return "⚠️ " + no_template_message(backbone)


def render_chat(messages: list[dict], tokenizer) -> str:
    """The conversation in the backbone's chat template, ready for the assistant's turn (backbone.chat)."""
    try:
        return chat_prompt(tokenizer, messages)
    except ValueError as err:
        fail(f"Cannot chat: {err}")


def chat_stream(store: ArtifactStore, backbone, message, history, max_new_tokens=128, temperature=0.7):
    """Yield (conversation, cleared input box) while the assistant's reply streams in."""
    message = check_text(message, "message")
    messages = check_history(history)
    model, tokenizer = store.decoder(backbone)
    if not tokenizer.chat_template:
        fail(no_template_message(backbone))
    messages.append({"role": "user", "content": message})
    prompt = render_chat(messages, tokenizer)
    temperature = float(temperature or 0)
    cfg = make_config(clamp_length(max_new_tokens, model.config.block_size), temperature,
                      top_p=0.95 if temperature > 0 else 1.0, repetition_penalty=1.1)
    reply = ""
    yield [*messages, {"role": "assistant", "content": "…"}], ""
    try:
        for piece in stream(model, tokenizer, prompt, cfg):
            reply += piece
            yield [*messages, {"role": "assistant", "content": reply}], ""
    except ValueError as err:
        fail(f"Generation failed: {err}")
    yield [*messages, {"role": "assistant", "content": reply or "(the model ended its turn at once)"}], ""


# --------------------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------------------
def build_playground_tab(store: ArtifactStore, backbone: gr.Dropdown) -> None:
    with gr.Tab("Generation playground", id="playground"):
        prompt = gr.Textbox(label="Prompt", lines=3, value="Once upon a time", elem_id="gen-prompt")
        with gr.Row():
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=48, step=1, label="max_new_tokens", elem_id="gen-max")
            temperature = gr.Slider(0, 2, value=0, step=0.05, label="temperature (0 = greedy)")
            top_k = gr.Slider(0, 200, value=0, step=1, label="top_k (0 = off)")
            top_p = gr.Slider(0.01, 1, value=1, step=0.01, label="top_p (1 = off)")
        with gr.Row():
            min_p = gr.Slider(0, 0.99, value=0, step=0.01, label="min_p (0 = off)")
            repetition = gr.Slider(0.5, 2, value=1, step=0.05, label="repetition_penalty")
            ngram = gr.Slider(0, 6, value=0, step=1, label="no_repeat_ngram_size")
            beams = gr.Slider(1, 8, value=1, step=1, label="num_beams (> 1: beam search, not streamed)")
        with gr.Row():
            length_penalty = gr.Slider(0, 3, value=1, step=0.1, label="length_penalty (beams)")
            stop = gr.Textbox(label="stop strings, one per line (\\n = newline)", lines=1)
            seed = gr.Number(value=0, precision=0, label="seed (-1 = random)")
            use_cache = gr.Checkbox(value=True, label="KV cache", elem_id="gen-cache")
        with gr.Row():
            run = gr.Button("Generate", variant="primary", elem_id="gen-button")
            compare = gr.Button("Compare KV cache on / off", elem_id="gen-compare")
        output = gr.Textbox(label="Completion", lines=6, interactive=False, elem_id="gen-output")
        stats = gr.Markdown(elem_id="gen-stats")
        comparison = gr.Markdown(elem_id="gen-comparison")
        options = [temperature, top_k, top_p, min_p, repetition, ngram, beams, length_penalty, stop, seed, use_cache]

        def on_generate(b, p, n, *o):
            yield from generate_stream(store, b, p, n, *o)

        run.click(on_generate, [backbone, prompt, max_new, *options], [output, stats], api_name="generate")
        compare.click(lambda b, p, n: compare_cache(store, b, p, n), [backbone, prompt, max_new], comparison,
                      api_name="compare_cache")


def build_attention_tab(store: ArtifactStore, backbone: gr.Dropdown) -> None:
    with gr.Tab("Attention", id="attention"):
        text = gr.Textbox(label=f"Short input (first {MAX_ATTENTION_TOKENS} tokens)", value="The cat sat on the mat.",
                          elem_id="attn-input")
        with gr.Row():
            layer = gr.Number(value=0, precision=0, label="layer to enlarge")
            head = gr.Number(value=0, precision=0, label="head to enlarge")
            run = gr.Button("Show attention", variant="primary", elem_id="attn-button")
        note = gr.Markdown(elem_id="attn-note")
        with gr.Row():
            grid = gr.Image(label="Every layer (rows) and head (columns)", type="filepath", elem_id="attn-grid")
            detail = gr.Image(label="One head: queries (rows) x keys (columns)", type="filepath", elem_id="attn-head")

        def on_attention(b, t, lay, h):
            grid_png, head_png, message = attention(store, b, t, lay, h)
            return image_file(grid_png), image_file(head_png), message

        run.click(on_attention, [backbone, text, layer, head], [grid, detail, note], api_name="attention")


def build_chat_tab(store: ArtifactStore, backbone: gr.Dropdown) -> None:
    with gr.Tab("Chat", id="chat"):
        status = gr.Markdown(chat_status(store, backbone.value), elem_id="chat-status")
        chatbot = gr.Chatbot(label="Conversation", height=320, elem_id="chat-box")
        message = gr.Textbox(label="Message", placeholder="Say something and press Enter", elem_id="chat-input")
        with gr.Row():
            max_new = gr.Slider(1, MAX_NEW_TOKENS, value=64, step=1, label="max_new_tokens")
            temperature = gr.Slider(0, 1.5, value=0.7, step=0.05, label="temperature")
            send = gr.Button("Send", variant="primary", elem_id="chat-send")
            clear = gr.Button("Clear", elem_id="chat-clear")
        inputs = [backbone, message, chatbot, max_new, temperature]

        def on_send(b, m, h, n, t):
            yield from chat_stream(store, b, m, h, n, t)

        send.click(on_send, inputs, [chatbot, message], api_name="chat")
        message.submit(on_send, inputs, [chatbot, message], api_name=False)
        clear.click(lambda: ([], ""), None, [chatbot, message], api_name=False, **UI_EVENT)
        backbone.change(lambda b: chat_status(store, b), backbone, status, api_name=False, **UI_EVENT)

"""`gptsuite demo`: one Gradio Blocks app over whatever artifacts exist.

    gptsuite demo [--host 127.0.0.1] [--port 7860] [--artifacts artifacts] [--task DIR ...]

Tabs: one per registered task (classification, sentiment, toxicity, NER, relations, QA, translation, code
generation with its tests run in the sandbox; demos.tabs_tasks lays each out by its output type), a generation
playground, an attention view, a chat, and an Applications tab (demos.tabs_apps): the knowledge graph, article
writing, the creativity-coherence sweep, the bias probe, safe output and what each inference option buys.
A task tab offers every model of its task (each folder under artifacts/tasks holding a task.json, and each
--task DIR) with its backbone and test score; a tab whose artifact is missing says which command creates it.
Requests go through Gradio's queue with a concurrency limit, so a burst of users waits its turn instead of
oversubscribing the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from demos.common import ArtifactStore
from demos.tabs_apps import (
    build_article_tab,
    build_bias_tab,
    build_inference_tab,
    build_kg_tab,
    build_safety_tab,
    build_sweep_tab,
)
from demos.tabs_generate import build_attention_tab, build_chat_tab, build_playground_tab
from demos.tabs_tasks import build_task_tabs

CONCURRENCY_LIMIT = 2  # simultaneous model calls (2 CPU cores); the rest wait in the queue
MAX_QUEUE = 64  # requests beyond this are refused with "queue full" rather than waiting for minutes


def _default_backbone(store: ArtifactStore) -> str | None:
    """The first backbone by name (None when there is none)."""
    names = store.backbones()
    return names[0] if names else None


def build_app(artifacts: str | Path = "artifacts", concurrency_limit: int = CONCURRENCY_LIMIT,
              max_queue: int = MAX_QUEUE, precision: str = "auto", quantize: str = "auto",
              task_dirs=()) -> gr.Blocks:
    """The app over the artifacts under `artifacts` and the task folders `task_dirs` (which may be anywhere)."""
    store = ArtifactStore(artifacts, precision, quantize, task_dirs)
    with gr.Blocks(title="gptsuite demo", delete_cache=(600, 3600)) as demo:  # cached outputs live an hour
        gr.Markdown("# gptsuite\nNLP tasks on one GPT backbone.\n\n" + store.summary(), elem_id="summary")
        names = store.backbones()
        backbone = gr.Dropdown(names, value=_default_backbone(store), label="Backbone (playground, attention, chat)",
                               elem_id="backbone", allow_custom_value=False)
        info = gr.Markdown(backbone_info(store, backbone.value), elem_id="backbone-info")
        backbone.change(lambda b: backbone_info(store, b), backbone, info, api_name=False)
        with gr.Tabs():
            build_task_tabs(store)
            build_playground_tab(store, backbone)
            build_attention_tab(store, backbone)
            build_chat_tab(store, backbone)
            with gr.Tab("Applications", id="apps"), gr.Tabs():
                build_kg_tab(store)
                build_article_tab(store, backbone)
                build_sweep_tab(store, backbone)
                build_bias_tab(store)
                build_safety_tab(store, backbone)
                build_inference_tab(store, backbone)
    demo.store = store
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue)
    return demo


def backbone_info(store: ArtifactStore, name: str | None) -> str:
    """The chosen backbone's shape, read from config.json (the weights load on first use)."""
    if not name:
        from backbone.artifact import PRETRAIN_COMMAND

        return f"⚠️ No backbone under `{store.root / 'backbones'}`: create one with `{PRETRAIN_COMMAND}`."
    path = store.root / "backbones" / Path(name).name / "config.json"
    try:
        c = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return f"⚠️ Cannot read {path}: {err}"
    keys = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "positions")
    return "`" + name + "`: " + ", ".join(f"{k} {c[k]}" for k in keys if k in c)


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, artifacts: str | Path = "artifacts",
           concurrency_limit: int = CONCURRENCY_LIMIT, block: bool = True, precision: str = "auto",
           quantize: str = "auto", task_dirs=()) -> gr.Blocks:
    """Build the app and serve it; block=False returns at once (the server runs in a thread)."""
    demo = build_app(artifacts, concurrency_limit, precision=precision, quantize=quantize, task_dirs=task_dirs)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                show_error=True, quiet=not block)
    return demo

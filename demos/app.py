"""`gptsuite demo`: one Gradio Blocks app over whatever artifacts exist.

    gptsuite demo [--host 127.0.0.1] [--port 7860] [--artifacts artifacts] [--task DIR ...]

Tabs: one per registered task (classification, sentiment, toxicity, NER, relations, QA, translation, code
generation with its tests run in the sandbox; demos.tabs_tasks lays each out by its output type), a generation
playground, an attention view, a look inside the model (logit lens, layer probe, token attribution:
demos.tabs_inside), a chat, and an Applications tab (demos.tabs_apps): the knowledge graph, article
writing, the creativity-coherence sweep, the bias probe, safe output and what each inference option buys.
A task tab offers every model of its task (each folder under artifacts/tasks holding a task.json, and each
--task DIR) with its backbone and test score; a tab whose artifact is missing says which command creates it.
Requests go through Gradio's queue: every event that may run a model shares one concurrency group (at most
`--concurrency` model calls at once, all tabs together), at most `--max-queue` requests wait and more are
refused at once, and the queue cannot be bypassed through the direct REST route. demos.limits holds every
limit; demos.exposure the login, the refusal to listen beyond loopback without one, the private output
folder and the request-body cap (docs/demo.md).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from backbone.artifact import PRETRAIN_COMMAND
from demos.common import ArtifactStore
from demos.exposure import BodyLimit, check_exposure, use_private_gradio_cache
from demos.limits import CONCURRENCY_LIMIT, MAX_BODY_BYTES, MAX_QUEUE, MAX_UPLOAD, MODEL_GROUP, UI_EVENT, UI_GROUP
from demos.tabs_apps import (
    build_article_tab,
    build_bias_tab,
    build_inference_tab,
    build_kg_tab,
    build_safety_tab,
    build_sweep_tab,
)
from demos.tabs_generate import build_attention_tab, build_chat_tab, build_playground_tab
from demos.tabs_inside import build_inside_tab
from demos.tabs_tasks import build_task_tabs
from tasks.artifact import TASK_FILE


def _default_backbone(store: ArtifactStore) -> str | None:
    """The first backbone by name (None when there is none)."""
    names = store.backbones()
    return names[0] if names else None


def build_app(artifacts: str | Path = "artifacts", concurrency_limit: int = CONCURRENCY_LIMIT,
              max_queue: int = MAX_QUEUE, precision: str = "auto", quantize: str = "auto",
              task_dirs=(), engine: str = "gptsuite", compile_steps: bool = False) -> gr.Blocks:
    """The app over the artifacts under `artifacts` and the task folders `task_dirs` (which may be anywhere);
    `engine`: what the tabs that generate decode with (backbone.llama_cpp_engine.ENGINES)."""
    use_private_gradio_cache()  # before any component exists: each reads the cache folder when made
    store = ArtifactStore(artifacts, precision, quantize, task_dirs, engine, compile_steps)
    with gr.Blocks(title="gptsuite demo", delete_cache=(600, 3600)) as demo:  # cached outputs live an hour
        gr.Markdown("# gptsuite\nNLP tasks on one GPT backbone.\n\n" + store.summary(), elem_id="summary")
        names = store.backbones()
        backbone = gr.Dropdown(names, value=_default_backbone(store), label="Backbone (playground, attention, chat)",
                               elem_id="backbone", allow_custom_value=False)
        info = gr.Markdown(backbone_info(store, backbone.value), elem_id="backbone-info")
        backbone.change(lambda b: backbone_info(store, b), backbone, info, api_name=False, **UI_EVENT)
        with gr.Tabs():
            build_task_tabs(store)
            build_playground_tab(store, backbone)
            build_attention_tab(store, backbone)
            build_inside_tab(store, backbone)
            build_chat_tab(store, backbone)
            with gr.Tab("Applications", id="apps"), gr.Tabs():
                build_kg_tab(store)
                build_article_tab(store, backbone)
                build_sweep_tab(store, backbone)
                build_bias_tab(store)
                build_safety_tab(store, backbone)
                build_inference_tab(store, backbone)
    demo.store = store
    share_model_slots(demo)
    # api_open=False: the direct REST route (/gradio_api/run/NAME) would skip the queue and its limits
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=max_queue, api_open=False)
    return demo


def share_model_slots(demo: gr.Blocks) -> None:
    """Put every event outside the cheap UI group into one concurrency group, so `concurrency_limit` bounds
    the model calls of all tabs together. Gradio's default is a group per event: with a limit of 2 and
    twenty-odd endpoints, a burst ran 35 threads and took 2.7 GB. A new event joins the group by default."""
    for fn in demo.fns.values():
        if fn.concurrency_id != UI_GROUP:
            fn.concurrency_id, fn.concurrency_limit = MODEL_GROUP, "default"


def backbone_info(store: ArtifactStore, name: str | None) -> str:
    """The chosen backbone's shape, read from config.json (the weights load on first use)."""
    if not name:
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
           quantize: str = "auto", task_dirs=(), auth: tuple[str, str] | None = None,
           max_queue: int = MAX_QUEUE, engine: str = "gptsuite", compile_steps: bool = False) -> gr.Blocks:
    """Build the app and serve it; block=False returns at once (the server runs in a thread). Beyond
    loopback, or with a share link, `auth` (user, password) is required (demos.exposure.check_exposure).
    Every one of `task_dirs` must hold a saved task: a typo would otherwise launch a demo that silently lacks
    the model."""
    check_exposure(host, share, auth)
    for folder in task_dirs:
        if not (Path(folder) / TASK_FILE).is_file():
            raise FileNotFoundError(f"--task {folder} holds no saved task ({TASK_FILE} missing): make one with "
                                    "`gptsuite <task> fit ... --model.export_dir DIR`")
    demo = build_app(artifacts, concurrency_limit, max_queue, precision=precision, quantize=quantize,
                     task_dirs=task_dirs, engine=engine, compile_steps=compile_steps)
    demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=not block,
                show_error=True, quiet=not block, auth=auth, max_file_size=MAX_UPLOAD,
                app_kwargs={"middleware": [Middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)]},
                **hardening(gr.Blocks.launch))
    return demo


def hardening(launch) -> dict:
    """Options of gradio's launch that turn off what an exposed demo does not need, where this gradio has
    them: the traffic page (/monitoring), the MCP server, and the run history (whose page lets a visitor
    connect a Hugging Face bucket that the server then writes to)."""
    wanted = {"enable_monitoring": False, "mcp_server": False, "run_history": False}
    accepted = inspect.signature(launch).parameters
    return {key: value for key, value in wanted.items() if key in accepted}

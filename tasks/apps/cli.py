"""The applications' subcommands (added to `gptsuite` by tasks.cli):

    gptsuite sweep --backbone DIR [--judge DIR] [--uses chat article code] [--out benchmarks/sweep]
    gptsuite write --backbone DIR --title "..." [--outline "a; b; c"] [--sections 4] [--words 120] [--style formal]
    gptsuite write --backbone DIR --measure [--out benchmarks/article]
    gptsuite bias [--sentiment artifacts/tasks/sentiment] [--ner artifacts/tasks/ner] [--out benchmarks/bias]
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    from backbone.quantize import add_quantize_option

    sweep = sub.add_parser("sweep", help="creativity against coherence: decoding settings swept and measured")
    sweep.add_argument("--backbone", required=True, help="the backbone that generates")
    sweep.add_argument("--judge", default=None, help="the backbone whose perplexity scores coherence (default: the "
                       "generating one, unquantised); a stronger one is a fairer judge")
    sweep.add_argument("--uses", nargs="+", default=["chat", "article", "code"], help="chat | article | code")
    sweep.add_argument("--prompts", type=int, default=6, help="prompts per use (at most 6)")
    sweep.add_argument("--samples", type=int, default=2, help="texts per prompt for each sampled setting")
    sweep.add_argument("--max-new-tokens", type=int, default=64)
    sweep.add_argument("--out", default="benchmarks/sweep", help="sweep.json, sweep.md and sweep.png go here")
    add_quantize_option(sweep, "generate from weight-only quantised linear layers")
    sweep.set_defaults(func=cmd_sweep)

    write = sub.add_parser("write", help="write an article from a title (and an outline), section by section")
    write.add_argument("--backbone", required=True)
    write.add_argument("--title", help="the article's title")
    write.add_argument("--outline", default=None, help="section headings separated by ';' (default: the backbone "
                       "writes the outline)")
    write.add_argument("--sections", type=int, default=4, help="sections, when the backbone writes the outline")
    write.add_argument("--words", type=int, default=120, help="about this many words per section")
    from tasks.apps.article import STYLES

    write.add_argument("--style", default="neutral", choices=list(STYLES))
    write.add_argument("--temperature", type=float, default=0.7)
    write.add_argument("--top-p", type=float, default=0.9)
    write.add_argument("--repetition-penalty", type=float, default=1.1)
    write.add_argument("--seed", type=int, default=0)
    write.add_argument("--measure", action="store_true", help="write the benchmark titles under several decoding "
                       "settings and measure repetition, distinct-2 and perplexity (writes --out)")
    write.add_argument("--out", default="benchmarks/article")
    add_quantize_option(write, "generate from weight-only quantised linear layers")
    write.set_defaults(func=cmd_write)

    bias = sub.add_parser("bias", help="bias probe: sentiment and NER outputs when only the person changes")
    bias.add_argument("--sentiment", default="artifacts/tasks/sentiment", help="a saved sentiment task ('' skips)")
    bias.add_argument("--ner", default="artifacts/tasks/ner", help="a saved NER task ('' skips)")
    bias.add_argument("--out", default="benchmarks/bias", help="bias.json and bias.md go here")
    bias.add_argument("--max-slots", type=int, default=None, help="sentence frames per pair (default all 144)")
    bias.set_defaults(func=cmd_bias)


def _load(backbone: str, quantize: str):
    from backbone.artifact import load_backbone

    return load_backbone(backbone, quantize=quantize)


def _machine() -> str:
    import platform

    import torch

    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, " \
           f"{torch.backends.cpu.get_cpu_capability()}"


def cmd_sweep(args) -> int:
    from tasks.apps.sweep import USES, run_sweep, write_results

    for use in args.uses:
        if use not in USES:
            raise ValueError(f"unknown use {use!r}: choose from {', '.join(USES)}")
    if not 1 <= args.prompts <= 6 or args.samples < 1:
        raise ValueError("--prompts must be in [1, 6] and --samples >= 1")
    model, tokenizer = _load(args.backbone, args.quantize)
    judge, judge_tokenizer = _load(args.judge or args.backbone, "none")
    points = run_sweep(model, tokenizer, judge, judge_tokenizer, args.uses, args.prompts, args.samples,
                       args.max_new_tokens)
    about = {"backbone": args.backbone, "judge": args.judge or f"{args.backbone} itself (fp32)",
             "quantize": model.quantization, "machine": _machine(),
             "note": f"{args.prompts} prompts per use, {args.samples} samples each (greedy: 1), "
                     f"{args.max_new_tokens} new tokens."}
    record = write_results(points, Path(args.out), about)
    print(Path(args.out, "sweep.md").read_text())
    print(f"recommended: {record['recommended']}", file=sys.stderr)
    return 0


def cmd_write(args) -> int:
    from backbone.generate import GenerationConfig
    from tasks.apps.article import ArticleWriter, measure, parse_outline

    model, tokenizer = _load(args.backbone, args.quantize)
    if args.measure:
        judge, judge_tokenizer = _load(args.backbone, "none")
        rows = measure(model, tokenizer, judge, judge_tokenizer, out=Path(args.out))
        print(Path(args.out, "article.md").read_text().split("\n\n## Example")[0])
        return 0 if rows else 1
    if not args.title:
        raise ValueError("--title is required (or --measure)")
    decoding = GenerationConfig(temperature=args.temperature, top_p=args.top_p,
                                repetition_penalty=args.repetition_penalty, seed=args.seed)
    outline = parse_outline(args.outline, 12) if args.outline else None
    writer = ArticleWriter(model, tokenizer, decoding)
    print(f"# {args.title}\n", flush=True)
    current = -1
    headings = outline
    for index, piece in writer.stream(args.title, outline, args.sections, args.words, args.style):
        if index == -1:
            headings = piece.splitlines()
            continue
        if index != current:
            current = index
            print(f"\n## {headings[index]}\n", flush=True)
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_bias(args) -> int:
    import time

    from tasks.apps.bias import ner_gaps, sentiment_gaps, template_slots, write_report
    from tasks.artifact import load_task

    if not args.sentiment and not args.ner:
        raise ValueError("nothing to probe: give --sentiment and/or --ner")
    rows, about = [], {"machine": _machine()}
    start = time.perf_counter()
    slots = template_slots(args.max_slots)
    for kind, directory, probe in (("sentiment", args.sentiment, sentiment_gaps), ("ner", args.ner, ner_gaps)):
        if directory:
            task = load_task(directory)
            about[kind] = {"task": directory, "backbone": task.hparams.backbone}
            rows += probe(task, slots=slots)
    about["seconds"] = round(time.perf_counter() - start, 1)
    about["note"] = ("Equity Evaluation Corpus templates (Kiritchenko & Mohammad 2018); gap = mean over matched "
                     "pairs of A - B, 95% bootstrap interval over the pairs.")
    print(write_report(rows, Path(args.out), about))
    return 0

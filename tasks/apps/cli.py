"""The applications' subcommands (added to `gptsuite` by tasks.cli):

    gptsuite sweep --backbone DIR [--judge DIR] [--uses chat article code] [--out DIR]
    gptsuite write --backbone DIR --title "..." [--outline "a; b; c"] [--sections 4] [--words 120] [--style formal]
    gptsuite write --backbone DIR --measure [--out DIR]
    gptsuite bias [--sentiment artifacts/tasks/sentiment] [--ner artifacts/tasks/ner] [--out DIR]
    gptsuite safety --backbone DIR [--task artifacts/tasks/toxicity] --prompt "..."   (a moderated reply)
    gptsuite safety --backbone DIR [--task artifacts/tasks/toxicity] --eval [--out DIR]
    gptsuite kg --text "..." | --file DOC [--ner DIR] [--relations DIR] [--out graph]   (a knowledge graph)
    gptsuite kg --eval [--ner DIR] [--relations DIR]     (relation F1 from raw test sentences, NER entities)
    gptsuite optimize --backbone DIR [--prompt "..."]     (what the KV cache, batching, quantisation and
                                                           prompt lookup each buy)

The measuring commands (sweep, write --measure, bias, safety --eval, optimize) write to a fresh
runs/<command>/<YYYYmmdd-HHMMSS>/ by default, so a run never replaces the committed tables it is compared with;
`--out benchmarks/<sweep|article|bias|safety|inference>` updates those on purpose.

Parsing and dispatch only: each command checks its arguments, calls its application's function
(tasks.apps.*, tasks.kg.graph) and prints what it returns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from backbone.artifact import load_backbone
from backbone.cli_options import add_quantize_option
from backbone.generate import GenerationConfig
from tasks.apps.article import STYLES, ArticleWriter, article_markdown, measure, parse_outline
from tasks.apps.bias import probe_saved_tasks
from tasks.apps.inference import COPY_PROMPT, write_options_report
from tasks.apps.sweep import USES, sweep_backbone
from tasks.artifact import load_task
from tasks.kg.graph import build_graph, evaluate_saved_tasks
from tasks.runs import default_out, out_folder, out_help

QUANTIZED = "generate from weight-only quantised linear layers"  # what --quantize does in sweep, write, safety
SAFE_REPLY_TOKENS = 96  # the longest reply of `gptsuite safety --prompt` (and at most half the context)


def register(sub) -> None:
    sweep = sub.add_parser("sweep", help="creativity against coherence: decoding settings swept and measured")
    sweep.add_argument("--backbone", required=True, help="the backbone that generates")
    sweep.add_argument("--judge", default=None, help="the backbone whose perplexity scores coherence (default: the "
                       "generating one, unquantised); a stronger one is a fairer judge")
    sweep.add_argument("--uses", nargs="+", default=["chat", "article", "code"], help="chat | article | code")
    sweep.add_argument("--prompts", type=int, default=6, help="prompts per use (at most 6)")
    sweep.add_argument("--samples", type=int, default=2, help="texts per prompt for each sampled setting")
    sweep.add_argument("--max-new-tokens", type=int, default=64)
    sweep.add_argument("--out", default=default_out("sweep"),
                       help=out_help("sweep", "benchmarks/sweep", "sweep.json, sweep.md and sweep.png"))
    add_quantize_option(sweep, QUANTIZED)
    sweep.set_defaults(func=cmd_sweep)

    write = sub.add_parser("write", help="write an article from a title (and an outline), section by section")
    write.add_argument("--backbone", required=True)
    write.add_argument("--title", help="the article's title")
    write.add_argument("--outline", default=None, help="section headings separated by ';' (default: the backbone "
                       "writes the outline)")
    write.add_argument("--sections", type=int, default=4, help="sections, when the backbone writes the outline")
    write.add_argument("--words", type=int, default=120, help="about this many words per section")
    write.add_argument("--style", default="neutral", choices=list(STYLES))
    write.add_argument("--temperature", type=float, default=0.7)
    write.add_argument("--top-p", type=float, default=0.9)
    write.add_argument("--repetition-penalty", type=float, default=1.1)
    write.add_argument("--seed", type=int, default=0)
    write.add_argument("--measure", action="store_true", help="write the benchmark titles under several decoding "
                       "settings and measure repetition, distinct-2 and perplexity (writes --out)")
    write.add_argument("--out", default=default_out("write"),
                       help=out_help("write", "benchmarks/article", "--measure: article.json and article.md"))
    add_quantize_option(write, QUANTIZED)
    write.set_defaults(func=cmd_write)

    bias = sub.add_parser("bias", help="bias probe: sentiment and NER outputs when only the person changes")
    bias.add_argument("--sentiment", default="artifacts/tasks/sentiment", help="a saved sentiment task ('' skips)")
    bias.add_argument("--ner", default="artifacts/tasks/ner", help="a saved NER task ('' skips)")
    bias.add_argument("--out", default=default_out("bias"), help=out_help("bias", "benchmarks/bias",
                                                                           "bias.json and bias.md"))
    bias.add_argument("--max-slots", type=int, default=None, help="sentence frames per pair (default all 144)")
    bias.set_defaults(func=cmd_bias)

    safety = sub.add_parser("safety", help="moderated generation: refuse flagged prompts, block words, mask flagged "
                            "output; --eval measures the filters")
    safety.add_argument("--backbone", required=True, help="the backbone that generates")
    safety.add_argument("--task", default="artifacts/tasks/toxicity", help="a saved toxicity task (the moderator; "
                        "'' uses the block list alone)")
    safety.add_argument("--prompt", default=None, help="reply to this prompt through the three layers")
    safety.add_argument("--ban", action="append", default=[], metavar="WORD", help="add a word to the block list")
    safety.add_argument("--no-default-list", action="store_true", help="do not ban the default block list "
                        "(alt-profanity-check's most profane words, less identity terms and everyday words)")
    safety.add_argument("--threshold", type=float, default=0.5, help="P(toxic) at which a text is flagged")
    safety.add_argument("--eval", action="store_true", help="precision and recall of each filter on the toxicity "
                        "test set, and the share of continuations masked (writes --out)")
    safety.add_argument("--prompts", type=int, default=60, help="--eval: prompts of each kind to continue")
    safety.add_argument("--out", default=default_out("safety"),
                        help=out_help("safety", "benchmarks/safety", "--eval: safety.json and safety.md"))
    add_quantize_option(safety, QUANTIZED)
    safety.set_defaults(func=cmd_safety)

    kg = sub.add_parser("kg", help="knowledge graph: NER entities and classified relations, merged over a text; "
                        "exported as JSON lines, GraphML and a PNG")
    source = kg.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text")
    source.add_argument("--file", help="a UTF-8 text file")
    source.add_argument("--eval", action="store_true", help="relation P/R/F1 on the labelled test sentences, "
                        "entities found by NER (not given)")
    kg.add_argument("--ner", default="artifacts/tasks/ner", help="a saved NER task")
    kg.add_argument("--relations", default="artifacts/tasks/relations", help="a saved relation task")
    kg.add_argument("--min-score", type=float, default=0.5, help="a relation's least probability")
    kg.add_argument("--out", default="graph", help="graph.jsonl, graph.graphml and graph.png go here "
                    "(--eval: kg_eval.json)")
    kg.set_defaults(func=cmd_kg)

    opt = sub.add_parser("optimize", help="what each inference option buys on one prompt: KV cache, batching, "
                         "prompt lookup, int8 / int4 weights")
    opt.add_argument("--backbone", required=True)
    opt.add_argument("--prompt", default=COPY_PROMPT, help="the prompt (default: one whose continuation copies "
                     "it, where prompt lookup pays)")
    opt.add_argument("--max-new-tokens", type=int, default=64)
    opt.add_argument("--out", default=default_out("optimize"),
                     help=out_help("optimize", "benchmarks/inference", "inference.md"))
    opt.set_defaults(func=cmd_optimize)


def cmd_sweep(args) -> int:
    for use in args.uses:
        if use not in USES:
            raise ValueError(f"unknown use {use!r}: choose from {', '.join(USES)}")
    if not 1 <= args.prompts <= 6 or args.samples < 1:
        raise ValueError("--prompts must be in [1, 6] and --samples >= 1")
    out = out_folder(args.out, "sweep")
    record = sweep_backbone(args.backbone, args.judge, args.uses, args.prompts, args.samples, args.max_new_tokens,
                            args.quantize, out)
    print((out / "sweep.md").read_text())
    print(f"recommended: {record['recommended']}", file=sys.stderr)
    return 0


def cmd_write(args) -> int:
    if args.measure:
        model, tokenizer = load_backbone(args.backbone, quantize=args.quantize)
        judge, judge_tokenizer = load_backbone(args.backbone, quantize="none")
        out = out_folder(args.out, "write")
        rows = measure(model, tokenizer, judge, judge_tokenizer, out=out)
        print((out / "article.md").read_text().split("\n\n## Example")[0])
        return 0 if rows else 1
    if not args.title:
        raise ValueError("--title is required (or --measure)")
    outline = parse_outline(args.outline, 12) if args.outline else None
    if args.outline and not outline:
        raise ValueError(f"--outline {args.outline!r} holds no heading: separate headings with ';'")
    decoding = GenerationConfig(temperature=args.temperature, top_p=args.top_p,
                                repetition_penalty=args.repetition_penalty, seed=args.seed)
    writer = ArticleWriter(*load_backbone(args.backbone, quantize=args.quantize), decoding)
    for piece in article_markdown(writer, args.title, outline, args.sections, args.words, args.style):
        print(piece, end="", flush=True)
    print()
    return 0


def cmd_bias(args) -> int:
    if not args.sentiment and not args.ner:
        raise ValueError("nothing to probe: give --sentiment and/or --ner")
    print(probe_saved_tasks({"sentiment": args.sentiment, "ner": args.ner}, args.max_slots,
                            out_folder(args.out, "bias")))
    return 0


def cmd_safety(args) -> int:
    if not 0 < args.threshold < 1:
        raise ValueError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.eval and args.prompts < 1:
        raise ValueError(f"--prompts must be >= 1, got {args.prompts}")
    if not args.eval and not args.prompt:
        raise ValueError("give --prompt TEXT (a reply) or --eval (the measurements)")
    # why here: the moderator's module pulls in torchmetrics and Lightning (seconds), which every other
    # `gptsuite` command would pay for at start-up
    from tasks.apps.safety import default_block_list, load_safe_generator, measure_safety

    listed = [] if args.no_default_list else default_block_list()
    words = listed + list(args.ban)
    generator, task = load_safe_generator(args.backbone, args.quantize, args.task, words, args.threshold)
    if args.eval:
        print(measure_safety(generator, task, listed, args.threshold, args.prompts, out_folder(args.out, "safety"),
                             {"backbone": args.backbone, "task": args.task}))
        return 0
    reply = generator.reply(args.prompt, SAFE_REPLY_TOKENS)
    print(reply.text)
    state = "refused" if reply.refused else f"{reply.masked} sentence(s) masked"
    print(f"[{state}; block list of {len(words)} words; moderator: {generator.moderator.name}]"
          + "".join(f"\n  - {r}" for r in reply.reasons), file=sys.stderr)
    return 0


def cmd_kg(args) -> int:
    if not 0 <= args.min_score < 1:
        raise ValueError(f"--min-score must be in [0, 1), got {args.min_score}")
    if args.eval:
        print(json.dumps(evaluate_saved_tasks(args.ner, args.relations, args.min_score, Path(args.out)), indent=1))
        return 0
    text = args.text
    if args.file is not None:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read --file {args.file}: {err}") from None
    if not text.strip():
        raise ValueError("the text is empty")
    out = Path(args.out)
    graph = build_graph(text, load_task(args.ner), load_task(args.relations), args.min_score)
    graph.export(out)
    for t in graph.triples:
        print(f"{t.head} ({graph.nodes[t.head]}) --{t.relation}--> {t.tail} ({graph.nodes[t.tail]})  "
              f"[{t.score:.2f}] {t.evidence[0]}")
    print(f"{len(graph.nodes)} entities, {len(graph.triples)} relations -> {out}/graph.{{jsonl,graphml,png}}",
          file=sys.stderr)
    return 0


def cmd_optimize(args) -> int:
    print(write_options_report(args.backbone, args.prompt, args.max_new_tokens, out_folder(args.out, "optimize")))
    return 0

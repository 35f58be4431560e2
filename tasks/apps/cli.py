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
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasks.runs import default_out, out_folder, out_help

COPY_PROMPT = ("Copy the list exactly.\nList: apples, pears, plums, figs, dates, limes, kiwis, grapes, melons, "
               "cherries, lemons, oranges, mangoes, papayas, peaches, apricots.\nCopy: apples, pears,")


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
    sweep.add_argument("--out", default=default_out("sweep"),
                       help=out_help("sweep", "benchmarks/sweep", "sweep.json, sweep.md and sweep.png"))
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
    write.add_argument("--out", default=default_out("write"),
                       help=out_help("write", "benchmarks/article", "--measure: article.json and article.md"))
    add_quantize_option(write, "generate from weight-only quantised linear layers")
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
    add_quantize_option(safety, "generate from weight-only quantised linear layers")
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


def _load(backbone: str, quantize: str):
    from backbone.artifact import load_backbone

    return load_backbone(backbone, quantize=quantize)


def _machine() -> str:
    """The CPU the figures belong to, as the benchmark table records it (backbone.precision)."""
    from backbone.precision import machine_summary

    m = machine_summary()
    return f"{m['cpu']}, {m['capability']}, {m['threads']} threads"


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
             "note": f"{args.prompts} prompts per use, {args.samples} samples each (greedy: its one text counted "
                     f"{args.samples} times), "
                     f"{args.max_new_tokens} new tokens."}
    out = out_folder(args.out, "sweep")
    record = write_results(points, out, about)
    print((out / "sweep.md").read_text())
    print(f"recommended: {record['recommended']}", file=sys.stderr)
    return 0


def cmd_write(args) -> int:
    from backbone.generate import GenerationConfig
    from tasks.apps.article import ArticleWriter, measure, parse_outline

    model, tokenizer = _load(args.backbone, args.quantize)
    if args.measure:
        judge, judge_tokenizer = _load(args.backbone, "none")
        out = out_folder(args.out, "write")
        rows = measure(model, tokenizer, judge, judge_tokenizer, out=out)
        print((out / "article.md").read_text().split("\n\n## Example")[0])
        return 0 if rows else 1
    if not args.title:
        raise ValueError("--title is required (or --measure)")
    decoding = GenerationConfig(temperature=args.temperature, top_p=args.top_p,
                                repetition_penalty=args.repetition_penalty, seed=args.seed)
    outline = parse_outline(args.outline, 12) if args.outline else None
    if args.outline and not outline:
        raise ValueError(f"--outline {args.outline!r} holds no heading: separate headings with ';'")
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
    about["note"] = ("Equity Evaluation Corpus templates (Kiritchenko & Mohammad 2018); gap = mean of A - B over "
                     "the sentence pairs, 95% bootstrap interval over the person pairs (each pair's mean over the "
                     "frames is one observation).")
    print(write_report(rows, out_folder(args.out, "bias"), about))
    return 0


def cmd_safety(args) -> int:
    from backbone.chat import as_user_turn
    from backbone.generate import GenerationConfig
    from tasks.apps.safety import SafeGenerator, default_block_list, moderator_of

    if not 0 < args.threshold < 1:
        raise ValueError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.eval and args.prompts < 1:
        raise ValueError(f"--prompts must be >= 1, got {args.prompts}")
    if not args.eval and not args.prompt:
        raise ValueError("give --prompt TEXT (a reply) or --eval (the measurements)")
    listed = [] if args.no_default_list else default_block_list()
    words = listed + list(args.ban)
    task = None
    if args.task:
        from tasks.artifact import load_task

        task = load_task(args.task)
    moderator = moderator_of(task, words, args.threshold)
    model, tokenizer = _load(args.backbone, args.quantize)
    generator = SafeGenerator(model, tokenizer, moderator, words)
    if args.eval:
        return _safety_eval(args, listed, task, generator)
    cfg = GenerationConfig(max_new_tokens=min(96, model.config.block_size // 2), temperature=0.7, top_p=0.9, seed=0,
                           truncate_prompt=True)
    reply = generator.respond(args.prompt, cfg, prompt=as_user_turn(tokenizer, args.prompt))
    print(reply.text)
    state = "refused" if reply.refused else f"{reply.masked} sentence(s) masked"
    print(f"[{state}; block list of {len(words)} words; moderator: {moderator.name}]"
          + "".join(f"\n  - {r}" for r in reply.reasons), file=sys.stderr)
    return 0


def _safety_eval(args, listed, task, generator) -> int:
    import json
    import time

    from backbone.data.loaders import load_benchmark
    from backbone.generate import GenerationConfig
    from tasks.apps.safety import ProfanityCheck, SafeGenerator, WordList, blocked_share, filter_scores, moderator_of

    test = load_benchmark("toxicity")["test"]
    texts, labels = list(test["text"]), list(test["label"])
    moderators = {}
    if task is not None:
        moderators["toxicity classifier (ours)"] = moderator_of(task, [], args.threshold)
    try:
        moderators["alt-profanity-check"] = ProfanityCheck(args.threshold)
    except ImportError as err:
        print(f"skipping alt-profanity-check: {err}", file=sys.stderr)
    if listed:
        moderators[f"block list ({len(listed)} words)"] = WordList(listed)
    if task is not None and listed:
        moderators["classifier + block list"] = moderator_of(task, listed, args.threshold)
    start = time.perf_counter()
    filters = {name: filter_scores(m, texts, labels) for name, m in moderators.items()}
    toxic = [t for t, y in zip(texts, labels) if y == 1][: args.prompts]
    neutral = [t for t, y in zip(texts, labels) if y == 0][: args.prompts]
    cfg = GenerationConfig(max_new_tokens=32, temperature=0.7, top_p=0.9, seed=0, truncate_prompt=True)
    judge = generator.moderator
    plain = SafeGenerator(generator.model, generator.tokenizer, judge, [])
    continuations = {f"{kind} prompts, {lst}": blocked_share(gen, prompts, cfg)
                     for kind, prompts in (("toxic", toxic), ("neutral", neutral))
                     for lst, gen in (("no block list", plain), ("block list", generator))}
    about = {"backbone": args.backbone, "task": args.task, "threshold": args.threshold,
             "block_list_size": len(listed), "machine": _machine(),
             "seconds": round(time.perf_counter() - start, 1), "decoding": cfg.describe()}
    out = out_folder(args.out, "safety")
    out.mkdir(parents=True, exist_ok=True)
    (out / "safety.json").write_text(json.dumps({**about, "filters": filters, "continuations": continuations},
                                                indent=1))
    lines = [f"Toxicity test set: {len(texts)} texts ({sum(labels)} toxic). Flagged at score >= {args.threshold}.",
             "", "| filter | precision [95% CI] | recall [95% CI] | F1 | flagged |", "|---|---|---|---|---|"]
    for name, f in filters.items():
        p, r = f["precision_interval"], f["recall_interval"]
        lines.append(f"| {name} | {f['precision']:.1f} [{p[0]:.1f}, {p[1]:.1f}] | {f['recall']:.1f} "
                     f"[{r[0]:.1f}, {r[1]:.1f}] | {f['f1']:.1f} | {f['flagged']} |")
    lines += ["", f"Continuations (sampled: T {cfg.temperature}, top-p {cfg.top_p}, {cfg.max_new_tokens} new tokens), "
              f"moderated by {judge.name}:", "",
              "| prompts | continuations with a masked sentence | flagged whole |", "|---|---|---|"]
    lines += [f"| {name} ({c['prompts']}) | {c['masked_share']:.1f}% | {c['flagged_share']:.1f}% |"
              for name, c in continuations.items()]
    (out / "safety.md").write_text("# Safe output\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def cmd_kg(args) -> int:
    import json

    from tasks.artifact import load_task
    from tasks.kg.graph import build_graph, end_to_end_scores

    if not 0 <= args.min_score < 1:
        raise ValueError(f"--min-score must be in [0, 1), got {args.min_score}")
    text = args.text
    if args.file is not None:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"cannot read --file {args.file}: {err}") from None
    if not args.eval and not text.strip():
        raise ValueError("the text is empty")
    ner, relations = load_task(args.ner), load_task(args.relations)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.eval:
        from backbone.data.loaders import relation_sentences

        scores = end_to_end_scores(ner, relations, relation_sentences()["test"], args.min_score)
        scores.update(ner=args.ner, relations=args.relations, min_score=args.min_score)
        (out / "kg_eval.json").write_text(json.dumps(scores, indent=1))
        print(json.dumps(scores, indent=1))
        return 0
    graph = build_graph(text, ner, relations, args.min_score)
    graph.write_jsonl(out / "graph.jsonl")
    graph.write_graphml(out / "graph.graphml")
    graph.draw(out / "graph.png")
    for t in graph.triples:
        print(f"{t.head} ({graph.nodes[t.head]}) --{t.relation}--> {t.tail} ({graph.nodes[t.tail]})  "
              f"[{t.score:.2f}] {t.evidence[0]}")
    print(f"{len(graph.nodes)} entities, {len(graph.triples)} relations -> {out}/graph.{{jsonl,graphml,png}}",
          file=sys.stderr)
    return 0


def cmd_optimize(args) -> int:
    from backbone.precision import resolve_precision, set_inference_precision
    from tasks.apps.inference import compare_options, markdown

    model, tokenizer = _load(args.backbone, "none")
    set_inference_precision(model, resolve_precision("32-true"))
    rows = compare_options(model, tokenizer, args.prompt, args.max_new_tokens)
    text = markdown(rows)
    out = out_folder(args.out, "optimize")
    out.mkdir(parents=True, exist_ok=True)
    about = (f"{_machine()}; prompt {args.prompt!r}, {args.max_new_tokens} new tokens, greedy; each time the "
             "median of 3 runs after a warm-up run, prefill included.")
    (out / "inference.md").write_text(f"# Inference options ({args.backbone})\n\n{about}\n\n{text}\n")
    print(text)
    return 0

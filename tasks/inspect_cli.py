"""The commands that look inside a model (added to `gptsuite` by tasks.cli):

    gptsuite lens --backbone DIR --text "..." [--top 3]
        what each layer would predict next (backbone.lens)
    gptsuite probe --backbone DIR --task ner|sentiment [--max-train 2000] [--max-test N] [--out DIR]
        each layer's frozen states read by a linear probe, scored on the benchmark's test split (tasks.probe)
    gptsuite attribute --task DIR --text "..." [--label L] [--method integrated_gradients|gradient_x_input]
        which tokens made a classifier decide (tasks.attribution)

Parsing and dispatch only.
"""

from __future__ import annotations

import time

from backbone.artifact import load_backbone
from backbone.lens import MAX_TOKENS, logit_lens
from tasks.apps.machine import machine_line
from tasks.runs import default_out, out_folder


def register_inspect_commands(sub) -> None:
    lens = sub.add_parser("lens", help="the logit lens: what each layer would predict next, for a text")
    lens.add_argument("--backbone", required=True, help="backbone artifact folder")
    lens.add_argument("--text", required=True, help="the text to read")
    lens.add_argument("--top", type=int, default=3, help="next tokens kept per cell (the table shows the first)")
    lens.add_argument("--max-tokens", type=int, default=MAX_TOKENS, help="positions read, from the text's start")
    lens.set_defaults(func=cmd_lens)

    probe = sub.add_parser("probe", help="how well each layer's frozen states predict NER tags or sentiment")
    probe.add_argument("--backbone", required=True, help="backbone artifact folder")
    probe.add_argument("--task", choices=("ner", "sentiment"), required=True,
                       help="ner: CoNLL-2003 entity F1; sentiment: MR accuracy")
    probe.add_argument("--max-train", type=int, default=2000, help="training rows (a seeded random subset)")
    probe.add_argument("--max-test", type=int, default=None, help="test rows (default: the whole test split)")
    probe.add_argument("--out", default=default_out("probe", "task"),
                       help="where probe.json and probe.md go (default: a fresh runs/probe/<task>-<YYYYmmdd-HHMMSS>/, "
                            "printed; --out benchmarks/probe/conll-smollm2 updates the committed SmolLM2 reference)")
    probe.set_defaults(func=cmd_probe)

    attr = sub.add_parser("attribute", help="which tokens made a classifier decide (gradient x input, "
                                            "integrated gradients)")
    attr.add_argument("--task", required=True, help="a fitted classifier's folder (classification, sentiment, "
                                                     "toxicity, relations)")
    attr.add_argument("--text", required=True, help="the text to explain")
    attr.add_argument("--label", default=None, help="the label to explain (default: the predicted one)")
    attr.add_argument("--method", choices=("integrated_gradients", "gradient_x_input"),
                      default="integrated_gradients", help="integrated gradients (default) or gradient x input")
    attr.add_argument("--steps", type=int, default=32, help="integrated gradients' steps from the zero baseline")
    attr.set_defaults(func=cmd_attribute)


def check_at_least_one(**values: int | None) -> None:
    for flag, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")


def cmd_lens(args) -> int:
    check_at_least_one(top=args.top, max_tokens=args.max_tokens)
    model, tokenizer = load_backbone(args.backbone)
    print(logit_lens(model.eval(), tokenizer, args.text, args.top, args.max_tokens).table())
    return 0


def cmd_probe(args) -> int:
    check_at_least_one(max_train=args.max_train, max_test=args.max_test)
    # why here: the probe reads the benchmarks through `datasets`, and the task modules import Lightning
    # (seconds each), which every other `gptsuite` command would pay for at start-up
    from tasks.probe import benchmark_examples, probe_layers, write_probe_report

    model, tokenizer = load_backbone(args.backbone)
    out = out_folder(args.out, "probe", args.task)
    train = benchmark_examples(args.task, "train", args.max_train)
    test = benchmark_examples(args.task, "test", args.max_test)
    start = time.time()
    scores = probe_layers(model.eval(), tokenizer, args.task, train, test, progress=True)
    about = {"backbone": args.backbone, "train rows": len(train.inputs), "test rows": len(test.inputs),
             "machine": machine_line(),
             "seconds": round(time.time() - start), "date": time.strftime("%Y-%m-%d")}
    print(write_probe_report(scores, args.task, out, about))
    print(f"-> {out}/probe.md")
    return 0


def cmd_attribute(args) -> int:
    check_at_least_one(steps=args.steps)
    from tasks.artifact import load_task  # why here: as cmd_probe's imports (Lightning, through the task modules)
    from tasks.attribution import attribute

    result = attribute(load_task(args.task), args.text, args.label, args.method, args.steps)
    print(f"{result.label} (p = {result.probability:.3f}), {result.method.replace('_', ' ')}:")
    print(result.table())
    return 0

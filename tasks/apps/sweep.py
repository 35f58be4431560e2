"""Creativity against coherence: the same prompts decoded under many settings, each set of texts measured.

    gptsuite sweep --backbone artifacts/backbones/smollm2-135m [--judge DIR] [--uses chat article code]

For each use (chat replies, article openings, code bodies) a handful of prompts is decoded under every
setting of SETTINGS: greedy, then temperature, top-k, top-p and min-p each swept on its own (the others
off). Each setting's texts get the figures of tasks.apps.quality: diversity (distinct-2 up, self-BLEU
down) against coherence (perplexity under a judge model and the share of repeated 4-grams, both down).

The recommended setting of a use is the most diverse one (highest distinct-2) among those that stay
coherent by that use's standard: repetition_4 at most MAX_REPETITION, and judge perplexity at most
TOLERANCE[use] times the lowest perplexity any non-greedy setting reached on that use. Code tolerates the
least drift from the likeliest text, an article the most. The rule is a stated convention, not a truth:
the table beside it lets a reader pick by another one.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from backbone.artifact import load_backbone
from backbone.chat import as_user_turn
from backbone.generate import GenerationConfig, generate_text
from tasks.apps.machine import machine_line
from tasks.apps.quality import describe

# (name, GenerationConfig fields): one knob at a time, the others off (temperature 1 for the filters)
SETTINGS: list[tuple[str, dict]] = [
    ("greedy", {"temperature": 0.0}),
    *((f"T={t}", {"temperature": t}) for t in (0.3, 0.7, 1.0, 1.3)),
    *((f"top-k={k}", {"temperature": 1.0, "top_k": k}) for k in (5, 40, 200)),
    *((f"top-p={p}", {"temperature": 1.0, "top_p": p}) for p in (0.5, 0.8, 0.95)),
    *((f"min-p={m}", {"temperature": 1.0, "min_p": m}) for m in (0.02, 0.1, 0.2)),
]
USES = ("chat", "article", "code")
TOLERANCE = {"code": 1.15, "chat": 1.5, "article": 2.0}
MAX_REPETITION = 0.10

# prompts per use: chat as user turns (through the chat template when the backbone has one), article as a
# title to open, code as a Python signature and docstring
PROMPTS = {
    "chat": ["What should I pack for a weekend hiking trip?", "Give me an idea for a birthday present for my sister.",
             "How can I get better at remembering names?", "Describe a city you would like to visit, and why.",
             "What is a good way to start learning to cook?", "Tell me something interesting about the ocean."],
    "article": ["The quiet return of the night train", "Why small libraries still matter",
                "A beginner's guide to growing tomatoes", "What the first bicycles looked like",
                "How a river shapes the town beside it", "The science of a good night's sleep"],
    "code": ['def mean(values):\n    """Return the arithmetic mean of a non-empty list of numbers."""\n',
             'def is_palindrome(text):\n    """True when text reads the same backwards, ignoring case."""\n',
             'def count_words(sentence):\n    """Return a dict mapping each word of the sentence to its count."""\n',
             'def fizzbuzz(n):\n    """Return the FizzBuzz strings for the numbers 1 to n."""\n',
             'def flatten(nested):\n    """Flatten a list of lists into one list."""\n',
             'def clamp(x, low, high):\n    """Limit x to the range [low, high]."""\n'],
}


@dataclass
class SweepPoint:
    use: str
    setting: str
    config: dict
    figures: dict
    seconds: float


def use_prompts(use: str, tokenizer, n: int) -> list[str]:
    """The first n prompts of a use, as the backbone reads them."""
    if use not in PROMPTS:
        raise ValueError(f"unknown use {use!r}: choose from {', '.join(USES)}")
    prompts = PROMPTS[use][:n]
    if use == "chat":
        return [as_user_turn(tokenizer, p) for p in prompts]
    if use == "article":
        return [f"# {p}\n\n" for p in prompts]
    return prompts


def run_sweep(model, tokenizer, judge=None, judge_tokenizer=None, uses=USES, prompts_per_use: int = 6,
              samples: int = 2, max_new_tokens: int = 64, settings=None, seed: int = 0,
              progress: bool = True) -> list[SweepPoint]:
    """Decode every (use, setting) and measure it. The judge defaults to the model itself."""
    settings = settings or SETTINGS
    jobs = [(u, name, fields) for u in uses for name, fields in settings]
    if progress:
        jobs = tqdm(jobs, desc="sweep", unit="setting")
    return [measure_setting(model, tokenizer, use_prompts(use, tokenizer, prompts_per_use), name, fields,
                            judge, judge_tokenizer, use, samples, max_new_tokens, seed) for use, name, fields in jobs]


def measure_setting(model, tokenizer, prompts: list[str], name: str, fields: dict, judge=None, judge_tokenizer=None,
                    use: str = "custom", samples: int = 2, max_new_tokens: int = 64, seed: int = 0) -> SweepPoint:
    """One setting on some prompts: `samples` texts per prompt, measured. Greedy decoding is run once per
    prompt and its text counted `samples` times: its samples are identical, and the diversity figures
    should say so (distinct-n and self-BLEU compare sets of the same size)."""
    greedy = fields.get("temperature", 0) == 0
    stop = ("\ndef ", "\nclass ", "\nif __name__") if use == "code" else ()
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, seed=seed, stop=stop, truncate_prompt=True, **fields)
    start = time.perf_counter()
    texts = generate_text(model, tokenizer, [p for p in prompts for _ in range(1 if greedy else samples)], cfg)
    seconds = time.perf_counter() - start
    if greedy:
        texts = [t for t in texts for _ in range(samples)]
    batch = [p for p in prompts for _ in range(samples)]
    figures = describe(texts, batch, judge or model, judge_tokenizer or tokenizer)
    figures["example"] = texts[0][:300]
    return SweepPoint(use, name, cfg.describe(), figures, round(seconds, 2))


def sweep_backbone(backbone: str, judge: str | None, uses, prompts_per_use: int, samples: int,
                   max_new_tokens: int, quantize: str, out: Path) -> dict:
    """`gptsuite sweep`: the backbone in folder `backbone` (quantised as `quantize` says) decodes, the `judge`
    backbone (default: the same one, unquantised) scores; the results are written under `out`
    (write_results), whose record this returns."""
    model, tokenizer = load_backbone(backbone, quantize=quantize)
    judge_model, judge_tokenizer = load_backbone(judge or backbone, quantize="none")
    points = run_sweep(model, tokenizer, judge_model, judge_tokenizer, uses, prompts_per_use, samples, max_new_tokens)
    about = {"backbone": backbone, "judge": judge or f"{backbone} itself (fp32)", "quantize": model.quantization,
             "machine": machine_line(),
             "note": f"{prompts_per_use} prompts per use, {samples} samples each (greedy: its one text counted "
                     f"{samples} times), {max_new_tokens} new tokens."}
    return write_results(points, out, about)


def recommend(points: list[SweepPoint]) -> dict[str, str]:
    """Per use, the setting the module docstring's rule picks (None when no setting passes it)."""
    out = {}
    for use in dict.fromkeys(p.use for p in points):
        mine = [p for p in points if p.use == use and p.setting != "greedy"
                and math.isfinite(p.figures["perplexity"])]  # a set of empty texts has no perplexity
        best_ppl = min((p.figures["perplexity"] for p in mine), default=float("nan"))
        ok = [p for p in mine if p.figures["repetition_4"] <= MAX_REPETITION
              and p.figures["perplexity"] <= TOLERANCE.get(use, 1.5) * best_ppl]
        out[use] = max(ok, key=lambda p: p.figures["distinct_2"]).setting if ok else None
    return out


def write_results(points: list[SweepPoint], out: Path, about: dict) -> dict:
    """sweep.json (every point), sweep.md (a table per use, the recommendations) and sweep.png."""
    out.mkdir(parents=True, exist_ok=True)
    picks = recommend(points)
    rule = {"max_repetition_4": MAX_REPETITION, "perplexity_tolerance": TOLERANCE}
    record = {**about, "recommended": picks, "rule": rule, "points": [p.__dict__ for p in points]}
    (out / "sweep.json").write_text(json.dumps(record, indent=1))
    lines = [f"# Creativity against coherence ({about.get('backbone', '')})", "",
             f"Judge: {about.get('judge', '')}. {about.get('note', '')}", ""]
    for use in dict.fromkeys(p.use for p in points):
        lines += [f"## {use} (recommended: **{picks[use]}**)", "",
                  "| setting | distinct-2 | self-BLEU | repetition-4 | judge perplexity | seconds |",
                  "|---|---|---|---|---|---|"]
        for p in (p for p in points if p.use == use):
            f = p.figures
            mark = " **←**" if p.setting == picks[use] else ""
            lines.append(f"| {p.setting}{mark} | {f['distinct_2']:.3f} | {f.get('self_bleu', float('nan')):.1f} | "
                         f"{f['repetition_4']:.3f} | {f['perplexity']:.1f} | {p.seconds:.1f} |")
        lines.append("")
    (out / "sweep.md").write_text("\n".join(lines))
    plot(points, picks, out / "sweep.png")
    return record


def plot(points: list[SweepPoint], picks: dict, path: Path) -> None:
    """One panel per use: distinct-2 (x) against judge perplexity (y, log), a point per setting, its size
    the repetition rate, the recommended one ringed."""
    import matplotlib  # here: heavy, and only a plot needs it; the Agg backend is chosen before pyplot loads

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use: no display needed

    uses = list(dict.fromkeys(p.use for p in points))
    fig, axes = plt.subplots(1, len(uses), figsize=(5 * len(uses), 4.2), squeeze=False)
    colours = {"greedy": "black", "T": "tab:red", "top-k": "tab:blue", "top-p": "tab:green", "min-p": "tab:purple"}
    for ax, use in zip(axes[0], uses):
        for p in (p for p in points if p.use == use):
            family = p.setting.split("=")[0]
            x, y = p.figures["distinct_2"], p.figures["perplexity"]
            ax.scatter(x, y, s=30 + 600 * p.figures["repetition_4"], color=colours.get(family, "gray"), alpha=0.7)
            ax.annotate(p.setting, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            if p.setting == picks.get(use):
                ax.scatter(x, y, s=260, facecolors="none", edgecolors="orange", linewidths=2)
        families = list(dict.fromkeys(p.setting.split("=")[0] for p in points if p.use == use))
        ax.legend(handles=[plt.Line2D([], [], marker="o", ls="", color=colours.get(f, "gray"), label=f)
                           for f in families], fontsize=7, loc="upper left")  # one marker size for all
        ax.set_yscale("log")
        ax.set_xlabel("distinct-2 (diversity →)")
        ax.set_ylabel("judge perplexity (← coherence)")
        ax.set_title(f"{use}: recommended {picks.get(use)}")
        ax.grid(alpha=0.3)
    fig.suptitle("Decoding settings: diversity against coherence (point size: repeated 4-grams)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""The tour's pictures, drawn by the code they show (the tests draw them again, small):

    python docs/tour/make_images.py [--backbone artifacts/backbones/smollm2-135m] [--out docs/tour/img]

    positions.png     the sinusoidal table and the dot products between positions (page 1)
    attention.png     one head's attention weights over a prompt (page 1)
    lr-schedule.png   warmup and cosine decay (page 2)
    sampling.png      the next-token distribution before and after each filter (page 3)
    logit-lens.png    what each layer would predict next (page 5)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt  # without a display, matplotlib draws to files (its Agg backend)
import torch

from backbone.artifact import load_backbone
from backbone.lens import logit_lens
from backbone.logits import filter_min_p, filter_top_k, filter_top_p
from backbone.model import sinusoidal_table
from backbone.optim import warmup_cosine

PROMPT = "The capital of France is"
OPEN_PROMPT = "My favourite food is"  # many good continuations: the filters have something to cut


def save(fig, path: Path, dpi: int) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def positions(out: Path, dpi: int = 120, n: int = 64, dim: int = 64) -> Path:
    pe = sinusoidal_table(n, dim)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.imshow(pe.T, aspect="auto", cmap="RdBu")
    left.set(title="PE[position, dimension]", xlabel="position", ylabel="dimension")
    right.imshow(pe @ pe.T, cmap="viridis")
    right.set(title="PE[p] · PE[q]: a function of p − q", xlabel="q", ylabel="p")
    return save(fig, out / "positions.png", dpi)


def attention(out: Path, model, tokenizer, dpi: int = 120, layer: int = 0, head: int = 4) -> Path:
    ids = tokenizer.encode(PROMPT)
    weights = model.attention_weights(torch.tensor([ids]))[layer][0, head % model.config.n_head]  # (T, T)
    labels = [tokenizer.decode([i]) for i in ids]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(weights.float(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(ids)), labels, rotation=60)
    ax.set_yticks(range(len(ids)), labels)
    ax.set(title=f"layer {layer}, head {head % model.config.n_head}", xlabel="key", ylabel="query")
    return save(fig, out / "attention.png", dpi)


def lr_schedule(out: Path, dpi: int = 120) -> Path:
    steps = range(1200)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(steps, [warmup_cosine(t, 100, 1000, 0.1) for t in steps])
    ax.set(title="warmup 100 steps, cosine to 10% at step 1000", xlabel="step", ylabel="lr / peak")
    return save(fig, out / "lr-schedule.png", dpi)


def sampling(out: Path, model, tokenizer, dpi: int = 120, shown: int = 20) -> Path:
    scores = model.lm_logits(model(torch.tensor([tokenizer.encode(OPEN_PROMPT)])))[:, -1].float().detach()
    order = scores[0].argsort(descending=True)[:shown]
    panels = [("logits as they are", scores), ("temperature 0.7", scores / 0.7), ("top-k 5", filter_top_k(scores, 5)),
              ("top-p 0.8", filter_top_p(scores, 0.8)), ("min-p 0.2", filter_min_p(scores, 0.2))]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3), sharey=True)
    labels = [repr(tokenizer.decode([int(i)]))[1:-1] for i in order]
    for ax, (title, filtered) in zip(axes, panels):
        ax.bar(range(shown), filtered.softmax(-1)[0, order])
        ax.set_xticks(range(shown), labels, rotation=90, fontsize=6)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel(f"p(next token | {OPEN_PROMPT!r})", fontsize=8)
    return save(fig, out / "sampling.png", dpi)


def lens_grid(out: Path, model, tokenizer, dpi: int = 120) -> Path:
    grid = logit_lens(model, tokenizer, PROMPT, top=1)
    probs = grid.top_probs[..., 0]  # (layers, T)
    fig, ax = plt.subplots(figsize=(1.3 * len(grid.tokens) + 1, 0.28 * len(probs) + 1))
    ax.imshow(probs, aspect="auto", cmap="Greens", vmin=0, vmax=1.6, origin="lower")  # light enough to read
    for k, row in enumerate(grid.cells()):
        for t, (token, _) in enumerate(row):
            ax.text(t, k, repr(token)[1:-1][:10], ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(grid.tokens)), [repr(t)[1:-1] for t in grid.tokens])
    ax.set(xlabel="input position (the cell: the next token that layer predicts)", ylabel="layer")
    return save(fig, out / "logit-lens.png", dpi)


def draw_all(backbone: str | Path, out: str | Path, dpi: int = 120) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_backbone(backbone)
    model.eval()
    return [positions(out, dpi), attention(out, model, tokenizer, dpi), lr_schedule(out, dpi),
            sampling(out, model, tokenizer, dpi), lens_grid(out, model, tokenizer, dpi)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="artifacts/backbones/smollm2-135m", help="the model the pictures read")
    parser.add_argument("--out", default=str(Path(__file__).parent / "img"), help="the folder to write")
    parser.add_argument("--dpi", type=int, default=120, help="resolution (the tests draw at 30)")
    args = parser.parse_args()
    for path in draw_all(args.backbone, args.out, args.dpi):
        print(path)


if __name__ == "__main__":
    main()

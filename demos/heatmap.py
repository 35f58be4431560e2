"""Attention heatmaps drawn with PIL (no plotting library needed): a grid of every layer x head, and one
head at a larger size with its tokens on both axes."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# viridis at five stops, interpolated linearly
_STOPS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)


def colorize(weights: np.ndarray) -> np.ndarray:
    """(T, T) values in [0, 1] -> (T, T, 3) uint8 RGB."""
    x = np.clip(weights, 0.0, 1.0) * (len(_STOPS) - 1)
    low = np.floor(x).astype(int).clip(0, len(_STOPS) - 2)
    frac = (x - low)[..., None]
    return (_STOPS[low] * (1 - frac) + _STOPS[low + 1] * frac).astype(np.uint8)


def _panel(weights: np.ndarray, size: int) -> Image.Image:
    scaled = weights / max(float(weights.max()), 1e-9)  # each head on its own scale
    return Image.fromarray(colorize(scaled)).resize((size, size), Image.NEAREST)


def grid_image(weights: np.ndarray, panel: int = 120, pad: int = 18, top: int = 36) -> Image.Image:
    """weights (L, H, T, T) -> one image: a row per layer, a column per head, each labelled."""
    n_layer, n_head = weights.shape[:2]
    font = ImageFont.load_default()
    image = Image.new("RGB", (pad + n_head * (panel + pad), top + pad + n_layer * (panel + pad)), "white")
    draw = ImageDraw.Draw(image)
    for layer in range(n_layer):
        for head in range(n_head):
            x, y = pad + head * (panel + pad), top + pad + layer * (panel + pad)
            image.paste(_panel(weights[layer, head], panel), (x, y))
            draw.text((x, y - pad + 3), f"layer {layer} head {head}", fill="black", font=font)
    return image


def head_image(weights: np.ndarray, tokens: list[str], cell: int = 22, top: int = 36) -> Image.Image:
    """One head (T, T): queries down the side, keys along the top, token strings on both axes."""
    font = ImageFont.load_default()
    labels = [t.replace("\n", "\\n")[:12] or "·" for t in tokens]
    margin = 8 + 7 * max((len(s) for s in labels), default=1)
    n = len(tokens)
    image = Image.new("RGB", (margin + n * cell + 4, top + margin + n * cell + 4), "white")
    image.paste(_panel(weights, n * cell), (margin, top + margin))
    draw = ImageDraw.Draw(image)
    for i, label in enumerate(labels):
        draw.text((4, top + margin + i * cell + cell // 2 - 5), label, fill="black", font=font)
        key = Image.new("RGB", (margin, cell), "white")
        ImageDraw.Draw(key).text((4, cell // 2 - 5), label, fill="black", font=font)
        image.paste(key.rotate(90, expand=True), (margin + i * cell, top))
    return image

"""Backbone artifacts: a folder with config.json + model.safetensors (+ tokenizer.json, tokenizer_config.json).

No pickles: weights are safetensors, everything else JSON. Every failure names the file at fault.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from backbone.config import GPTConfig
from backbone.model import GPT, RotaryEmbedding, sinusoidal_table
from backbone.quantize import inference_model
from backbone.tokenizer import Tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
# the one spelling of "how do I get a backbone", shared by the tasks' errors and the demo's messages
PRETRAIN_COMMAND = "gptsuite pretrain fit --config configs/pretrain/tiny.yaml"
CREATE_BACKBONE = f"create it with `{PRETRAIN_COMMAND}` (or `gptsuite import smollm2`)"


class ArtifactError(ValueError):
    """A backbone folder that is missing a file, or whose files do not agree."""


def save_backbone(directory: str | Path, model, tokenizer=None, metrics: dict | None = None) -> Path:
    """Write the model (and tokenizer, metrics) to `directory`; files are written then renamed into place."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        state.pop("lm_head.weight", None)  # the same tensor as transformer.wte.weight
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(directory / WEIGHTS_FILE)
    model.config.save(directory / CONFIG_FILE)
    if tokenizer is not None:
        tokenizer.save(directory)
    if metrics is not None:
        (directory / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    return directory


def _require(directory: Path, name: str, hint: str = "") -> Path:
    path = directory / name
    if not path.is_file():
        raise ArtifactError(f"{path} is missing{hint}")
    return path


def load_model(directory: str | Path, map_location: str = "cpu"):
    """Build a GPT from config.json and fill it from model.safetensors, checking every tensor."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"backbone folder {directory} does not exist")
    config_path = _require(directory, CONFIG_FILE)
    try:
        config = GPTConfig.load(config_path)
    except (ValueError, TypeError) as err:
        raise ArtifactError(f"{config_path}: {err}") from err
    weights_path = _require(directory, WEIGHTS_FILE)
    try:
        state = load_file(str(weights_path), device=map_location)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ArtifactError(f"{weights_path} is unreadable (truncated or not safetensors): {err}") from err
    with torch.device("meta"):
        model = GPT(config)
    expected = {k: v for k, v in model.state_dict().items()}
    if config.tie_embeddings:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ArtifactError(f"{weights_path} does not match {config_path}: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtifactError(f"{weights_path}: {name} holds NaN or infinite values; the weights are corrupt")
        if tensor.shape != expected[name].shape:
            raise ArtifactError(
                f"{weights_path}: {name} has shape {tuple(tensor.shape)}, "
                f"{config_path} implies {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.transformer.wte.weight
    # buffers that are not saved (rotary frequencies, sinusoid table) were built on meta: rebuild them
    _rebuild_buffers(model, map_location)
    return model.eval()


def _rebuild_buffers(model, device) -> None:
    c = model.config
    if model.rotary is not None:
        model.rotary = RotaryEmbedding(c.head_size, c.rope_theta).to(device)
    if c.positions == "sinusoidal":
        model.register_buffer("sinusoid", sinusoidal_table(c.block_size, c.n_embd).to(device), persistent=False)


def load_backbone(directory: str | Path, map_location: str = "cpu", quantize: str = "none"):
    """(GPT, Tokenizer) from a backbone folder; quantize "int8", "int4" or "auto" for fast CPU inference
    (backbone.quantize; the model is then for decoding only)."""
    directory = Path(directory)
    model, _ = inference_model(load_model(directory, map_location), quantize, copy_model=False)
    tokenizer = Tokenizer.from_pretrained(directory)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ArtifactError(
            f"{directory}/tokenizer.json has {tokenizer.vocab_size} tokens "
            f"but config.json vocab_size is {model.config.vocab_size}"
        )
    return model, tokenizer


def read_metrics(directory: str | Path) -> dict:
    path = Path(directory) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}

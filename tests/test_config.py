"""GPTConfig: validation names the bad field, presets build, JSON round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from backbone.config import MODEL_PRESETS, GPTConfig
from backbone.model import GPT


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(n_embd=30, n_head=4), "n_embd"),
        (dict(n_head=4, n_kv_head=3), "n_head"),
        (dict(norm="batchnorm"), "norm"),
        (dict(positions="alibi"), "positions"),
        (dict(mlp="relu"), "mlp"),
        (dict(vocab_size=-1), "vocab_size"),
        (dict(block_size=0), "block_size"),
        (dict(n_layer=-2), "n_layer"),
        (dict(n_head=0), "n_head"),
        (dict(n_kv_head=-1), "n_kv_head"),
        (dict(n_embd=-32), "n_embd"),
        (dict(intermediate_size=-5), "intermediate_size"),
        (dict(n_layer=2.5), "n_layer"),
        (dict(n_layer=True), "n_layer"),
        (dict(dropout=-0.1), "dropout"),
        (dict(dropout=1.0), "dropout"),
        (dict(norm_eps=0.0), "norm_eps"),
        (dict(rope_theta=-1.0), "rope_theta"),
    ],
)
def test_invalid_value_raises_naming_field(overrides, field):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        GPTConfig.from_preset("nano", **overrides)


def test_rope_needs_even_head_size():
    # 4 heads of 6 is fine for learned positions, but rotary pairs need an even head size
    GPTConfig(n_embd=24, n_head=4)
    with pytest.raises(ValueError, match="rope"):
        GPTConfig(n_embd=12, n_head=4, positions="rope")


def test_defaults_filled_in():
    c = GPTConfig(n_embd=32, n_head=4)
    assert c.n_kv_head == 4
    assert c.intermediate_size == 128
    assert c.head_size == 8


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="preset"):
        GPTConfig.from_preset("gpt5")


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_every_preset_builds(name):
    config = GPTConfig.from_preset(name)
    with torch.device("meta"):
        model = GPT(config)
    assert model.num_params() > 0


@pytest.mark.parametrize("name", ["nano", "tiny", "small"])
def test_small_presets_instantiate_and_run(name):
    config = GPTConfig.from_preset(name, n_layer=1) if name != "nano" else GPTConfig.from_preset(name)
    model = GPT(config).eval()
    idx = torch.randint(0, config.vocab_size, (1, 5))
    with torch.no_grad():
        hidden = model(idx)
    assert hidden.shape == (1, 5, config.n_embd)
    assert torch.isfinite(hidden).all()


@pytest.mark.parametrize(("name", "expected"), [("gpt2-124m", 124_439_808), ("smollm2-135m", 134_515_008)])
def test_reference_parameter_counts(name, expected):
    with torch.device("meta"):
        model = GPT(GPTConfig.from_preset(name))
    assert model.num_params() == expected


def test_preset_overrides():
    c = GPTConfig.from_preset("nano", n_layer=3, positions="rope")
    assert c.n_layer == 3 and c.positions == "rope" and c.n_embd == 32


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
def test_json_round_trip(tmp_path, name):
    config = GPTConfig.from_preset(name)
    path = tmp_path / "config.json"
    config.save(path)
    loaded = GPTConfig.load(path)
    assert loaded == config
    assert dataclasses.asdict(loaded) == config.to_dict()
    assert GPTConfig.from_dict(config.to_dict()) == config


def test_from_dict_rejects_unknown_fields():
    data = GPTConfig.from_preset("nano").to_dict() | {"n_embed": 32}
    with pytest.raises(ValueError, match="n_embed"):
        GPTConfig.from_dict(data)


def test_load_invalid_json_names_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        GPTConfig.load(path)

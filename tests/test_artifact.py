"""Backbone artifacts: save_backbone / load_model round trip, and every broken file named."""

from __future__ import annotations

import json

import pytest
import torch

from backbone.artifact import ArtifactError, load_backbone, load_model, read_metrics, save_backbone


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
@pytest.mark.parametrize("tied", [True, False])
def test_round_trip_identical_logits(tmp_path, make_model, positions, tied):
    extra = dict(norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2) if positions == "rope" else {}
    model = make_model(seed=1, positions=positions, tie_embeddings=tied, **extra)
    save_backbone(tmp_path, model)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    loaded = load_model(tmp_path)
    assert loaded.config == model.config
    assert not loaded.training
    idx = torch.randint(0, 512, (2, 10))
    with torch.no_grad():
        assert torch.equal(loaded.lm_logits(loaded(idx)), model.lm_logits(model(idx)))
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert all(t.device.type == "cpu" for t in loaded.state_dict().values())
    for name, buf in loaded.named_buffers():
        assert buf.device.type == "cpu", name
    tied_now = loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    assert tied_now == tied
    # a loaded model still trains: the tied weight receives one gradient
    loaded.train()
    loaded.lm_logits(loaded(idx)).sum().backward()
    assert loaded.transformer.wte.weight.grad is not None


def test_tied_weights_stored_once(tmp_path, make_model):
    from safetensors import safe_open

    save_backbone(tmp_path / "tied", make_model())
    save_backbone(tmp_path / "untied", make_model(tie_embeddings=False))
    with safe_open(str(tmp_path / "tied" / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()
    with safe_open(str(tmp_path / "untied" / "model.safetensors"), "pt") as f:
        assert "lm_head.weight" in f.keys()


def test_tokenizer_and_metrics_saved(tmp_path, make_model, tiny_tokenizer):
    model = make_model(vocab_size=tiny_tokenizer.vocab_size)
    save_backbone(tmp_path, model, tiny_tokenizer, metrics={"val/loss": 1.5})
    loaded, tok = load_backbone(tmp_path)
    assert tok.encode("the fox 🙂") == tiny_tokenizer.encode("the fox 🙂")
    assert read_metrics(tmp_path) == {"val/loss": 1.5}
    assert not list(tmp_path.glob("*.tmp"))


def test_tokenizer_larger_than_vocab_rejected(tmp_path, make_model, tiny_tokenizer):
    save_backbone(tmp_path, make_model(vocab_size=300), tiny_tokenizer)
    with pytest.raises(ArtifactError, match="tokenizer.json"):
        load_backbone(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(ArtifactError, match="nowhere"):
        load_model(tmp_path / "nowhere")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_missing_file_named(tmp_path, make_model, name):
    save_backbone(tmp_path, make_model())
    (tmp_path / name).unlink()
    with pytest.raises(ArtifactError, match=name):
        load_model(tmp_path)


def test_truncated_weights_named(tmp_path, make_model):
    save_backbone(tmp_path, make_model())
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="model.safetensors"):
        load_model(tmp_path)


def test_garbage_weights_named(tmp_path, make_model):
    save_backbone(tmp_path, make_model())
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x02}q\x00.")  # a pickle, not safetensors
    with pytest.raises(ArtifactError, match="model.safetensors"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    "change", [dict(n_embd=64), dict(n_layer=3), dict(vocab_size=600), dict(positions="rope"),
               dict(tie_embeddings=False)]
)
def test_config_mismatching_weights_named(tmp_path, make_model, change):
    save_backbone(tmp_path, make_model())
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(change)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ArtifactError, match="model.safetensors") as info:
        load_model(tmp_path)
    assert "config.json" in str(info.value)


@pytest.mark.parametrize("text", ["{not json", json.dumps({"n_embd": 30, "n_head": 4}), json.dumps({"n_embed": 32})])
def test_bad_config_named(tmp_path, make_model, text):
    save_backbone(tmp_path, make_model())
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ArtifactError, match="config.json"):
        load_model(tmp_path)


def test_error_is_a_value_error():
    assert issubclass(ArtifactError, ValueError)

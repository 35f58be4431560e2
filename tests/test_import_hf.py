"""import_hf_folder: a tiny random transformers model saved with save_pretrained (safetensors + tokenizer.json)
becomes a backbone artifact with the same logits and the same token ids."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from backbone.artifact import load_backbone  # noqa: E402
from backbone.interop import import_hf_folder  # noqa: E402
from backbone.tokenizer import Tokenizer  # noqa: E402

TEXTS = ["the cat sat on the mat", "Hello, world! 12 + 345 = 357.\n  spaced\ttabs <|endoftext|> naïve 🤖"]


@pytest.fixture(scope="module")
def hf_tokenizer_backend(tiny_corpus):
    return Tokenizer.train(tiny_corpus.split("\n\n"), vocab_size=300, min_frequency=2, show_progress=False).backend


def _random(model):
    with torch.no_grad():  # larger than the 0.02 init, so the logits are decisive and differences show
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 if p.dim() == 2 else 1 + 0.1 * torch.randn_like(p))
    return model.eval()


def tiny_llama(vocab_size: int, tied: bool):
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=500.0,
        tie_word_embeddings=tied, attention_bias=False, mlp_bias=False,
    )
    return transformers.LlamaForCausalLM(config)


def tiny_gpt2(vocab_size: int, tied: bool):
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=tied,
    )
    return transformers.GPT2LMHeadModel(config)


@pytest.mark.parametrize("kind,tied", [("llama", False), ("llama", True), ("gpt2", True)],
                         ids=["llama", "llama-tied", "gpt2"])
def test_import_hf_folder_matches_logits(tmp_path, hf_tokenizer_backend, kind, tied):
    torch.manual_seed(0)
    vocab_size = hf_tokenizer_backend.get_vocab_size()
    hf = _random((tiny_llama if kind == "llama" else tiny_gpt2)(vocab_size, tied))
    folder = tmp_path / "hf"
    hf.save_pretrained(folder)  # config.json + model.safetensors
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=hf_tokenizer_backend, eos_token="<|endoftext|>")
    hf_tok.save_pretrained(folder)  # tokenizer.json + tokenizer_config.json
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert not list(folder.glob("*.bin"))

    model, tok = load_backbone(import_hf_folder(folder, tmp_path / "artifact"))

    c = model.config
    assert c.tie_embeddings == tied and c.vocab_size == vocab_size and c.n_layer == 2
    if kind == "llama":
        assert (c.positions, c.norm, c.mlp, c.n_kv_head, c.rope_theta) == ("rope", "rmsnorm", "swiglu", 2, 500.0)
    for text in TEXTS:
        assert tok.encode(text) == hf_tok.encode(text, add_special_tokens=False)
    assert tok.eos_token == "<|endoftext|>"

    ids = torch.tensor([tok.encode(TEXTS[1])])
    with torch.no_grad():
        torch.testing.assert_close(model.lm_logits(model(ids)), hf(ids).logits, atol=1e-4, rtol=1e-4)


def test_import_hf_folder_keeps_chat_template(tmp_path, hf_tokenizer_backend):
    torch.manual_seed(0)
    hf = tiny_llama(hf_tokenizer_backend.get_vocab_size(), tied=True)
    hf.save_pretrained(tmp_path / "hf")
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    transformers.PreTrainedTokenizerFast(tokenizer_object=hf_tokenizer_backend, eos_token="<|endoftext|>",
                                         chat_template=template).save_pretrained(tmp_path / "hf")
    _, tok = load_backbone(import_hf_folder(tmp_path / "hf", tmp_path / "artifact"))
    assert tok.chat_template == template


def test_import_hf_folder_refuses_pickles(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        import_hf_folder(tmp_path, tmp_path / "out")

"""GGUF import: a tiny random Llama written as GGUF (the llama.cpp way) round-trips through import_gguf with
the logits of the source weights; the real SmolLM2-135M file matches transformers' own GGUF reader (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

from backbone.artifact import load_backbone  # noqa: E402
from backbone.gguf import (  # noqa: E402
    GGUFError,
    config_from_metadata,
    import_gguf,
    permute_qk,
    read_gguf,
    unpermute_qk,
)
from backbone.tokenizer import Tokenizer  # noqa: E402

CONTROL = ["<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TEXTS = ["the cat sat on the mat", "Hello, world! 12 + 345 = 357.\n\n  spaced   out\ttabs",
         "naïve café — ünïcödé 🤖", "<|im_start|>user\nhi there<|im_end|>\n<|endoftext|>"]


def llama_cpp_permute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """convert_hf_to_gguf.py LlamaModel.permute, written out independently of backbone.gguf."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def source_tokenizer(tiny_corpus):
    """A byte-level BPE (GPT-2 regex) trained on the fixture corpus, with two chat control tokens added."""
    tok = Tokenizer.train(tiny_corpus.split("\n\n"), vocab_size=300, min_frequency=2, show_progress=False)
    tok.backend.add_special_tokens(CONTROL)
    return tok


def tiny_hf_llama(vocab_size: int, tied: bool):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=tied, attention_bias=False, mlp_bias=False, bos_token_id=None, eos_token_id=None,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # larger than the 0.02 init, so the logits are decisive and differences show
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 if p.dim() == 2 else 1 + 0.1 * torch.randn_like(p))
    return model


def write_gguf(path, hf_model, tokenizer: Tokenizer, pre: str = "gpt2") -> None:
    """What llama.cpp's convert_hf_to_gguf.py writes for a Llama (F32 tensors, q/k rows permuted)."""
    c = hf_model.config
    vocab_json = json.loads(tokenizer.backend.to_str())
    vocab = tokenizer.backend.get_vocab(with_added_tokens=True)
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    merges = [m if isinstance(m, str) else " ".join(m) for m in vocab_json["model"]["merges"]]
    special = {a["content"] for a in vocab_json["added_tokens"] if a["special"]}
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.NORMAL for t in tokens]

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_vocab_size(len(tokens))
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab["<|im_start|>"])
    w.add_eos_token_id(vocab["<|im_end|>"])
    w.add_pad_token_id(vocab["<|endoftext|>"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    sd = {k: v.detach().float().numpy() for k, v in hf_model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        q = llama_cpp_permute(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads, c.num_attention_heads)
        k = llama_cpp_permute(sd[p + "self_attn.k_proj.weight"], c.num_attention_heads, c.num_key_value_heads)
        for name, arr in [("attn_norm", sd[p + "input_layernorm.weight"]), ("attn_q", q), ("attn_k", k),
                          ("attn_v", sd[p + "self_attn.v_proj.weight"]),
                          ("attn_output", sd[p + "self_attn.o_proj.weight"]),
                          ("ffn_norm", sd[p + "post_attention_layernorm.weight"]),
                          ("ffn_gate", sd[p + "mlp.gate_proj.weight"]),
                          ("ffn_up", sd[p + "mlp.up_proj.weight"]), ("ffn_down", sd[p + "mlp.down_proj.weight"])]:
            w.add_tensor(f"blk.{i}.{name}.weight", np.ascontiguousarray(arr))
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    if not c.tie_word_embeddings:
        w.add_tensor("output.weight", sd["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_tiny_gguf_round_trip(tmp_path, source_tokenizer, tied):
    hf = tiny_hf_llama(source_tokenizer.vocab_size, tied)
    write_gguf(tmp_path / "tiny.gguf", hf, source_tokenizer)
    out = import_gguf(tmp_path / "tiny.gguf", tmp_path / "artifact")
    model, tok = load_backbone(out)

    c = model.config
    assert (c.n_layer, c.n_head, c.n_kv_head, c.n_embd, c.intermediate_size) == (2, 4, 2, 32, 64)
    assert (c.norm, c.positions, c.mlp, c.bias, c.tie_embeddings) == ("rmsnorm", "rope", "swiglu", False, tied)
    assert (c.vocab_size, c.block_size, c.norm_eps, c.rope_theta) == (source_tokenizer.vocab_size, 128, 1e-6, 10000.0)
    assert "lm_head.weight" in model.state_dict()

    # tokenizer: same ids as the source, special tokens whole, the file's special tokens and template
    for text in TEXTS:
        assert tok.encode(text) == source_tokenizer.encode(text), text
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("<|im_start|>") == [source_tokenizer.backend.token_to_id("<|im_start|>")]
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert tok.chat_template == CHAT_TEMPLATE

    # logits: the imported model matches the source weights (q/k permutation undone)
    ids = torch.tensor([tok.encode(TEXTS[1])])
    with torch.no_grad():
        expected = hf(ids).logits
        got = model.lm_logits(model(ids))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_unpermute_inverts_llama_cpp_permutation():
    w = np.arange(6 * 8 * 5, dtype=np.float32).reshape(6 * 8, 5)  # 6 heads of size 8
    for n_head in (6, 3, 2):
        permuted = llama_cpp_permute(w, n_head)
        assert not np.array_equal(permuted, w)
        np.testing.assert_array_equal(unpermute_qk(permuted, n_head), w)
        np.testing.assert_array_equal(permute_qk(w, n_head), permuted)


def test_digit_pre_tokenizer(tmp_path, tiny_corpus):
    """tokenizer.ggml.pre "smollm" (StarCoder style) isolates every digit before the GPT-2 regex."""
    numbers = ["in 2024 and 2024, then 2024 again: 2024 2024"] * 20
    source = Tokenizer.train(tiny_corpus.split("\n\n") + numbers, vocab_size=300, show_progress=False)
    source.backend.add_special_tokens(CONTROL)
    assert len(source.encode(" 2024")) < 5  # the merges join digits: the GPT-2 regex alone would keep "2024"
    hf = tiny_hf_llama(source.vocab_size, tied=True)
    write_gguf(tmp_path / "digits.gguf", hf, source, pre="smollm")
    _, _, tok = read_gguf(tmp_path / "digits.gguf")
    assert [tok.decode([i]) for i in tok.encode("x 2024")] == ["x", " ", "2", "0", "2", "4"]
    assert tok.encode("the cat") == source.encode("the cat")


def test_unsupported_files_are_refused(tmp_path):
    with pytest.raises(GGUFError, match="architecture"):
        config_from_metadata({"general.architecture": "falcon"}, tied=True)
    with pytest.raises(GGUFError, match="llama.context_length is missing"):
        config_from_metadata({"general.architecture": "llama", "llama.embedding_length": 32,
                              "llama.attention.head_count": 4, "llama.vocab_size": 10}, tied=True)
    with pytest.raises(GGUFError, match="scaling"):
        config_from_metadata({"general.architecture": "llama", "llama.rope.scaling.type": "yarn"}, tied=True)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(GGUFError, match="bad.gguf"):
        read_gguf(bad)
    with pytest.raises(FileNotFoundError):
        read_gguf(tmp_path / "missing.gguf")


# --------------------------------------------------------------------------------------------------------
# the real SmolLM2-135M-Instruct (fetches 93 MB on first use; ~1 minute of CPU)
# --------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smollm2_matches_transformers(tmp_path):
    pytest.importorskip("accelerate")  # transformers needs it to load GGUF files
    from backbone.data.download import fetch
    from backbone.gguf import SMOLLM2_FILE, SMOLLM2_SOURCE, import_smollm2

    out = import_smollm2(tmp_path / "smollm2")
    model, tok = load_backbone(out)
    c = model.config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.vocab_size, c.tie_embeddings) == (30, 576, 9, 3, 49152, True)
    assert 134e6 < model.num_params() < 135e6

    path = fetch(SMOLLM2_SOURCE) / SMOLLM2_FILE
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    htok = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    chat = htok.apply_chat_template([{"role": "user", "content": "What is 12 + 345?"}], tokenize=False,
                                    add_generation_prompt=True)
    for text in [*TEXTS, chat, "x = [1, 22, 333, 4444]\nfor i in range(10):\n    print(i)"]:
        assert tok.encode(text) == htok.encode(text, add_special_tokens=False), text
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|im_end|>", None)
    assert tok.chat_template == htok.chat_template

    ids = torch.tensor([tok.encode(chat + "The answer is 357.")])
    with torch.no_grad():
        torch.testing.assert_close(model.lm_logits(model(ids)), hf(ids).logits, atol=1e-3, rtol=1e-4)

"""Parity with Hugging Face transformers on random tiny GPT-2 and Llama configs (fp32)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from backbone.generate import GenerationConfig, generate  # noqa: E402
from backbone.interop import (  # noqa: E402
    config_from_hf,
    config_to_hf,
    from_hf,
    state_dict_from_hf,
    state_dict_to_hf,
    to_hf,
)
from backbone.model import GPT  # noqa: E402

PAD = 0
NEW_TOKENS = 32


def hf_gpt2(tied: bool = True):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=256, n_positions=96, n_embd=32, n_layer=2, n_head=4, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None, pad_token_id=PAD,
        tie_word_embeddings=tied,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    _sharpen(model)
    return model


def hf_llama(tied: bool = False):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=96, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=tied, attention_bias=False, mlp_bias=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=PAD,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    _sharpen(model)
    return model


def _sharpen(model) -> None:
    """Random init at std 0.02 gives near-uniform next-token distributions, where greedy and beam search
    hinge on 1e-7 differences; larger weights give decisive (but still random) choices."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
            elif "norm" in name or "ln" in name:
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0.0, 0.05)


MODELS = {"gpt2": hf_gpt2, "gpt2-untied": lambda: hf_gpt2(tied=False), "llama": hf_llama,
          "llama-tied": lambda: hf_llama(tied=True)}


@pytest.fixture(params=list(MODELS), scope="module")
def pair(request):
    hf = MODELS[request.param]()
    return hf, from_hf(hf)


def left_padded_batch():
    torch.manual_seed(1)
    short, long = torch.randint(1, 256, (5,)), torch.randint(1, 256, (11,))
    ids = torch.full((2, 11), PAD)
    mask = torch.zeros(2, 11, dtype=torch.long)
    ids[0, 6:], mask[0, 6:] = short, 1
    ids[1], mask[1] = long, 1
    return ids, mask


def test_config_from_hf(pair):
    hf, ours = pair
    c = ours.config
    if hf.config.model_type == "llama":
        assert (c.positions, c.norm, c.mlp, c.bias) == ("rope", "rmsnorm", "swiglu", False)
        assert (c.n_head, c.n_kv_head, c.intermediate_size, c.norm_eps) == (4, 2, 64, 1e-6)
    else:
        assert (c.positions, c.norm, c.mlp, c.bias) == ("learned", "layernorm", "gelu", True)
        assert c.n_kv_head == c.n_head == 4
    assert c.tie_embeddings == hf.config.tie_word_embeddings
    assert (c.vocab_size, c.n_embd, c.n_layer, c.block_size) == (256, 32, 2, 96)
    assert ours.num_params() == sum(p.numel() for p in hf.parameters())


def test_logits_match(pair):
    hf, ours = pair
    idx = torch.randint(0, 256, (3, 20))
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours.lm_logits(ours(idx))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_logits_match_with_padding(pair):
    hf, ours = pair
    ids, mask = left_padded_batch()
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, position_ids=position_ids).logits
        got = ours.lm_logits(ours(ids, mask))
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)


def test_to_hf_round_trip(pair):
    hf, ours = pair
    back = to_hf(ours)
    assert type(back) is type(hf)
    ref = hf.state_dict()
    got = back.state_dict()
    for name, tensor in ref.items():
        if name.endswith(("attn.bias", "attn.masked_bias")):  # GPT-2 causal-mask buffers, not weights
            continue
        torch.testing.assert_close(got[name], tensor, atol=0, rtol=0, msg=name)
    idx = torch.randint(0, 256, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, ours.lm_logits(ours(idx)), atol=1e-4, rtol=1e-4)
    again = from_hf(back)
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], tensor, atol=0, rtol=0, msg=name)


LLAMA_SHAPE = dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2)
SHAPES = [{}, {"tie_embeddings": False}, LLAMA_SHAPE, {**LLAMA_SHAPE, "tie_embeddings": False}]


@pytest.mark.parametrize("shape", SHAPES,
                         ids=["gpt2", "gpt2-untied", "llama", "llama-untied"])
def test_weight_table_round_trip(make_model, shape):
    """One weight-name table drives both directions: every gptsuite tensor is named in it (nothing is left
    over either way), and export then import gives every tensor back bit for bit."""
    model = make_model(**shape)
    ours = model.state_dict()
    theirs = state_dict_to_hf(ours, model.config)
    back = state_dict_from_hf(theirs, model.config)
    expected = set(ours) - ({"lm_head.weight"} if model.config.tie_embeddings else set())
    assert set(back) == expected
    for name in expected:
        torch.testing.assert_close(back[name], ours[name], atol=0, rtol=0, msg=name)


def _hf_generate(hf, ids, mask, **kwargs):
    with torch.no_grad():
        return hf.generate(
            ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, min_new_tokens=0, do_sample=False,
            pad_token_id=PAD, eos_token_id=None, **kwargs,
        )


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generate_matches_transformers(pair, num_beams):
    hf, ours = pair
    torch.manual_seed(2)
    ids = torch.randint(1, 256, (1, 7))
    expected = _hf_generate(hf, ids, torch.ones_like(ids), num_beams=num_beams, length_penalty=1.0)
    got = generate(ours, ids, config=GenerationConfig(max_new_tokens=NEW_TOKENS, num_beams=num_beams))
    assert got.shape == (1, 7 + NEW_TOKENS)
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize("num_beams", [1, 4])
def test_generate_batched_left_padded_matches_transformers(pair, num_beams):
    hf, ours = pair
    ids, mask = left_padded_batch()
    expected = _hf_generate(hf, ids, mask, num_beams=num_beams, length_penalty=1.0)
    got = generate(ours, ids, mask, GenerationConfig(max_new_tokens=NEW_TOKENS, num_beams=num_beams))
    assert got[:, 11:].tolist() == expected[:, 11:].tolist()


def test_unconvertible_configs_raise(make_model):
    with pytest.raises(ValueError, match="transformers equivalent"):
        config_to_hf(make_model(positions="sinusoidal").config)
    with pytest.raises(ValueError, match="n_kv_head"):
        config_to_hf(make_model(n_kv_head=2).config)
    bad = transformers.GPT2Config(activation_function="relu")
    with pytest.raises(ValueError, match="activation"):
        config_from_hf(bad)


def test_from_hf_model_is_a_gpt(pair):
    _, ours = pair
    assert isinstance(ours, GPT) and not ours.training


def test_llama_parity_model_is_not_degenerate():
    """Guards the generation tests above: with near-uniform or self-repeating models, 'identical to
    transformers' would prove little. The random Llama must produce varied text where beam != greedy."""
    ours = from_hf(hf_llama())
    ids, mask = left_padded_batch()
    greedy = generate(ours, ids, mask, max_new_tokens=NEW_TOKENS)
    beam = generate(ours, ids, mask, max_new_tokens=NEW_TOKENS, num_beams=4)
    assert len(set(greedy[0, 11:].tolist())) > 8
    assert not torch.equal(greedy, beam)


def _until_eos(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos) + 1] if eos in row else row


@pytest.mark.parametrize("num_beams", [1, 4])
@pytest.mark.parametrize("position", [3, 10])
def test_generate_with_eos_matches_transformers(num_beams, position):
    """With an eos that the model does produce, stopping (greedy) and finished-hypothesis scoring (beam, with
    a length penalty) agree with transformers."""
    hf = hf_llama()
    ours = from_hf(hf)
    ids, mask = left_padded_batch()
    free = generate(ours, ids, mask, max_new_tokens=NEW_TOKENS, num_beams=num_beams)
    eos = free[1, 11 + position].item()
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, min_new_tokens=0,
                               do_sample=False, pad_token_id=PAD, eos_token_id=eos, num_beams=num_beams,
                               length_penalty=0.8)
    got = generate(ours, ids, mask, max_new_tokens=NEW_TOKENS, num_beams=num_beams, eos_token_id=eos,
                   length_penalty=0.8)
    for g, e in zip(got[:, 11:].tolist(), expected[:, 11:].tolist()):
        assert _until_eos(g, eos) == _until_eos(e, eos)

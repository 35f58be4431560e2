"""GPT: shapes for every flavour, math path == SDPA, masks, padding, KV cache, init, positions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from backbone.config import GPTConfig
from backbone.model import GPT, RotaryEmbedding, apply_rotary, sinusoidal_table

FLAVOURS = list(itertools.product(["learned", "sinusoidal", "rope"], ["layernorm", "rmsnorm"], ["gelu", "swiglu"],
                                  [4, 2]))
FLAVOUR_IDS = [f"{p}-{n}-{m}-kv{k}" for p, n, m, k in FLAVOURS]


def flavour(positions, norm, mlp, n_kv_head, seed=0, **extra) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig.from_preset("nano", positions=positions, norm=norm, mlp=mlp, n_kv_head=n_kv_head, **extra)
    return GPT(config).eval()


def left_pad(seqs: list[torch.Tensor], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = s
        mask[i, width - len(s) :] = 1
    return ids, mask


@pytest.mark.parametrize(("positions", "norm", "mlp", "n_kv_head"), FLAVOURS, ids=FLAVOUR_IDS)
def test_forward_shape_every_flavour(positions, norm, mlp, n_kv_head):
    model = flavour(positions, norm, mlp, n_kv_head, bias=norm == "layernorm")
    idx = torch.randint(0, 512, (3, 7))
    with torch.no_grad():
        hidden = model(idx)
        logits = model.lm_logits(hidden)
    assert hidden.shape == (3, 7, 32)
    assert logits.shape == (3, 7, 512)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("positions", "norm", "mlp", "n_kv_head"), FLAVOURS, ids=FLAVOUR_IDS)
def test_math_path_equals_sdpa(positions, norm, mlp, n_kv_head):
    model = flavour(positions, norm, mlp, n_kv_head)
    idx = torch.randint(0, 512, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # row 1 is left-padded
    with torch.no_grad():
        for m in (None, mask):
            fast, _ = model._run(idx, m, None, None, need_weights=False)
            slow, weights = model._run(idx, m, None, None, need_weights=True)
            torch.testing.assert_close(slow, fast, atol=1e-5, rtol=1e-5)
            assert len(weights) == model.config.n_layer
            assert weights[0].shape == (2, 4, 9, 9)
        assert all(w is None for w in model._run(idx, None, None, None, need_weights=False)[1])


def test_attention_weights_are_causal_distributions(make_model):
    model = make_model(n_kv_head=2)
    idx = torch.randint(0, 512, (2, 10))
    weights = model.attention_weights(idx)
    assert len(weights) == 2
    for w in weights:
        assert w.shape == (2, 4, 10, 10)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 10))
        above = torch.ones(10, 10, dtype=torch.bool).triu(diagonal=1)
        assert (w[..., above] == 0).all()
        assert (w[..., ~above] > 0).all()  # softmax never reaches exactly zero inside the causal window


def test_attention_weights_ignore_padding_keys(make_model):
    model = make_model()
    idx = torch.randint(0, 512, (1, 8))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    for w in model.attention_weights(idx, mask):
        real = w[0, :, 3:]  # queries at real positions
        assert (real[..., :3] == 0).all()
        torch.testing.assert_close(real.sum(-1), torch.ones(4, 5))


@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
@pytest.mark.parametrize("n_kv_head", [4, 2])
def test_left_padding_matches_unpadded(positions, n_kv_head, make_model):
    model = make_model(positions=positions, n_kv_head=n_kv_head)
    short, long = torch.randint(1, 512, (5,)), torch.randint(1, 512, (9,))
    ids, mask = left_pad([short, long], pad=0)
    with torch.no_grad():
        batched = model(ids, mask)
        alone_short = model(short[None])
        alone_long = model(long[None])
    torch.testing.assert_close(batched[0, 4:], alone_short[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[1], alone_long[0], atol=1e-5, rtol=1e-5)
    # and the padded row's real outputs do not depend on what the pad token is
    with torch.no_grad():
        other_pad = model(ids.masked_fill(mask == 0, 7), mask)
    torch.testing.assert_close(other_pad[0, 4:], batched[0, 4:], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(("positions", "norm", "mlp", "n_kv_head"), FLAVOURS[::3], ids=FLAVOUR_IDS[::3])
def test_kv_cache_incremental_equals_full(positions, norm, mlp, n_kv_head):
    model = flavour(positions, norm, mlp, n_kv_head)
    idx = torch.randint(0, 512, (2, 12))
    with torch.no_grad():
        full = model.lm_logits(model(idx))
        cache = model.new_cache(2, 12)
        steps = [model.lm_logits(model(idx[:, :5], cache=cache))]  # prefill 5
        for t in range(5, 12):
            steps.append(model.lm_logits(model(idx[:, t : t + 1], cache=cache)))
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_kv_cache_with_left_padding(positions, make_model):
    model = make_model(positions=positions, n_kv_head=2)
    ids, mask = left_pad([torch.randint(1, 512, (4,)), torch.randint(1, 512, (7,))])
    extra = torch.randint(1, 512, (2, 3))
    full_ids = torch.cat([ids, extra], dim=1)
    full_mask = torch.cat([mask, torch.ones(2, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        full = model(full_ids, full_mask)
        cache = model.new_cache(2, full_ids.size(1))
        parts = [model(ids, mask, cache=cache)]
        for t in range(3):
            parts.append(model(extra[:, t : t + 1], full_mask[:, : ids.size(1) + t + 1], cache=cache))
    got = torch.cat(parts, dim=1)
    torch.testing.assert_close(got[full_mask.bool()], full[full_mask.bool()], atol=1e-5, rtol=1e-5)


def test_kv_cache_overflow_raises(make_model):
    model = make_model()
    cache = model.new_cache(1, 4)
    with torch.no_grad():
        model(torch.zeros(1, 4, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="cache"):
            model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_gpt2_init_scales_residual_projections():
    torch.manual_seed(0)
    n_layer = 8
    model = GPT(GPTConfig(vocab_size=1000, block_size=64, n_layer=n_layer, n_head=4, n_embd=256))
    target = 0.02 / math.sqrt(2 * n_layer)
    for i in range(n_layer):
        block = model.transformer.h[i]
        for w in (block.attn.c_proj.weight, block.mlp.c_proj.weight):
            assert w.std().item() == pytest.approx(target, rel=0.03)
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert block.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.03)
        assert (block.attn.c_attn.bias == 0).all() and (block.mlp.c_proj.bias == 0).all()
        assert (block.ln_1.weight == 1).all()
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.03)


def test_tied_embeddings_share_storage(make_model):
    tied = make_model()
    assert tied.lm_head.weight.data_ptr() == tied.transformer.wte.weight.data_ptr()
    assert tied.lm_head.weight is tied.transformer.wte.weight
    with torch.no_grad():
        tied.transformer.wte.weight[3, 0] = 42.0
    assert tied.lm_head.weight[3, 0].item() == 42.0
    untied = make_model(tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.transformer.wte.weight.data_ptr()
    assert untied.num_params() == tied.num_params() + 512 * 32


def test_sinusoidal_table_formula():
    d = 16
    table = sinusoidal_table(50, d)
    assert table.shape == (50, d)
    for p, i in [(0, 0), (1, 0), (7, 3), (49, 7), (13, 5)]:
        angle = p / 10000 ** (2 * i / d)
        assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
        assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_sinusoidal_model_adds_table(make_model):
    model = make_model(positions="sinusoidal")
    assert not any("wpe" in n for n, _ in model.named_parameters())
    torch.testing.assert_close(model.sinusoid, sinusoidal_table(64, 32))


def test_rope_dot_product_depends_only_on_offset():
    torch.manual_seed(0)
    hs = 16
    rope = RotaryEmbedding(hs, theta=10000.0)
    q, k = torch.randn(1, 1, 1, hs), torch.randn(1, 1, 1, hs)

    def score(p_q: int, p_k: int) -> float:
        cq, sq = rope(torch.tensor([[p_q]]), torch.float32)
        ck, sk = rope(torch.tensor([[p_k]]), torch.float32)
        return (apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum().item()

    for offset in (0, 1, 5):
        ref = score(offset, 0)
        for start in (3, 10, 40):
            assert score(start + offset, start) == pytest.approx(ref, abs=1e-4)
    assert score(5, 0) != pytest.approx(score(6, 0), abs=1e-3)  # but it does depend on the offset
    # rotation preserves the norm
    c, s = rope(torch.tensor([[17]]), torch.float32)
    assert apply_rotary(q, c, s).norm().item() == pytest.approx(q.norm().item(), rel=1e-5)


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_block_size_exceeded_raises(positions, make_model):
    model = make_model(positions=positions)
    with torch.no_grad():
        model(torch.zeros(1, 64, dtype=torch.long))  # exactly block_size is fine
        with pytest.raises(ValueError, match="block_size"):
            model(torch.zeros(1, 65, dtype=torch.long))
        cache = model.new_cache(1, 80)
        model(torch.zeros(1, 64, dtype=torch.long), cache=cache)
        with pytest.raises(ValueError, match="block_size"):
            model(torch.zeros(1, 1, dtype=torch.long), cache=cache)


def test_attention_mask_shape_checked(make_model):
    model = make_model()
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))


def test_dropout_only_in_training(make_model):
    model = make_model(dropout=0.5)
    idx = torch.randint(0, 512, (2, 8))
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(model(idx), model(idx))
        model.train()
        assert not torch.allclose(model(idx), model(idx))


def test_backward_reaches_every_parameter(make_model):
    model = make_model(positions="rope", n_kv_head=2).train()
    idx = torch.randint(0, 512, (2, 8))
    logits = model.lm_logits(model(idx))
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 512), idx[:, 1:].reshape(-1))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert loss.item() == pytest.approx(math.log(512), rel=0.05)  # near-uniform at init


def test_math_path_with_kv_cache(make_model):
    """The explicit path also serves incremental decoding: its last query row sees every cached key."""
    model = make_model(positions="rope", n_kv_head=2)
    idx = torch.randint(0, 512, (2, 8))
    with torch.no_grad():
        full, _ = model._run(idx, None, None, None, need_weights=False)
        cache = model.new_cache(2, 8)
        parts = [model._run(idx[:, :5], None, None, cache, need_weights=True)[0]]
        for t in range(5, 8):
            hidden, weights = model._run(idx[:, t : t + 1], None, None, cache, need_weights=True)
            assert weights[0].shape == (2, 4, 1, t + 1)
            assert (weights[0] > 0).all()
            parts.append(hidden)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_reorder_keeps_drops_and_repeats_rows():
    """reorder: a subset in order moves rows down in place; any other index (repeats, a new order) copies into
    a new buffer; either way the filled positions of each chosen row come along and the cache keeps growing."""
    from backbone.kv_cache import KVCache

    config = GPTConfig(vocab_size=32, block_size=16, n_layer=2, n_head=2, n_embd=8)
    cache = KVCache(config, batch_size=4, max_len=6)
    rows = torch.arange(4.0).view(1, 4, 1, 1, 1)
    filled = rows.expand(2, 4, config.n_kv_head, 3, config.head_size).clone()
    cache.k[:, :, :, :3], cache.v[:, :, :, :3] = filled, -filled
    cache.length = 3
    before = cache.k
    cache.reorder(torch.tensor([1, 3]))  # drop rows 0 and 2
    assert cache.k.data_ptr() == before.data_ptr()  # in place
    assert cache.k[:, :, :, :3].amax(dim=(0, 2, 3, 4)).tolist() == [1.0, 3.0]
    assert cache.v[:, :, :, :3].amin(dim=(0, 2, 3, 4)).tolist() == [-1.0, -3.0]
    cache.reorder(torch.tensor([1, 1, 0]))  # repeats: a new buffer
    assert cache.k[:, :, :, :3].amax(dim=(0, 2, 3, 4)).tolist() == [3.0, 3.0, 1.0]
    k, v = cache.update(0, torch.full((3, config.n_kv_head, 1, config.head_size), 9.0),
                        torch.zeros(3, config.n_kv_head, 1, config.head_size))
    assert k.shape[:3] == (3, config.n_kv_head, 4) and bool((k[:, :, 3] == 9).all())

"""Decoding: every strategy, its invariants, the context policy and bad arguments."""

from __future__ import annotations

import pytest
import torch

from backbone.generate import GenerationConfig, beam_search, generate, generate_text, stream
from backbone.logits import apply_repetition_penalty, ban_repeated_ngrams, filter_min_p, filter_top_k, filter_top_p


@pytest.fixture
def model(make_model):
    return make_model(seed=0, positions="rope", n_kv_head=2)


@pytest.fixture
def text_model(make_model, tiny_tokenizer):
    """A random GPT whose vocabulary is exactly the tiny tokenizer's, so every id decodes."""
    return make_model(seed=3, vocab_size=tiny_tokenizer.vocab_size)


def prompt(length: int = 6, seed: int = 0, batch: int = 1) -> torch.Tensor:
    return torch.randint(1, 512, (batch, length), generator=torch.Generator().manual_seed(seed))


def ngrams(seq: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


# --- equivalences ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_cached_equals_uncached_greedy(make_model, positions):
    model = make_model(positions=positions)
    ids = prompt(batch=2)
    cached = generate(model, ids, max_new_tokens=20)
    uncached = generate(model, ids, max_new_tokens=20, use_cache=False)
    assert cached.shape == (2, 26)
    assert torch.equal(cached[:, :6], ids)
    assert torch.equal(cached, uncached)


def test_cached_equals_uncached_sampled(model):
    ids = prompt()
    kw = dict(max_new_tokens=20, temperature=1.0, seed=123)
    assert torch.equal(generate(model, ids, **kw), generate(model, ids, use_cache=False, **kw))


def test_cached_equals_uncached_beam(model):
    ids = prompt(batch=2)
    kw = dict(max_new_tokens=12, num_beams=3)
    assert torch.equal(generate(model, ids, **kw), generate(model, ids, use_cache=False, **kw))


def test_beam_with_one_beam_is_greedy(model):
    ids = prompt(batch=2)
    greedy = generate(model, ids, max_new_tokens=16)
    assert torch.equal(beam_search(model, ids, config=GenerationConfig(max_new_tokens=16, num_beams=1)), greedy)


def test_greedy_follows_argmax(model):
    ids = prompt()
    out = generate(model, ids, max_new_tokens=5)
    with torch.no_grad():
        for t in range(5):
            logits = model.lm_logits(model(out[:, : 6 + t]))[:, -1]
            assert out[0, 6 + t].item() == logits.argmax(-1).item()


def test_seed_reproducibility(model):
    ids = prompt()
    kw = dict(max_new_tokens=24, temperature=1.5)
    a = generate(model, ids, seed=7, **kw)
    b = generate(model, ids, seed=7, **kw)
    c = generate(model, ids, seed=8, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, generate(model, ids, max_new_tokens=24))  # high temperature is not greedy


def test_top_k_one_is_greedy(model):
    ids = prompt(batch=2)
    greedy = generate(model, ids, max_new_tokens=16)
    assert torch.equal(generate(model, ids, max_new_tokens=16, temperature=2.0, top_k=1, seed=0), greedy)


def test_tiny_top_p_is_greedy(model):
    ids = prompt(batch=2)
    greedy = generate(model, ids, max_new_tokens=16)
    assert torch.equal(generate(model, ids, max_new_tokens=16, temperature=2.0, top_p=1e-6, seed=0), greedy)


def test_min_p_near_one_is_greedy(model):
    ids = prompt(batch=2)
    greedy = generate(model, ids, max_new_tokens=16)
    assert torch.equal(generate(model, ids, max_new_tokens=16, temperature=1.0, min_p=0.999, seed=0), greedy)


# --- the logits processors -------------------------------------------------------------------------------
def test_filter_top_k():
    scores = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isinf(filter_top_k(scores, 2)).tolist() == [[True, False, False, True]]
    assert torch.equal(filter_top_k(scores, 0), scores)


def test_filter_top_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = ~torch.isinf(filter_top_p(probs.log(), 0.7))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 < 0.7, 0.5 + 0.3 reaches it
    kept = ~torch.isinf(filter_top_p(probs.log(), 0.8))
    assert kept.tolist() == [[True, True, False, False]]
    kept = ~torch.isinf(filter_top_p(probs.log().flip(-1), 0.9))  # order must not matter
    assert kept.tolist() == [[False, True, True, True]]


def test_filter_min_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = ~torch.isinf(filter_min_p(probs.log(), 0.2))  # threshold 0.2 * 0.5 = 0.1
    assert kept.tolist() == [[True, True, True, False]]


def test_min_p_restricts_sampling(model):
    """With min_p, every sampled token had probability >= min_p * max probability at its step."""
    ids = prompt()
    out = generate(model, ids, max_new_tokens=12, temperature=1.0, min_p=0.5, seed=1)
    with torch.no_grad():
        probs = model.lm_logits(model(out[:, :-1]))[0, 5:].softmax(-1)  # distributions for the 12 new tokens
    chosen = probs.gather(-1, out[0, 6:, None]).squeeze(-1)
    assert (chosen >= 0.5 * probs.max(-1).values - 1e-6).all()


def test_repetition_penalty_is_ctrl():
    scores = torch.tensor([[2.0, -2.0, 1.0, -1.0, 0.5]])
    tokens = torch.tensor([[0, 1, 1]])
    out = apply_repetition_penalty(scores, tokens, torch.ones_like(tokens), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0, 0.5]]  # seen: positive / 2, negative * 2; unseen unchanged


def test_repetition_penalty_ignores_padding_but_not_repeats_of_the_pad_id():
    scores = torch.tensor([[2.0, 2.0, 2.0]])
    # token 0 is both a pad (masked) and a real token; token 1 only a pad; token 2 real
    tokens = torch.tensor([[1, 0, 0, 2]])
    mask = torch.tensor([[0, 0, 1, 1]])
    assert apply_repetition_penalty(scores, tokens, mask, 2.0).tolist() == [[1.0, 2.0, 1.0]]
    tokens = torch.tensor([[0, 2, 0, 1]])  # a masked duplicate after the real one must not unmark it
    mask = torch.tensor([[1, 1, 0, 0]])
    assert apply_repetition_penalty(scores, tokens, mask, 2.0).tolist() == [[1.0, 2.0, 1.0]]


def test_repetition_penalty_matches_transformers():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    scores = torch.randn(2, 50)
    tokens = torch.randint(0, 50, (2, 12))
    expected = transformers.RepetitionPenaltyLogitsProcessor(1.3)(tokens, scores.clone())
    torch.testing.assert_close(apply_repetition_penalty(scores, tokens, torch.ones_like(tokens), 1.3), expected)


def test_repetition_penalty_changes_generation(model):
    ids = prompt()
    plain = generate(model, ids, max_new_tokens=20)[0, 6:].tolist()
    penalised = generate(model, ids, max_new_tokens=20, repetition_penalty=5.0)[0, 6:].tolist()
    assert plain != penalised
    assert len(set(penalised)) >= len(set(plain))


def test_ban_repeated_ngrams_unit():
    tokens = torch.tensor([[5, 6, 7, 5, 6]])
    scores = torch.zeros(1, 10)
    banned = torch.isinf(ban_repeated_ngrams(scores, tokens, torch.ones_like(tokens), 3))
    assert banned.nonzero()[:, 1].tolist() == [7]  # "5 6" was followed by 7
    banned = torch.isinf(ban_repeated_ngrams(scores, tokens, torch.ones_like(tokens), 1))
    assert banned.nonzero()[:, 1].tolist() == [5, 6, 7]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_size_forbids_repeats(make_model, n):
    model = make_model(seed=0)
    ids = prompt(length=4)
    plain = generate(model, ids, max_new_tokens=40)[0].tolist()
    assert len(set(ngrams(plain, n))) < len(ngrams(plain, n)), "the plain model should repeat itself"
    out = generate(model, ids, max_new_tokens=40, no_repeat_ngram_size=n)[0].tolist()
    assert len(set(ngrams(out, n))) == len(ngrams(out, n))
    beam = generate(model, ids, max_new_tokens=20, no_repeat_ngram_size=n, num_beams=3)[0].tolist()
    assert len(set(ngrams(beam, n))) == len(ngrams(beam, n))


# --- stopping --------------------------------------------------------------------------------------------
def test_eos_stops(model):
    ids = prompt(batch=1)
    free = generate(model, ids, max_new_tokens=20)[0, 6:].tolist()
    eos = free[4]
    first = free.index(eos)
    out = generate(model, ids, max_new_tokens=20, eos_token_id=eos)
    assert out[0, 6:].tolist() == free[: first + 1]


def test_eos_in_batch_fills_finished_rows(model):
    ids = prompt(batch=2)
    free = generate(model, ids, max_new_tokens=20)[:, 6:]
    eos = free[0, 3].item()
    out = generate(model, ids, max_new_tokens=20, eos_token_id=eos)[:, 6:]
    row0 = free[0].tolist()
    k = row0.index(eos)
    assert out[0, : k + 1].tolist() == row0[: k + 1]
    assert (out[0, k:] == eos).all()
    row1 = free[1].tolist()
    if eos in row1:  # both rows stop when both have hit eos
        assert out.size(1) == max(k, row1.index(eos)) + 1
    else:
        assert out.size(1) == 20 and out[1].tolist() == row1


@pytest.mark.parametrize("position", [0, 2, 5])
def test_beam_eos_ends_hypotheses(model, position):
    """A finished hypothesis ends at its eos (then eos padding); an unfinished one runs to max_new_tokens."""
    ids = prompt(batch=2)
    free = generate(model, ids, max_new_tokens=12, num_beams=3)[:, 6:]
    eos = free[0, position].item()
    out = generate(model, ids, max_new_tokens=12, num_beams=3, eos_token_id=eos)[:, 6:].tolist()
    for row in out:
        if eos in row:
            assert all(t == eos for t in row[row.index(eos) :])
        else:
            assert len(row) == 12


def test_stop_string_cuts_text(text_model, tiny_tokenizer):
    free = generate_text(text_model, tiny_tokenizer, "The fox", max_new_tokens=24, eos_token_id=-1)[0]
    assert len(free) > 6
    stop = free[3:5]
    cut = generate_text(text_model, tiny_tokenizer, "The fox", max_new_tokens=24, eos_token_id=-1, stop=stop)[0]
    assert cut == free[: free.index(stop)]
    assert stop not in cut


def test_stop_string_stops_decoding(text_model, tiny_tokenizer):
    """Decoding ends when the stop string appears, rather than running to max_new_tokens and cutting after."""
    calls = []
    text_model.register_forward_hook(lambda *_: calls.append(1))
    free = generate_text(text_model, tiny_tokenizer, "The fox", max_new_tokens=24, eos_token_id=-1)[0]
    n_free = len(calls)
    calls.clear()
    generate_text(text_model, tiny_tokenizer, "The fox", max_new_tokens=24, eos_token_id=-1, stop=free[:2])
    assert len(calls) < n_free == 24


def test_eos_cuts_text(text_model, tiny_tokenizer):
    ids = torch.tensor([tiny_tokenizer.encode("The fox")])
    gen = generate(text_model, ids, max_new_tokens=16)[0, ids.size(1) :].tolist()
    eos = gen[5]
    text = generate_text(text_model, tiny_tokenizer, "The fox", max_new_tokens=16, eos_token_id=eos)[0]
    assert text == tiny_tokenizer.decode(gen[: gen.index(eos)])


@pytest.mark.parametrize(
    "options",
    [dict(), dict(temperature=1.0, seed=5), dict(stop="e"), dict(stop=["xx", " t"], temperature=0.8, seed=2)],
    ids=["greedy", "sampled", "stop", "stops-sampled"],
)
def test_stream_concatenation_equals_generate_text(text_model, tiny_tokenizer, options):
    expected = generate_text(text_model, tiny_tokenizer, "Once upon a time", max_new_tokens=30, **options)[0]
    pieces = list(stream(text_model, tiny_tokenizer, "Once upon a time", max_new_tokens=30, **options))
    assert "".join(pieces) == expected
    assert all(p for p in pieces)
    assert "\ufffd" not in "".join(pieces[:-1]) or "\ufffd" in expected


def test_stream_rejects_beams(text_model, tiny_tokenizer):
    with pytest.raises(ValueError, match="num_beams"):
        list(stream(text_model, tiny_tokenizer, "hi", num_beams=2))


# --- batching --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("positions", ["learned", "sinusoidal", "rope"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_batched_prompts_equal_single(make_model, positions, num_beams):
    model = make_model(positions=positions)
    prompts = [prompt(3, seed=1)[0], prompt(9, seed=2)[0], prompt(6, seed=3)[0]]
    width = 9
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros(3, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :], mask[i, width - len(p) :] = p, 1
    batched = generate(model, ids, mask, max_new_tokens=12, num_beams=num_beams)
    for i, p in enumerate(prompts):
        alone = generate(model, p[None], max_new_tokens=12, num_beams=num_beams)
        assert batched[i, width:].tolist() == alone[0, len(p) :].tolist()


def test_batched_text_prompts_equal_single(text_model, tiny_tokenizer):
    prompts = ["The fox", "Once upon a time there was", "机器"]
    batched = generate_text(text_model, tiny_tokenizer, prompts, max_new_tokens=10)
    assert batched == [generate_text(text_model, tiny_tokenizer, p, max_new_tokens=10)[0] for p in prompts]


# --- arguments and the context policy --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [("top_p", 0.0), ("top_p", 1.5), ("top_k", -1), ("temperature", -1.0), ("num_beams", 0),
     ("max_new_tokens", 0), ("min_p", 1.0), ("repetition_penalty", 0.0), ("no_repeat_ngram_size", -1)],
)
def test_bad_arguments_raise_naming_them(model, name, value):
    with pytest.raises(ValueError, match=name):
        GenerationConfig(**{name: value})
    with pytest.raises(ValueError, match=name):
        generate(model, prompt(), **{name: value})


def test_empty_stop_string_rejected():
    with pytest.raises(ValueError, match="stop"):
        GenerationConfig(stop=[""])


def test_prompt_longer_than_block_size_raises(model):
    ids = prompt(length=70)  # block_size is 64
    with pytest.raises(ValueError, match="block_size"):
        generate(model, ids, max_new_tokens=4)
    with pytest.raises(ValueError, match="truncate_prompt"):
        generate(model, prompt(length=60), max_new_tokens=8)  # fits alone, not with the new tokens


@pytest.mark.parametrize("num_beams", [1, 2])
def test_truncate_prompt_keeps_last_tokens(model, num_beams):
    ids = prompt(length=70)
    out = generate(model, ids, max_new_tokens=8, truncate_prompt=True, num_beams=num_beams)
    keep = 64 - 8
    assert out.shape == (1, 64)
    assert torch.equal(out[:, :keep], ids[:, -keep:])
    assert torch.equal(out, generate(model, ids[:, -keep:], max_new_tokens=8, num_beams=num_beams))


def test_truncate_prompt_needs_room(model):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, prompt(length=10), max_new_tokens=64, truncate_prompt=True)


def test_generate_restores_training_mode(model):
    model.train()
    generate(model, prompt(), max_new_tokens=2)
    assert model.training


def test_low_temperature_is_greedy(model):
    ids = prompt(batch=2)
    greedy = generate(model, ids, max_new_tokens=16)
    assert torch.equal(generate(model, ids, max_new_tokens=16, temperature=1e-3, seed=0), greedy)
    assert not torch.equal(generate(model, ids, max_new_tokens=16, temperature=1.0, seed=0), greedy)


def test_stream_yields_before_decoding_ends(text_model, tiny_tokenizer):
    calls = []
    text_model.register_forward_hook(lambda *_: calls.append(1))
    pieces = stream(text_model, tiny_tokenizer, "Once upon a time", max_new_tokens=30, eos_token_id=-1)
    first = next(pieces)
    assert first and len(calls) < 30
    rest = list(pieces)
    assert len(rest) >= 3 and len(calls) == 30


def test_generation_config_describes_what_it_changes():
    from backbone.generate import GenerationConfig

    beam = GenerationConfig(max_new_tokens=96, num_beams=4, top_p=0.9, stop=("\n",), truncate_prompt=True)
    assert beam.describe() == {"decoding": "beam search (4 beams)", "max_new_tokens": 96, "num_beams": 4,
                               "stop": ["\n"], "truncate_prompt": True}  # top_p: beam search ignores it
    sample = GenerationConfig(temperature=0.8, top_p=0.95, seed=0)
    assert sample.describe() == {"decoding": "sampling", "max_new_tokens": 64, "temperature": 0.8, "top_p": 0.95,
                                 "seed": 0}
    assert GenerationConfig().describe() == {"decoding": "greedy", "max_new_tokens": 64}


# --- prompt-lookup decoding -------------------------------------------------------------------------------
def test_lookup_finds_the_continuation_of_the_latest_match():
    from backbone.prompt_lookup import lookup

    assert lookup([1, 2, 3, 9, 1, 2, 3, 7, 8, 1, 2, 3], ngram=3, draft=2) == [7, 8]  # the latest earlier match
    assert lookup([5, 6, 4, 6], ngram=3, draft=3) == [4, 6]  # falls back to the last token alone
    assert lookup([1, 2, 3], ngram=3, draft=4) == []


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_prompt_lookup_gives_greedy_decodings_tokens_in_fewer_passes(make_model, positions):
    from backbone.prompt_lookup import greedy_with_lookup

    flavour = {"rope": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2)}
    model = make_model(**flavour.get(positions, {"positions": positions})).eval()
    torch.manual_seed(0)
    passes = accepted = 0
    for seed in range(6):
        pattern = prompt(5, seed)
        ids = torch.cat([pattern, pattern, pattern[:, :3]], dim=1)  # a prompt that repeats itself
        greedy = generate(model, ids, config=GenerationConfig(max_new_tokens=24))
        looked = generate(model, ids, config=GenerationConfig(max_new_tokens=24, prompt_lookup=4))
        assert torch.equal(greedy, looked), seed
        out, stats = greedy_with_lookup(model, ids, 24, draft=4)
        assert torch.equal(out, greedy)
        passes, accepted = passes + stats["forward_passes"], accepted + stats["accepted"]
    assert accepted > 0 and passes < 6 * 24  # guesses were kept: fewer forward passes than tokens


def test_prompt_lookup_steps_aside_where_it_does_not_apply(model):
    from backbone.generate import lookup_applies

    mask = torch.ones(1, 4, dtype=torch.long)
    assert lookup_applies(GenerationConfig(prompt_lookup=3), mask)
    for cfg in (GenerationConfig(prompt_lookup=3, temperature=0.7), GenerationConfig(prompt_lookup=3, num_beams=2),
                GenerationConfig(prompt_lookup=3, repetition_penalty=1.2), GenerationConfig()):
        assert not lookup_applies(cfg, mask)
    assert not lookup_applies(GenerationConfig(prompt_lookup=3), torch.ones(2, 4, dtype=torch.long))


def test_rejected_guesses_leave_no_trace(model, monkeypatch):
    """Wrong guesses at every step (the cache must forget them) and right ones mixed in: still greedy."""
    import backbone.prompt_lookup as pl

    ids = prompt(8, seed=4)
    greedy = generate(model, ids, config=GenerationConfig(max_new_tokens=20))[0, 8:].tolist()
    for guesses in (lambda tokens, n, k: [7, 8, 9][:k],  # wrong
                    lambda tokens, n, k: greedy[len(tokens) - 8 :][:2][:k] + [5]):  # two right, then wrong
        monkeypatch.setattr(pl, "lookup", guesses)
        out, stats = pl.greedy_with_lookup(model, ids, 20, draft=3)
        assert out[0, 8:].tolist() == greedy and stats["drafted"] > stats["accepted"]


def test_finished_rows_leave_the_batch_without_changing_any_row(make_model):
    """Rows that stop at different steps are dropped from the computation (their cache rows too); every row
    still decodes (greedily) exactly as it does alone, whatever its padding."""
    from backbone.generate import iter_tokens

    model = make_model()
    prompts = [prompt(3, seed=1)[0], prompt(9, seed=2)[0], prompt(6, seed=3)[0], prompt(5, seed=4)[0]]
    width = 9
    ids = torch.zeros(4, width, dtype=torch.long)
    mask = torch.zeros(4, width, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = p, 1
    stop_after = torch.tensor([2, 7, 4, 12])  # row i stops after stop_after[i] tokens

    def stop_fn(generated):
        return torch.full((generated.size(0),), generated.size(1)) >= stop_after

    live_rows = []
    original = model.forward

    def counting_forward(idx, *args, **kwargs):
        live_rows.append(idx.size(0))
        return original(idx, *args, **kwargs)

    model.forward = counting_forward
    steps = [tok for tok, _ in iter_tokens(model, ids, mask, GenerationConfig(max_new_tokens=12), stop_fn)]
    batched = torch.stack(steps, dim=1)
    assert live_rows == [4, 4, 3, 3, 2, 2, 2, 1, 1, 1, 1, 1]  # rows leave as they finish
    for i, p in enumerate(prompts):
        alone = generate(model, p[None], max_new_tokens=int(stop_after[i]))[0, len(p):]
        assert batched[i, : int(stop_after[i])].tolist() == alone.tolist()
        assert (batched[i, int(stop_after[i]):] == 0).all()  # finished rows are filled


def test_int32_prompt_ids_decode(model):
    ids = prompt(batch=2).int()
    expected = generate(model, ids.long(), max_new_tokens=5)[:, 6:]
    assert torch.equal(generate(model, ids, max_new_tokens=5)[:, 6:], expected)


def test_prompt_lookup_equals_greedy_under_bf16_autocast(make_model):
    """Incremental steps run in fp32 whatever their length, so prompt lookup's multi-token checks and greedy's
    one-token steps compute alike on a bf16-mixed model (the prefill runs under autocast in both). Weights
    larger than the init make the logits decisive, so a bf16 rounding would show as a different token."""
    model = make_model(vocab_size=64, n_embd=64, block_size=128)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15)
    model.autocast_dtype = torch.bfloat16
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        base = torch.randint(1, 64, (1, 8), generator=generator)
        ids = torch.cat([base, base, base[:, :4]], dim=1)  # a repeated prompt: guesses are made and checked
        assert torch.equal(generate(model, ids, max_new_tokens=40),
                           generate(model, ids, max_new_tokens=40, prompt_lookup=4))

"""The block list in decoding: banned token sequences are never generated, in every decoding mode."""

from __future__ import annotations

import pytest
import torch

from backbone.generate import GenerationConfig, generate, generate_text, lookup_applies
from backbone.logits import ban_sequences, banned_sequences


def contains(seq: list[int], sub: tuple[int, ...]) -> bool:
    return any(tuple(seq[i : i + len(sub)]) == sub for i in range(len(seq) - len(sub) + 1))


def test_ban_sequences_unit():
    scores = torch.zeros(2, 6)
    tokens = torch.tensor([[1, 2, 3], [4, 2, 5]])
    mask = torch.ones_like(tokens)
    out = ban_sequences(scores, tokens, mask, ((4,), (2, 3, 1), (3, 0), (9, 9, 9, 9, 9)))
    # (4,) everywhere; (2, 3, 1) where the text ends in 2 3 (row 0); (3, 0) where it ends in 3 (row 0)
    assert out[:, 4].eq(float("-inf")).all()
    assert out[0, 1] == float("-inf") and out[1, 1] == 0
    assert out[0, 0] == float("-inf") and out[1, 0] == 0
    assert torch.isfinite(out[:, [2, 3, 5]]).all()
    assert ban_sequences(scores, tokens, mask, ()) is scores
    # left padding: a row whose last real tokens are [3] cannot match a prefix that reaches into its padding
    padded = torch.tensor([[0, 0, 3], [1, 0, 3]])
    out = ban_sequences(scores, padded, torch.tensor([[0, 0, 1], [1, 1, 1]]), ((0, 3, 2),))
    assert out[0, 2] == 0 and out[1, 2] == float("-inf")


@pytest.mark.parametrize("options", [{}, {"temperature": 1.0, "seed": 1}, {"num_beams": 3}])
def test_banned_sequences_never_appear(make_model, options):
    """The unbanned greedy / sampled / beam output contains the sequences; banned, they never appear."""
    model = make_model(seed=0, positions="rope")
    ids = torch.randint(1, 512, (2, 5), generator=torch.Generator().manual_seed(0))
    cfg = GenerationConfig(max_new_tokens=24, **options)
    free = generate(model, ids, config=cfg)[:, 5:].tolist()
    banned = (tuple(free[0][3:5]), (free[1][0],))  # a pair the model chose, and a single token
    assert contains(free[0], banned[0]) and contains(free[1], banned[1])
    blocked = generate(model, ids, config=cfg.replace(banned=banned))[:, 5:].tolist()
    for row in blocked:
        assert not any(contains(row, seq) for seq in banned)


def test_banned_words_cover_spellings_at_word_starts_and_the_block_list_turns_off_prompt_lookup(tiny_tokenizer):
    seqs = banned_sequences(tiny_tokenizer, ["movie", "", " Film "])
    texts = {tiny_tokenizer.decode(list(s)) for s in seqs}
    assert texts == {f"{start}{form}" for start in (" ", "\n")
                     for form in ("movie", "Movie", "MOVIE", "film", "Film", "FILM")}
    assert not lookup_applies(GenerationConfig(prompt_lookup=4, banned=seqs), torch.ones(1, 3, dtype=torch.long))


def test_a_banned_word_leaves_the_text(make_model, tiny_tokenizer):
    """A model that always says " the" (its final norm outputs that token's embedding) says it no more once "the" is
    on the block list, in any spelling."""
    model = make_model(seed=3, vocab_size=tiny_tokenizer.vocab_size)
    (the,) = tiny_tokenizer.encode(" the")
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(model.transformer.wte.weight[the] * 100)
    cfg = GenerationConfig(max_new_tokens=12)
    assert generate_text(model, tiny_tokenizer, "the", cfg)[0] == " the" * 12
    blocked = generate_text(model, tiny_tokenizer, ["the", "a movie"], cfg.replace(
        banned=banned_sequences(tiny_tokenizer, ["the"])))
    assert all(text and "the" not in text.lower() for text in blocked)


@pytest.mark.parametrize("bad", [((),), ((-1, 2),)])
def test_bad_banned_sequences_are_refused(bad):
    with pytest.raises(ValueError, match="banned"):
        GenerationConfig(banned=bad)

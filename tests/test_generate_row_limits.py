"""Per-prompt limits on new tokens (generate_text's row_max_new_tokens): each row ends at its own limit, with
the text it gets when decoded alone with that max_new_tokens."""

from __future__ import annotations

import pytest

from backbone.generate import generate_text


@pytest.fixture
def text_model(make_model, tiny_tokenizer):
    return make_model(seed=3, vocab_size=tiny_tokenizer.vocab_size)


def test_each_row_stops_at_its_limit(text_model, tiny_tokenizer):
    prompts = ["The fox", "Once upon a time", "The fox"]
    limits = [3, 12, 7]
    capped = generate_text(text_model, tiny_tokenizer, prompts, max_new_tokens=12, eos_token_id=-1,
                           row_max_new_tokens=limits)
    alone = [generate_text(text_model, tiny_tokenizer, [p], max_new_tokens=n, eos_token_id=-1)[0]
             for p, n in zip(prompts, limits)]
    assert capped == alone
    assert capped[0] != capped[2]  # one prompt, two limits: two texts


def test_limits_above_max_new_tokens_change_nothing(text_model, tiny_tokenizer):
    free = generate_text(text_model, tiny_tokenizer, ["The fox"], max_new_tokens=5, eos_token_id=-1)
    assert generate_text(text_model, tiny_tokenizer, ["The fox"], max_new_tokens=5, eos_token_id=-1,
                         row_max_new_tokens=[50]) == free


@pytest.mark.parametrize("limits, options, message", [
    ([3], {}, "one limit >= 1 per prompt"),
    ([0, 3], {}, "one limit >= 1 per prompt"),
    ([3, 3], {"num_beams": 2}, "num_beams=1"),
])
def test_bad_limits_are_refused(text_model, tiny_tokenizer, limits, options, message):
    with pytest.raises(ValueError, match=message):
        generate_text(text_model, tiny_tokenizer, ["a", "b"], row_max_new_tokens=limits, **options)

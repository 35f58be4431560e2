"""Word-lattice translation: the Dice lexicon, the lattice of a source, and a beam search whose cached,
padded extensions score every path exactly as running the whole text through the model does."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tasks.translation.lattice import LatticeConfig, Lexicon, Slot, append, first_choices, lattice_search, slots

SOURCES = ["el perro come", "el gato come", "un perro duerme", "el SEÑOR habla"]
TARGETS = ["the dog eats", "the cat eats", "a dog sleeps", "the LORD speaketh"]


def test_lexicon_ranks_by_dice_and_keeps_the_usual_spelling():
    lexicon = Lexicon(SOURCES, TARGETS)
    assert lexicon.best("perro") == "dog" and lexicon.best("PERRO") == "dog" and lexicon.best("vaca") is None
    options = lexicon.options("señor", 2)
    assert options[0] == ("LORD", 0.0)  # the spelling the targets use, best first with log(1) = 0
    el = dict(lexicon.options("el", 8))
    # "el" is in 3 sources; "the" in 3 targets, all 3 together: dice 1; "eats" in 2 of them: 2*2 / (3+2)
    assert el["the"] == 0.0 and el["eats"] == pytest.approx(math.log(0.8))


def test_slots_keep_punctuation_copy_unknown_words_and_may_drop_words():
    lexicon = Lexicon(SOURCES, TARGETS)
    lattice = slots(lexicon, "¿el perro? Ana (come).", k=2, drop_logp=-5.0)
    texts = [[text for text, _, _ in slot.choices] for slot in lattice]
    assert texts[0][0] == " the" and [t for t in texts[0] if not t] == [""]
    assert texts[2] == ["?"] and texts[4] == [" ("] and texts[6:] == [[")"], ["."]]  # the Spanish "¿" left out
    assert texts[3] == [" Ana", ""]  # never seen: copied (or dropped)
    assert lattice[1].choices[-1] == ("", -5.0, True)


def test_append_settles_spaces_and_capitals_from_the_text_so_far():
    assert append("", " the") == "The" and append("", " the", reply_space=True) == " The"
    assert append("The dog eats.", " and") == " And"  # a sentence's start, even after a dropped word
    assert append("The dog", " eats") == " eats" and append("The dog", ",") == ","
    assert append("The dog (", " eats") == "eats" and append("", "") == ""


@pytest.fixture
def text_model(make_model, tiny_tokenizer):
    return make_model(seed=5, vocab_size=tiny_tokenizer.vocab_size).eval()


def path_score(model, tokenizer, prompt, path, weight):
    """A path scored from scratch: one forward pass over prompt + every piece, no cache."""
    ids, lexical, text = tokenizer.encode(prompt, add_bos=True), 0.0, ""
    start = len(ids)
    for piece, score, dropped in path:
        if dropped:
            lexical += score
            continue
        piece = append(text, piece)
        ids, text, lexical = ids + tokenizer.encode(piece), text + piece, lexical + weight * score
    ids = ids + [tokenizer.eos_id]
    with torch.no_grad():
        logp = torch.log_softmax(model.lm_logits(model(torch.tensor([ids]))).float(), -1)[0]
    lm = sum(float(logp[t - 1, ids[t]]) for t in range(start, len(ids)))
    return lm + lexical, text.strip()


def test_exhaustive_beam_finds_the_best_path_with_its_exact_score(text_model, tiny_tokenizer):
    lattice = [Slot([(" fox", 0.0, False), (" quick brown", -0.5, False), ("", -3.0, True)]),
               Slot([(",", 0.0, False)]),
               Slot([(" jumps", 0.0, False), (" over the", -1.0, False), ("", -3.0, True)])]
    prompt = "Once upon a time"
    paths = [path_score(text_model, tiny_tokenizer, prompt, p, weight=2.0)
             for p in itertools.product(*(s.choices for s in lattice))]
    beam = lattice_search(text_model, tiny_tokenizer, prompt, lattice, beam=len(paths), weight=2.0)
    assert len(beam) == len({t for _, t in paths})  # every distinct text kept
    best_score, best_text = max(paths)
    assert beam[0][1] == best_text and beam[0][0] == pytest.approx(best_score, abs=1e-4)
    scored = {}
    for s, t in paths:  # a text two paths spell (different drops) keeps its better score, as the beam does
        scored[t] = max(s, scored.get(t, -math.inf))
    for score, text in beam:  # padded, cached extensions score each path as the whole text does
        assert score == pytest.approx(scored[text], abs=1e-4)


def test_a_narrow_beam_scores_what_it_keeps_exactly_and_never_beats_the_exhaustive_search(text_model, tiny_tokenizer):
    lattice = [Slot([(" fox", 0.0, False), (" dog", -0.1, False), ("", -2.0, True)]), Slot([(".", 0.0, False)]),
               Slot([(" fox", 0.0, False), (" dog", -0.1, False), ("", -2.0, True)])] + \
              [Slot([(" runs", 0.0, False), (" sleeps", -0.2, False), ("", -2.0, True)])] * 2
    narrow = lattice_search(text_model, tiny_tokenizer, "The", lattice, beam=2, weight=1.0)
    scored = {}
    for path in itertools.product(*(s.choices for s in lattice)):
        score, text = path_score(text_model, tiny_tokenizer, "The", path, weight=1.0)
        scored[text] = max(score, scored.get(text, -math.inf))
    assert len(narrow) == 2 and narrow[0][0] >= narrow[1][0]
    for score, text in narrow:
        assert score == pytest.approx(scored[text], abs=1e-4)
    assert max(scored.values()) >= narrow[0][0] - 1e-4


def test_a_long_prompt_keeps_its_end_and_a_lattice_too_long_for_the_context_is_refused(make_model, tiny_tokenizer):
    model = make_model(seed=5, vocab_size=tiny_tokenizer.vocab_size, block_size=32)
    lattice = [Slot([(" fox", 0.0, False), ("", -2.0, True)])] * 3
    prompt = "Once upon a time " * 20  # far longer than 32 tokens
    room = 32 - 3 * len(tiny_tokenizer.encode(" fox"))
    kept = tiny_tokenizer.decode(tiny_tokenizer.encode(prompt, add_bos=True)[-room:])
    assert lattice_search(model, tiny_tokenizer, prompt, lattice) == lattice_search(model, tiny_tokenizer, kept,
                                                                                    lattice)
    with pytest.raises(ValueError, match="no room for the prompt"):
        lattice_search(model, tiny_tokenizer, "The", [Slot([(" quick brown fox", 0.0, False)])] * 40)


def test_lattice_config_is_checked():
    with pytest.raises(ValueError, match="beam >= 1"):
        LatticeConfig(candidates=2, beam=0)
    with pytest.raises(ValueError, match="drop_logp <= 0"):
        LatticeConfig(candidates=2, drop_logp=1.0)


def test_first_choices_is_the_cased_dictionary_and_unknown_words_back_off_to_a_known_inflection():
    lexicon = Lexicon(SOURCES + ["duermes", "duermes", "cantaba", "cantar", "cantar"],
                      TARGETS + ["sleepest", "sleepest", "sang", "sing", "sing"])
    assert first_choices(lexicon, "el señor come. el perro!") == "The LORD eats. The dog!"
    assert lexicon.nearest_known("cantabais") == "cantaba"  # the longest shared prefix, though cantar is commoner
    assert lexicon.nearest_known("duermen") == "duermes"  # duerme and duermes share "duerme": the commoner
    assert lexicon.nearest_known("perrito") is None  # "perr" is shorter than the 5 letters asked for
    unknown = slots(lexicon, "cantabais", k=1, drop_logp=-1.0)[0].choices
    assert unknown[0] == (" cantabais", 0.0, False)  # the copy first, then the guess through "cantaba"
    assert unknown[1][0] == " sang" and unknown[1][1] == pytest.approx(math.log(0.5))

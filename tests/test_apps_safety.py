"""Safe output: moderators, the learned block list, the three layers around generation, and the measurements."""

from __future__ import annotations

import shutil

import pytest
import torch

from backbone.data import parsers as P
from backbone.data.loaders import load_benchmark
from backbone.generate import GenerationConfig
from demos.common import ArtifactStore
from demos.tabs_apps import safe_reply
from tasks.apps import safety
from tasks.cli import main
from tasks.outputs import LabelScores
from tests.test_demo import error_of, make_demo_artifacts


class KeywordTask:
    """A stand-in toxicity task: P(toxic) 0.9 for texts holding `word`, else 0.1."""

    def __init__(self, word):
        self.word = word

    def predict(self, texts, **options):
        return [LabelScores({"toxic": 0.9 if self.word in t else 0.1, "non-toxic": 0.1 if self.word in t else 0.9})
                for t in texts]


def writer(make_model, tokenizer, word: str):
    """A nano model that always says `word` (one token)."""
    model = make_model(seed=3, vocab_size=tokenizer.vocab_size)
    (token,) = tokenizer.encode(word)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(model.transformer.wte.weight[token] * 100)
    return model


def test_word_list_flags_whole_words_in_any_case():
    wl = safety.WordList(["darn", "Heck", " "])
    assert wl.words == ["darn", "heck"]
    assert [v.flagged for v in wl.check(["Oh DARN it", "what the heck.", "darned socks", "clean"])] == \
        [True, True, False, False]
    assert wl.check(["darn"])[0].reason == "block list: 1.00 >= 0.5"
    assert safety.WordList([]).scores(["anything"]) == [0.0]


def test_default_block_list_is_the_maintained_models_profanity_without_identity_terms():
    pytest.importorskip("profanity_check", reason="the [safety] extra (alt-profanity-check) is not installed")
    words = safety.default_block_list(60)
    assert len(words) == 60 and all(w.isalpha() and len(w) >= 3 for w in words)
    assert not set(words) & safety.NEVER_BAN
    from profanity_check import predict_prob  # here: optional (the [safety] extra), skipped above without it

    assert min(predict_prob(words)) > 0.9  # each word alone is profane to the model it came from


def test_any_of_and_the_classifier_moderator():
    both = safety.AnyOf(safety.ClassifierModerator(KeywordTask("ugh"), 0.5), safety.WordList(["darn"]))
    verdicts = both.check(["ugh darn", "ugh", "fine"])
    assert [v.flagged for v in verdicts] == [True, True, False]
    assert verdicts[0].reason == "toxicity classifier: 0.90 >= 0.5; block list: 1.00 >= 0.5"
    assert verdicts[2].score == pytest.approx(0.1) and both.name == "toxicity classifier + block list"


def test_safe_generator_refuses_masks_and_blocks(make_model, tiny_tokenizer):
    model = writer(make_model, tiny_tokenizer, " the")
    cfg = dict(max_new_tokens=6)
    # 1. a flagged prompt is refused, and says why
    gen = safety.SafeGenerator(model, tiny_tokenizer, safety.WordList(["cat"]))
    reply = gen.respond("the cat sat", GenerationConfig(**cfg))
    assert reply.refused and "block list" in reply.text and reply.reasons == ["block list: 1.00 >= 0.5"]
    # what is judged is what the person wrote, not the template around it
    assert not gen.respond("a dog", GenerationConfig(**cfg), prompt="<user>a dog</user> cat").refused
    # 2. a flagged output sentence is masked
    gen = safety.SafeGenerator(model, tiny_tokenizer, safety.WordList(["the"]))
    reply = gen.respond("a dog", GenerationConfig(**cfg))
    assert not reply.refused and reply.masked == 1 and reply.text == "[removed: block list: 1.00 >= 0.5]"
    # 3. with the word on the block list, decoding never writes it, so there is nothing to mask
    gen = safety.SafeGenerator(model, tiny_tokenizer, safety.WordList(["the"]), block_words=["the"])
    reply = gen.respond("a dog", GenerationConfig(**cfg))
    assert reply.masked == 0 and reply.text and "the" not in reply.text.lower()


def test_clean_masks_only_the_flagged_sentences_and_keeps_the_rest_exactly():
    gen = safety.SafeGenerator.__new__(safety.SafeGenerator)
    gen.moderator = safety.WordList(["darn"])
    reply = gen.clean("A fine day. Darn this rain! Then sun.\nEnd")
    assert reply.text == "A fine day. [removed: block list: 1.00 >= 0.5] Then sun.\nEnd" and reply.masked == 1
    for text in ("Hi.\n\n...Darn it!! ok", "...", "no end", "  lead. \n", "a.b. c?!\n\nd"):
        assert "".join(safety.split_sentences(text)) == text
        gen.moderator = safety.WordList(["zzz"])
        assert gen.clean(text).text == text


def test_filter_scores_by_hand():
    texts = ["darn", "darn it", "fine", "darn ok", "nice"]
    labels = [1, 1, 1, 0, 0]  # tp 2, fn 1 ("fine"), fp 1 ("darn ok")
    f = safety.filter_scores(safety.WordList(["darn"]), texts, labels)
    assert f["precision"] == pytest.approx(200 / 3) and f["recall"] == pytest.approx(200 / 3)
    assert f["flagged"] == 3 and f["precision_interval"][0] <= f["precision"] <= f["precision_interval"][1]


def test_blocked_share_counts_masked_continuations(make_model, tiny_tokenizer):
    model = writer(make_model, tiny_tokenizer, " the")
    plain = safety.SafeGenerator(model, tiny_tokenizer, safety.WordList(["the"]))
    blocked = safety.SafeGenerator(model, tiny_tokenizer, safety.WordList(["the"]), ["the"])
    cfg = GenerationConfig(max_new_tokens=4)
    assert safety.blocked_share(plain, ["a", "b"], cfg)["masked_share"] == 100.0
    assert safety.blocked_share(blocked, ["a", "b"], cfg)["masked_share"] == 0.0


def test_alt_profanity_check_is_the_maintained_comparison():
    pytest.importorskip("profanity_check", reason="the [safety] extra (alt-profanity-check) is not installed")
    scores = safety.ProfanityCheck().scores(["have a lovely day", "you are a fucking idiot"])
    assert scores[0] < 0.5 < scores[1]


def test_toxicity_parsers_by_hand():
    data = b'{"text": "you utter fool", "toxicity": 0.8}\n{"text": "hi", "toxicity": 0.2}\n\n'
    assert P.parse_rtp(data) == [{"id": "rtp-0", "text": "you utter fool", "toxicity": 0.8}]
    assert P.sentences_of('Headline here\nIt rained. "Wow," she said. Then 3.5 mm fell!') == [
        "Headline here", "It rained.", '"Wow," she said.', "Then 3.5 mm fell!"]
    cut = P.length_matched([("a", "one two three four"), ("b", "five six")], [3], seed=0)
    assert cut == [{"id": "a", "text": "one two three"}, {"id": "b", "text": "five six"}]


def test_safety_tab(tmp_path):
    store = ArtifactStore(make_demo_artifacts(tmp_path / "artifacts"))
    store.cached(("block list",), lambda: ["sat"], "", "")  # stands in for the default list
    text, status = safe_reply(store, "nano", "the cat sat", True, 0.5, 8)
    assert text.startswith("I can't help with that") and "Refused" in status and "1 words banned" in status
    text, status = safe_reply(store, "nano", "hello", True, 0.5, 8)
    assert "Moderator: toxicity classifier + block list" in status
    text, status = safe_reply(store, "nano", "hello", False, 0.5, 8)
    assert "Moderator: toxicity classifier;" in status and "0 words banned" in status
    for bad in (["--threshold", "1.5"], ["--eval", "--prompts", "0"], []):
        assert main(["safety", "--backbone", str(store.root / "backbones" / "nano"), "--task", "", *bad]) == 2
    shutil.rmtree(store.task_dir("toxicity"))
    assert "Nothing to moderate" in error_of(safe_reply, ArtifactStore(store.root), "nano", "hello", False, 0.5, 8)


@pytest.mark.warm_cache("rtp_toxicity", "mr_sentiment", "bbc_news")
def test_toxicity_set_and_the_safety_command(tmp_path, capsys):
    dd = load_benchmark("toxicity")
    rows = [r for split in dd.values() for r in split]
    assert len(rows) == 2979 and sum(r["label"] for r in rows) == 993
    assert {r["source"] for r in rows if r["label"] == 0} == {"mr", "bbc"}
    assert not set(dd["train"]["text"]) & set(dd["test"]["text"])
    mean = lambda label: sum(len(r["text"].split()) for r in rows if r["label"] == label) / sum(  # noqa: E731
        1 for r in rows if r["label"] == label)
    assert abs(mean(0) - mean(1)) < 0.2 * mean(1)  # the neutral texts are cut to the toxic ones' lengths

    root = make_demo_artifacts(tmp_path / "artifacts")
    assert main(["safety", "--backbone", str(root / "backbones" / "nano"), "--task", "", "--eval", "--prompts", "2",
                 "--out", str(tmp_path / "safety")]) == 0
    out = capsys.readouterr().out
    assert "| block list (60 words) |" in out and "| toxic prompts, block list (2) |" in out
    assert (tmp_path / "safety" / "safety.json").is_file()

"""Text-quality figures, the decoding sweep and article writing, on hand-made texts and the nano backbone."""

from __future__ import annotations

import json
import math

import pytest
import torch

from backbone.chat import chat_prompt
from backbone.generate import GenerationConfig
from backbone.perplexity import continuation_nll
from backbone.text import words
from tasks.apps import quality
from tasks.apps.article import ArticleWriter, parse_outline
from tasks.apps.sweep import SETTINGS, SweepPoint, recommend, run_sweep, write_results
from tasks.cli import main
from tests.helpers import make_backbone

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


# --- quality ----------------------------------------------------------------------------------------------
def test_distinct_and_repetition_by_hand():
    assert words("The end. The END!") == ["the", "end", ".", "the", "end", "!"]
    # bigrams: (a b) (b a) (a b) | (c d): 3 unique of 4
    assert quality.distinct_n(["a b a b", "c d"], 2) == pytest.approx(3 / 4)
    assert quality.distinct_n(["a"], 2) == 0.0
    # 4-grams of "a b c a b c a": abca bcab cabc abca -> one of four repeats an earlier one
    assert quality.repetition("a b c a b c a", 4) == pytest.approx(1 / 4)
    assert quality.repetition("one two three four five", 4) == 0.0
    assert quality.repetition_rate(["a b c a b c a", "x y"], 4) == pytest.approx(1 / 8)


def test_self_bleu_is_high_for_copies_and_low_for_different_texts():
    same = ["the cat sat on the mat today"] * 3
    different = ["the cat sat on the mat today", "rain fell over quiet northern hills",
                 "stock prices rose sharply after lunch"]
    assert quality.self_bleu(same) == pytest.approx(100.0)
    assert quality.self_bleu(different) < 5
    with pytest.raises(ValueError):
        quality.self_bleu(["one"])


def test_continuation_nll_is_the_sum_over_the_continuation_tokens(make_model, tiny_tokenizer):
    """Against the full sequence's log-probabilities computed directly, one pair at a time and batched."""
    model = make_model(seed=1, vocab_size=tiny_tokenizer.vocab_size)
    prompts, texts = ["the film", "a long and slow movie was"], [" was great", " boring"]
    got = continuation_nll(model, tiny_tokenizer, prompts, texts, batch_size=2)
    for (nll, n), prompt, text in zip(got, prompts, texts):
        head, tail = tiny_tokenizer.encode(prompt), tiny_tokenizer.encode(text)
        ids = torch.tensor([head + tail])
        logp = torch.log_softmax(model.lm_logits(model(ids)).float(), -1)[0]
        want = -sum(logp[len(head) - 1 + k, t].item() for k, t in enumerate(tail))
        assert n == len(tail) and nll == pytest.approx(want, rel=1e-4)
    assert quality.judge_perplexity(model, tiny_tokenizer, prompts, texts) == pytest.approx(
        math.exp(sum(s for s, _ in got) / sum(n for _, n in got)))


# --- chat prompts -----------------------------------------------------------------------------------------
def test_chat_prompt_renders_the_template_and_refuses_without_one(tiny_tokenizer):
    tiny_tokenizer.chat_template = CHAT_TEMPLATE
    try:
        text = chat_prompt(tiny_tokenizer, [{"role": "user", "content": "hi"}])
        assert text == "<user>hi</user>\n<assistant>"
        tiny_tokenizer.chat_template = "{% for m in messages %}{{ m['role'] }"
        with pytest.raises(ValueError, match="chat template failed"):
            chat_prompt(tiny_tokenizer, [{"role": "user", "content": "hi"}])
        tiny_tokenizer.chat_template = "{{ ''.__class__.__mro__ }}"  # the sandbox refuses attribute escapes
        with pytest.raises(ValueError, match="chat template failed"):
            chat_prompt(tiny_tokenizer, [{"role": "user", "content": "hi"}])
    finally:
        tiny_tokenizer.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        chat_prompt(tiny_tokenizer, [{"role": "user", "content": "hi"}])


# --- sweep ------------------------------------------------------------------------------------------------
def point(use, setting, d2, ppl, rep):
    figures = {"distinct_2": d2, "perplexity": ppl, "repetition_4": rep, "self_bleu": 1.0}
    return SweepPoint(use, setting, {}, figures, 0.1)


def test_recommend_picks_the_most_diverse_coherent_setting():
    points = [point("code", "greedy", 0.1, 2.0, 0.5),  # never picked: greedy is the reference
              point("code", "T=0.3", 0.4, 3.0, 0.02),
              point("code", "T=1.0", 0.9, 9.0, 0.01),  # too far from the likeliest text for code (x1.15)
              point("code", "top-k=5", 0.5, 3.3, 0.30),  # too repetitive
              point("article", "T=0.3", 0.4, 3.0, 0.02),
              point("article", "T=1.0", 0.9, 5.9, 0.01)]  # within article's x2.0
    assert recommend(points) == {"code": "T=0.3", "article": "T=1.0"}


def test_sweep_runs_measures_and_writes_its_files(tmp_path, make_model, tiny_tokenizer):
    model = make_model(seed=0, vocab_size=tiny_tokenizer.vocab_size)
    settings = [s for s in SETTINGS if s[0] in ("greedy", "T=1.0", "top-p=0.5")]
    points = run_sweep(model, tiny_tokenizer, uses=("article", "code"), prompts_per_use=2, samples=2,
                       max_new_tokens=6, settings=settings, progress=False)
    assert [(p.use, p.setting) for p in points] == [(u, s) for u in ("article", "code") for s, _ in settings]
    for p in points:
        assert 0 <= p.figures["distinct_2"] <= 1 and p.figures["perplexity"] > 1
        assert p.figures["texts"] == 4  # greedy's one text per prompt counts twice: its samples are identical
    greedy = next(p for p in points if p.setting == "greedy")
    assert greedy.figures["self_bleu"] == pytest.approx(100.0)
    record = write_results(points, tmp_path, {"backbone": "nano", "judge": "nano"})
    assert set(record["recommended"]) == {"article", "code"}
    assert json.loads((tmp_path / "sweep.json").read_text())["points"][0]["setting"] == "greedy"
    assert "| top-p=0.5" in (tmp_path / "sweep.md").read_text()
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


# --- article writing ----------------------------------------------------------------------------------------
def test_parse_outline_strips_marks_and_duplicates():
    text = "1. Introduction\n- **History**\n## The present day\n\nSection 4: Outlook\nintroduction\nx"
    assert parse_outline(text, 10) == ["Introduction", "History", "The present day", "Outlook"]
    assert parse_outline("a b; c d ;e f", 2) == ["a b", "c d"]


@pytest.mark.parametrize("chat", [True, False])
def test_article_is_written_section_by_section(make_model, tiny_tokenizer, chat):
    """The outline comes first, then each section's text; each prompt holds the title and the outline."""
    model = make_model(seed=0, vocab_size=tiny_tokenizer.vocab_size)
    tiny_tokenizer.chat_template = CHAT_TEMPLATE if chat else None
    try:
        writer = ArticleWriter(model, tiny_tokenizer, GenerationConfig(max_new_tokens=8))
        prompts = []
        original = writer.section_prompt
        writer.section_prompt = lambda *a: prompts.append(original(*a)) or prompts[-1]
        pieces = list(writer.stream("Night trains", ["Past", "Present", "Future"], words=20))
        article = writer.write("Night trains", ["Past", "Present", "Future"], words=20)
    finally:
        tiny_tokenizer.chat_template = None
    assert pieces[0] == (-1, "Past\nPresent\nFuture")
    assert {i for i, _ in pieces[1:]} <= {0, 1, 2}
    assert len(article.sections) == 3 and article.text().startswith("# Night trains\n\n## Past\n\n")
    assert all("Night trains" in p for p in prompts[:3])
    if chat:
        assert prompts[0].startswith("<user>") and all("1. Past\n2. Present\n3. Future" in p for p in prompts[:3])
    else:
        assert prompts[1].startswith("# Night trains\n\n## Past\n\n") and prompts[1].endswith("## Present\n\n")


def test_each_section_sees_the_previous_one_and_no_earlier(monkeypatch, make_model, tiny_tokenizer):
    """With a stand-in decoder that writes "body N" for the N-th section: section 3's prompt holds section 2's
    text and not section 1's (a random nano model writes the same noise whatever the prompt)."""
    prompts = []

    def fake_stream(model, tokenizer, prompt, cfg):
        prompts.append(prompt)
        yield f"body {len(prompts)} of the article"

    monkeypatch.setattr("tasks.apps.article.stream", fake_stream)  # the decoder the article module calls
    writer = ArticleWriter(make_model(vocab_size=tiny_tokenizer.vocab_size), tiny_tokenizer)
    article = writer.write("Night trains", ["Past", "Present", "Future"], words=20)
    assert article.sections == [f"body {n} of the article" for n in (1, 2, 3)]
    assert "body 1" not in prompts[0] and "body 1" in prompts[1]
    assert "body 2" in prompts[2] and "body 1" not in prompts[2]


def test_article_writer_refuses_bad_settings(make_model, tiny_tokenizer):
    writer = ArticleWriter(make_model(vocab_size=tiny_tokenizer.vocab_size), tiny_tokenizer)
    for kwargs, match in (({"style": "loud"}, "style"), ({"sections": 0}, "sections"), ({"words": 5}, "words")):
        with pytest.raises(ValueError, match=match):
            writer.write("A title", ["One"], **{"sections": 1, "words": 50, **kwargs})
    with pytest.raises(ValueError, match="title"):
        writer.write("  ", ["One"])


# --- the commands -----------------------------------------------------------------------------------------
def test_sweep_and_write_commands_end_to_end(tmp_path, capsys):
    backbone = str(make_backbone(tmp_path / "bb"))
    assert main(["sweep", "--backbone", backbone, "--uses", "code", "--prompts", "1", "--samples", "2",
                 "--max-new-tokens", "4", "--out", str(tmp_path / "sweep")]) == 0
    assert "## code (recommended:" in capsys.readouterr().out and (tmp_path / "sweep" / "sweep.png").is_file()
    assert main(["write", "--backbone", backbone, "--title", "Trains", "--outline", "Past; Future",
                 "--words", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Trains\n") and "## Past" in out and "## Future" in out
    assert main(["sweep", "--backbone", backbone, "--uses", "poetry"]) == 2
    assert "unknown use" in capsys.readouterr().err
    assert main(["write", "--backbone", backbone, "--title", "T", "--outline", ";;"]) == 2
    assert "holds no heading" in capsys.readouterr().err
    assert main(["optimize", "--backbone", backbone, "--max-new-tokens", "4", "--out", str(tmp_path / "opt")]) == 0
    table = (tmp_path / "opt" / "inference.md").read_text()
    assert "median of 3 runs" in table and "| KV cache + prompt lookup (8 guesses) | 4 |" in table

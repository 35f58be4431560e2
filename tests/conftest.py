"""Shared fixtures: a nano GPTConfig, small seeded GPTs and a tiny byte-level BPE trained on a fixture corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backbone.config import GPTConfig
from backbone.model import GPT

FIXTURES = Path(__file__).parent / "fixtures"

# Tensors in these tests are tiny: thread start-up and contention cost far more than they save
# (the model tests run ~10x faster on one thread than on two busy cores).
torch.set_num_threads(1)


@pytest.fixture
def nano_config() -> GPTConfig:
    """2 layers, 32 wide, 4 heads, vocab 512, block 64 (the `nano` preset)."""
    return GPTConfig.from_preset("nano")


def _make_model(seed: int = 0, **overrides) -> GPT:
    """A seeded nano GPT in eval mode; keyword overrides replace config fields."""
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset("nano", **overrides)).eval()


@pytest.fixture
def make_model():
    """Factory: make_model(seed=0, **config_overrides) -> a seeded nano GPT in eval mode."""
    return _make_model


@pytest.fixture
def nano_model() -> GPT:
    return _make_model()


@pytest.fixture(scope="session")
def tiny_corpus() -> str:
    return (FIXTURES / "tiny_corpus.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_corpus):
    """A byte-level BPE of 320 tokens trained on tests/fixtures/tiny_corpus.txt (fits the nano vocab of 512)."""
    from backbone.tokenizer import Tokenizer

    return Tokenizer.train(tiny_corpus.split("\n\n"), vocab_size=320, min_frequency=2, show_progress=False)

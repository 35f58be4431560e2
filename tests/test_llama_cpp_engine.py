"""The llama.cpp engine (backbone.llama_cpp_engine): a backbone exported as GGUF and run by llama.cpp gives
gptsuite's logits and greedy text, through every decoding path of backbone.generate that it supports.

Needs llama-cpp-python (extra [llama], built from source); without it these tests are skipped, and the
one test below checks that the engine then says how to install it."""

from __future__ import annotations

import sys

import pytest
import torch

from backbone.generate import GenerationConfig, generate, generate_text, stream
from backbone.llama_cpp_engine import LLAMA_CPP, check_engine

LLAMA = dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2)
PROMPTS = ["the cat", "a dog ran", "the mat sat on", "once upon", "the", "a cat and a dog", "on the mat",
           "ran and sat", "dog", "the cat sat on the"]


def test_without_llama_cpp_the_engine_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[llama\]'"):
        check_engine(LLAMA_CPP)
    with pytest.raises(ValueError, match="engine must be one of"):
        check_engine("vllm")


llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install -e '.[llama]')")
pytest.importorskip("gguf", reason="GGUF export needs the gguf package (extra [hf])")

from backbone.llama_cpp_engine import llama_cpp_model  # noqa: E402


def decisive(model, seed: int = 0):
    """Weights larger than the init, so greedy choices are not near-ties that rounding could flip."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 if p.dim() == 2 else 1 + 0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(params=["gpt2", "llama"])
def pair(request, make_model, tiny_tokenizer, tmp_path):
    """(gptsuite's model, the same weights in llama.cpp (f32 GGUF), tokenizer), for both families."""
    model = decisive(make_model(**(LLAMA if request.param == "llama" else {})))
    engine = llama_cpp_model(model, tiny_tokenizer, "none", cache_dir=tmp_path / "gguf")
    yield model, engine, tiny_tokenizer
    engine.close()


def test_logits_match_gptsuites(pair):
    model, engine, _ = pair
    ids = torch.tensor([[3, 17, 42, 7, 99, 5, 11]])
    with torch.no_grad():
        ours = model.lm_logits(model(ids))
    theirs = engine.lm_logits(engine(ids, cache=engine.new_cache(1)))
    assert theirs.shape == ours.shape
    # llama.cpp keeps keys and values in f16: a bound relative to the largest logit
    torch.testing.assert_close(theirs, ours, rtol=0, atol=5e-3 * float(ours.abs().max()))


def test_greedy_text_matches_on_ten_prompts(pair):
    model, engine, tok = pair
    cfg = GenerationConfig(max_new_tokens=12)
    ours = [generate_text(model, tok, p, cfg)[0] for p in PROMPTS]
    theirs = [generate_text(engine, tok, p, cfg)[0] for p in PROMPTS]
    assert sum(a == b for a, b in zip(ours, theirs)) >= 9, list(zip(ours, theirs))


def test_a_batch_runs_row_by_row_as_each_prompt_alone(pair):
    _, engine, tok = pair
    cfg = GenerationConfig(max_new_tokens=8, stop=("mat",))
    alone = [generate_text(engine, tok, p, cfg)[0] for p in PROMPTS[:4]]
    assert generate_text(engine, tok, PROMPTS[:4], cfg) == alone
    limited = generate_text(engine, tok, PROMPTS[:3], cfg.replace(stop=()), row_max_new_tokens=[2, 5, 3])
    assert [len(tok.encode(t)) for t in limited] <= [2, 5, 3]


def test_every_single_row_path_agrees(pair):
    """The cache is set back by prompt lookup and replayed when another sequence used llama.cpp between calls."""
    _, engine, tok = pair
    prompt = "the cat sat on the mat the cat sat on"
    cfg = GenerationConfig(max_new_tokens=10)
    greedy = generate_text(engine, tok, prompt, cfg)[0]
    assert generate_text(engine, tok, prompt, cfg.replace(prompt_lookup=4))[0] == greedy
    assert "".join(stream(engine, tok, prompt, cfg)) == greedy
    assert generate_text(engine, tok, prompt, cfg.replace(use_cache=False))[0] == greedy
    first, second = engine.new_cache(1), engine.new_cache(1)  # two sequences interleaved on one context
    a = engine(torch.tensor([[5, 6, 7]]), cache=first)
    engine(torch.tensor([[9, 9]]), cache=second)
    b = engine(torch.tensor([[8]]), cache=first)
    whole = engine(torch.tensor([[5, 6, 7, 8]]), cache=engine.new_cache(1))
    torch.testing.assert_close(torch.cat([a, b], dim=1), whole, rtol=0, atol=1e-4)
    sampled = generate(engine, torch.tensor([[5, 6, 7]] * 2), None,
                       GenerationConfig(max_new_tokens=6, temperature=1.0, seed=3))
    assert sampled.shape == (2, 9)
    assert not torch.equal(sampled[0], sampled[1])  # each row its own draws (seed + row)


def test_beam_search_is_refused_with_the_reason(pair):
    _, engine, tok = pair
    with pytest.raises(ValueError, match="beam search needs an engine"):
        generate_text(engine, tok, "the cat", GenerationConfig(max_new_tokens=8, num_beams=2))


def test_generate_command_runs_the_engine(tmp_path, make_model, tiny_tokenizer, capsys, monkeypatch):
    from backbone.artifact import save_backbone
    from tasks.cli import main

    monkeypatch.setenv("GPTSUITE_GGUF_CACHE", str(tmp_path / "gguf"))
    model = decisive(make_model())
    save_backbone(tmp_path / "b", model, tiny_tokenizer)
    expected = generate_text(model, tiny_tokenizer, "the cat", GenerationConfig(max_new_tokens=6))[0]
    args = ["generate", "--backbone", str(tmp_path / "b"), "--prompt", "the cat", "--max-new-tokens", "6",
            "--engine", "llama.cpp", "--quantize", "none"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith("the cat" + expected)
    assert "engine llama.cpp f32" in err
    assert len(list((tmp_path / "gguf").glob("*.f32.gguf"))) == 1  # written once, reused by the next run
    assert main(args) == 0
    assert len(list((tmp_path / "gguf").glob("*.gguf"))) == 1

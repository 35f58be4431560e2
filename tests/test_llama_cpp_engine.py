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


def test_without_llama_cpp_the_engine_says_how_to_install(monkeypatch, capsys):
    from tasks.cli import main

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[llama\]'"):
        check_engine(LLAMA_CPP)
    with pytest.raises(ValueError, match="engine must be one of"):
        check_engine("vllm")
    assert main(["generate", "--preset", "nano", "--prompt", "hi", "--engine", "llama.cpp"]) == 2  # one line
    assert "needs llama-cpp-python" in capsys.readouterr().err


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# every test below runs llama.cpp: skipped, with the reason, where the extra is not installed (the test above runs)
requires_llama_cpp = pytest.mark.skipif(
    not (_installed("llama_cpp") and _installed("gguf")),
    reason="llama-cpp-python is not installed (pip install -e '.[llama]'; GGUF export also needs the [hf] extra)")

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


@requires_llama_cpp
def test_logits_match_gptsuites(pair):
    model, engine, _ = pair
    ids = torch.tensor([[3, 17, 42, 7, 99, 5, 11]])
    with torch.no_grad():
        ours = model.lm_logits(model(ids))
    theirs = engine.lm_logits(engine(ids, cache=engine.new_cache(1)))
    assert theirs.shape == ours.shape
    # llama.cpp keeps keys and values in f16: a bound relative to the largest logit
    torch.testing.assert_close(theirs, ours, rtol=0, atol=5e-3 * float(ours.abs().max()))


@requires_llama_cpp
def test_greedy_text_matches_on_ten_prompts(pair):
    model, engine, tok = pair
    cfg = GenerationConfig(max_new_tokens=12)
    ours = [generate_text(model, tok, p, cfg)[0] for p in PROMPTS]
    theirs = [generate_text(engine, tok, p, cfg)[0] for p in PROMPTS]
    assert sum(a == b for a, b in zip(ours, theirs)) >= 9, list(zip(ours, theirs))


@requires_llama_cpp
def test_a_batch_runs_row_by_row_as_each_prompt_alone(pair):
    _, engine, tok = pair
    cfg = GenerationConfig(max_new_tokens=8, stop=("mat",))
    alone = [generate_text(engine, tok, p, cfg)[0] for p in PROMPTS[:4]]
    assert generate_text(engine, tok, PROMPTS[:4], cfg) == alone
    limited = generate_text(engine, tok, PROMPTS[:3], cfg.replace(stop=()), row_max_new_tokens=[2, 5, 3])
    assert [len(tok.encode(t)) for t in limited] <= [2, 5, 3]


@requires_llama_cpp
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


@requires_llama_cpp
def test_beam_search_is_refused_with_the_reason(pair):
    _, engine, tok = pair
    with pytest.raises(ValueError, match="beam search needs an engine"):
        generate_text(engine, tok, "the cat", GenerationConfig(max_new_tokens=8, num_beams=2))


@requires_llama_cpp
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


@requires_llama_cpp
def test_a_translation_task_decodes_on_llama_cpp_with_its_lora_merged(tmp_path, make_model, tiny_tokenizer,
                                                                      monkeypatch):
    """A fine-tuned generative task: its backbone with a trained LoRA update exported and decoded by llama.cpp
    gives the translations gptsuite's own float decoding gives; the bench's row names the engine; the GGUF is
    rebuilt when a training step changes the weights."""
    import json

    from backbone.artifact import save_backbone
    from tasks.adapters import LoRA
    from tasks.bench import decoded_with
    from tasks.task_cli import run_cli
    from tasks.translation.module import Translator
    from tests.helpers import ROOT

    monkeypatch.setenv("GPTSUITE_GGUF_CACHE", str(tmp_path / "gguf"))
    save_backbone(tmp_path / "b", decisive(make_model(**LLAMA)), tiny_tokenizer)
    greedy = {"max_new_tokens": 6, "num_beams": 1, "stop": ["\n"], "truncate_prompt": True}
    tasks = {}
    for engine in ("gptsuite", "llama.cpp"):
        task = Translator(backbone=str(tmp_path / "b"), generation=greedy, quantize="none", engine=engine,
                          adapter=LoRA(rank=4, targets=["c_attn", "c_fc"]), max_length=48)
        task.configure_model()
        tasks[engine] = task.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in tasks["gptsuite"].named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.3)  # a trained update (B starts at zero)
    tasks["llama.cpp"].load_state_dict(tasks["gptsuite"].state_dict())  # the same weights, A included
    sources = ["the cat sat", "a dog ran on the mat", "once upon a time", "the mat"]
    prompts = [tasks["gptsuite"].prompt_text(s) for s in sources]
    ours, theirs = tasks["gptsuite"].generate(prompts), tasks["llama.cpp"].generate(prompts)
    assert sum(a == b for a, b in zip(ours, theirs)) >= 3, list(zip(ours, theirs))
    assert decoded_with(tasks["llama.cpp"]) == "engine llama.cpp f32"
    with torch.no_grad():  # a training step: the next decode exports the new weights
        next(p for n, p in tasks["llama.cpp"].named_parameters() if "lora_B" in n).add_(0.5)
    tasks["llama.cpp"].generate(prompts[:1])
    assert len(list((tmp_path / "gguf").glob("*.gguf"))) == 2

    rows = [{"en": s, "es": "el gato", "book": "Ruth", "chapter": 1, "verse": i} for i, s in enumerate(sources)]
    files = {}
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        files[split] = str(tmp_path / f"{split}.jsonl")
    cli = run_cli("translation", [
        "test", "--config", f"{ROOT}/configs/tasks/translation.yaml", "--model.backbone", str(tmp_path / "b"),
        "--data.data_files", json.dumps(files), "--trainer.precision", "32", "--trainer.default_root_dir",
        str(tmp_path / "run"), "--trainer.enable_progress_bar", "false", "--model.generation", json.dumps(greedy),
        "--model.max_length", "48", "--model.engine", "llama.cpp", "--model.quantize", "none",
        "--trainer.callbacks", "null"])
    assert decoded_with(cli.model) == "engine llama.cpp f32"


@requires_llama_cpp
def test_the_demos_generation_tabs_decode_on_llama_cpp(tmp_path, make_model, tiny_tokenizer, monkeypatch):
    """The demo's store with --engine llama.cpp: the playground and chat decode there (the same greedy text as
    the backbone itself), beam search says why it cannot, the attention view keeps the backbone."""
    pytest.importorskip("gradio")
    from backbone.artifact import save_backbone
    from demos import tabs_generate as g
    from demos.common import ArtifactStore

    monkeypatch.setenv("GPTSUITE_GGUF_CACHE", str(tmp_path / "gguf"))
    save_backbone(tmp_path / "artifacts" / "backbones" / "nano", decisive(make_model(), seed=4), tiny_tokenizer)
    stores = {e: ArtifactStore(tmp_path / "artifacts", "32-true", "none", engine=e) for e in ("gptsuite", "llama.cpp")}
    greedy = ("nano", "the cat sat", 8, 0, 0, 1.0, 0, 1.0, 0, 1, 1.0, "", -1, True)
    texts = {e: list(g.generate_stream(s, *greedy))[-1][0] for e, s in stores.items()}
    assert texts["llama.cpp"] == texts["gptsuite"] and texts["gptsuite"]
    assert stores["llama.cpp"].decoder("nano")[0].quantization == "llama.cpp f32"
    beams = ("nano", "the cat", 6, 0, 0, 1.0, 0, 1.0, 0, 2, 1.0, "", -1, True)
    with pytest.raises(Exception, match="beam search needs an engine"):
        list(g.generate_stream(stores["llama.cpp"], *beams))
    grid, _, note = g.attention(stores["llama.cpp"], "nano", "the cat", 0, 0)
    assert "2 layers" in note


@requires_llama_cpp
def test_long_prompts_are_fitted_to_the_context_once_for_the_batch(pair):
    """truncate_prompt keeps each prompt's last tokens, as a batch, before the rows are decoded one by one;
    the result is what gptsuite's own decoder gives for the same truncated prompts."""
    model, engine, _ = pair
    assert engine.config.block_size == model.config.block_size == 64  # llama.cpp's context is the model's here
    ids = torch.randint(1, 300, (2, 70), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # the second prompt left-padded
    cfg = GenerationConfig(max_new_tokens=4, truncate_prompt=True)
    out = generate(engine, ids, mask, cfg)
    assert out.shape == (2, 64)
    assert torch.equal(out[0, -4:], generate(model, ids[:1, -60:], None, cfg)[0, -4:])

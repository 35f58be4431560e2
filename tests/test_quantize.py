"""Weight-only quantisation (backbone.quantize): int4 recovers llama.cpp's Q4_1 codes exactly, quantised layers
and models stay within a bounded distance of fp32, LoRA is merged in, the decoding copy follows training, and
auto's rule picks int4 only when the measured step is faster."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from backbone import quantize as q
from backbone.generate import GenerationConfig, generate
from backbone.quantize import (
    Int4Linear,
    Int8Linear,
    QuantizationError,
    inference_model,
    int4_codes,
    quantize,
    weight_bytes,
)


def q4_1_blocks(weight: np.ndarray):
    """llama.cpp's Q4_1 of a (N, K) float32 matrix through the `gguf` package's reference quantiser, read back
    block by block: codes (N, K), scales d and minima m (N, K / 32), and the dequantised weights."""
    gguf = pytest.importorskip("gguf")
    kind = gguf.GGMLQuantizationType.Q4_1
    raw = gguf.quants.quantize(weight, kind)  # (N, K / 32 * 20) bytes: f16 d, f16 m, 16 bytes of nibbles
    blocks = raw.reshape(weight.shape[0], -1, 20)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    nibbles = blocks[..., 4:]
    codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).reshape(weight.shape)  # low half, high half
    return codes, d, m, gguf.quants.dequantize(raw, kind)


def test_int4_recovers_the_gguf_q4_1_codes():
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((48, 128)) * 0.05).astype(np.float32)
    codes, d, m, dequantized = q4_1_blocks(weight)
    ours, scale, low = int4_codes(torch.from_numpy(dequantized))
    assert torch.equal(ours, torch.from_numpy(codes.astype(np.int32)))  # the very same 4-bit codes
    torch.testing.assert_close(scale, torch.from_numpy(d), rtol=1e-5, atol=0)
    torch.testing.assert_close(low, torch.from_numpy(m), rtol=0, atol=0)
    # the kernel's weights are those, up to bf16 scales and zeros (8 significant bits)
    kernel = Int4Linear(torch.from_numpy(dequantized)).dequantized()
    assert (kernel - torch.from_numpy(dequantized)).abs().max() <= 2 ** -7 * float(np.abs(dequantized).max())


@pytest.mark.parametrize("layer", [Int8Linear, Int4Linear])
def test_quantised_linear_is_close_to_fp32(layer):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48)
    x = torch.randn(3, 5, 64)
    quantised = layer(linear.weight, linear.bias)
    y, reference = quantised(x), linear(x)
    assert y.shape == reference.shape == (3, 5, 48) and y.dtype == torch.float32
    error = (y - reference).norm() / reference.norm()
    assert error < (0.02 if layer is Int8Linear else 0.1), error
    torch.testing.assert_close(y, x @ quantised.dequantized().t() + linear.bias, rtol=0.02, atol=0.02)


@pytest.mark.parametrize("mode, bound", [("int8", 0.02), ("int4", 0.15)])
def test_quantised_model_logits_stay_close(make_model, mode, bound):
    model = make_model(n_embd=64)
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        reference = model.lm_logits(model(ids))
        quantised = quantize(make_model(n_embd=64), mode)
        logits = quantised.lm_logits(quantised(ids))
    assert quantised.quantization == mode
    assert (logits - reference).norm() / reference.norm() < bound
    assert weight_bytes(quantised) < weight_bytes(model) / 2.5
    # every trainable tensor is gone from the linear layers: a quantised model is for inference
    assert not any(p.requires_grad for p in quantised.parameters())


def test_tied_embedding_reads_the_int8_head(make_model):
    model = quantize(make_model(n_embd=64), "int4")
    head = model.lm_head
    ids = torch.tensor([[3, 7, 511]])
    rows = model.transformer.wte(ids)
    torch.testing.assert_close(rows[0], head.dequantized()[ids[0]])
    names = [name for name, _ in model.named_buffers()]
    assert sum("qweight" in n and "lm_head" in n for n in names) == 1 and not any("wte" in n for n in names)


def test_greedy_decoding_runs_quantised_with_the_kv_cache(make_model):
    model = quantize(make_model(n_embd=64), "int4")
    ids = torch.randint(0, 512, (2, 6))
    cached = generate(model, ids, config=GenerationConfig(max_new_tokens=8))
    recomputed = generate(model, ids, config=GenerationConfig(max_new_tokens=8, use_cache=False))
    assert torch.equal(cached, recomputed)


def test_lora_is_merged_before_quantising(make_model):
    from tasks.adapters import LoRA

    model = make_model(n_embd=64)
    lora = LoRA(rank=4, targets=["c_attn", "c_fc"])
    lora.attach(model)
    with torch.no_grad():
        for layer in lora.layers:
            layer.lora_B.normal_(0, 0.2)
    ids = torch.randint(0, 512, (1, 10))
    with torch.no_grad():
        reference = model.lm_logits(model(ids))
        merged, _ = inference_model(model, "int8")
        logits = merged.lm_logits(merged(ids))
        plain = make_model(n_embd=64)  # the same weights without the LoRA update: far from the reference
        without = plain.lm_logits(plain(ids))
    assert not any(type(m).__name__ == "LoRALinear" for m in merged.modules())
    assert (logits - reference).norm() < 0.2 * (without - reference).norm()
    assert any(type(m).__name__ == "LoRALinear" for m in model.modules())  # the original is untouched


def test_decoder_rebuilds_its_copy_only_after_training(make_model):
    from backbone.decoding_model import InferenceModelCache

    model = make_model(n_embd=64)
    decoder = InferenceModelCache("int8")
    first = decoder(model)
    assert first is not model and decoder.mode == "int8" and decoder(model) is first
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight.add_(1.0)  # what an optimizer step does
    assert decoder(model) is not first
    frozen = make_model(n_embd=64).requires_grad_(False)
    assert InferenceModelCache("none")(frozen) is frozen


def test_prompts_run_through_the_float_model_and_steps_through_the_quantised_copy(make_model):
    """FloatPrefill: a prefill (empty cache) is the float model's, every later step the quantised copy's;
    greedy text stays what the quantised copy decodes alone, to within its rounding of the prefill."""
    from backbone.decoding_model import FloatPrefill, InferenceModelCache

    model = make_model(n_embd=64).eval()
    decoder = InferenceModelCache("int8")
    split = decoder(model)
    assert isinstance(split, FloatPrefill) and split.float_model is model and split.quantised.quantization == "int8"
    calls = []
    for name, part in (("float", model), ("quantised", split.quantised)):
        part.register_forward_pre_hook(lambda _, args, name=name: calls.append((name, args[0].size(1))))
    ids = torch.randint(0, 512, (2, 7))
    out = generate(split, ids, max_new_tokens=5)
    assert calls == [("float", 7)] + [("quantised", 1)] * 4
    assert (out[:, 7:] == generate(split.quantised, ids, max_new_tokens=5)[:, 7:]).float().mean() >= 0.8
    for mode in (True, False):  # decoding leaves the backbone in the mode it found it in
        model.train(mode)
        generate(decoder(model), ids, max_new_tokens=2)
        assert model.training is mode


@pytest.mark.parametrize("fp32_ms, int4_ms, chosen", [(10.0, 4.0, "int4"), (1.0, 1.0, "none"), (1.0, 2.0, "none")])
def test_auto_picks_int4_only_when_measured_faster(make_model, monkeypatch, fp32_ms, int4_ms, chosen):
    model = make_model(n_embd=64)
    monkeypatch.setattr(q, "_auto_choices", {})
    monkeypatch.setattr(q, "decode_step_seconds",
                        lambda m: (int4_ms if m.quantization == "int4" else fp32_ms) / 1e3)
    built = []
    monkeypatch.setattr(q, "quantize", lambda m, mode, *a: built.append(mode) or quantize(m, mode, *a))
    decoder, mode = inference_model(model, "auto")
    assert mode == chosen and built == ["int4"]  # quantised once, to time it; kept when it wins
    assert (decoder is model) == (chosen == "none") and decoder.quantization == chosen
    mode, why = q.choose_quantization(model)
    assert mode == chosen and f"{fp32_ms:.1f} ms" in why and f"{int4_ms:.1f} ms" in why


def test_auto_measures_a_real_step(make_model):
    model = make_model(n_embd=64)
    assert inference_model(model, "auto")[1] in ("none", "int4")
    assert q.decode_step_seconds(model) > 0


def test_clear_errors(make_model):
    with pytest.raises(QuantizationError, match="one of none, int8, int4"):
        quantize(make_model(), "int3")
    with pytest.raises(QuantizationError, match="multiple of 32"):
        quantize(make_model(n_embd=48, n_head=4), "int4")
    model = quantize(make_model(), "int8")
    with pytest.raises(QuantizationError, match="already quantised"):
        quantize(model, "int4")
    with pytest.raises(QuantizationError, match="auto or one of"):
        inference_model(model, "fp8")


def test_generate_command_takes_quantize(capsys):
    from tasks.cli import main

    assert main(["generate", "--preset", "nano", "--prompt", "hello", "--max-new-tokens", "3",
                 "--quantize", "int4", "--precision", "32-true"]) == 0
    assert "quantize int4]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--preset", "nano", "--prompt", "hello", "--quantize", "int2"])
    assert main(["generate", "--preset", "nano", "--prompt", "hello", "--compile", "--engine", "llama.cpp"]) == 2
    assert "llama.cpp engine has its own kernels" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_int4_runs_the_ggufs_own_codes_and_stays_close(tmp_path):
    """The real file: requantising the imported fp32 weights gives back every Q4_1 code of a GGUF tensor,
    and int8 / int4 logits on a few prompts stay close to fp32's (most next-token choices agree)."""
    gguf = pytest.importorskip("gguf")
    from backbone.artifact import load_backbone
    from backbone.data.download import fetch
    from backbone.gguf import SMOLLM2_FILE, SMOLLM2_SOURCE, import_smollm2

    folder = import_smollm2(tmp_path / "smollm2")
    model, tokenizer = load_backbone(folder)
    reader = gguf.GGUFReader(str(fetch(SMOLLM2_SOURCE) / SMOLLM2_FILE))
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    assert tensor.tensor_type == gguf.GGMLQuantizationType.Q4_1
    blocks = np.asarray(tensor.data).reshape(576, -1, 20)
    nibbles = blocks[..., 4:]
    codes = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).reshape(576, 1536)
    ours, _, _ = int4_codes(model.transformer.h[0].mlp.c_proj.weight)
    assert torch.equal(ours, torch.from_numpy(codes.astype(np.int32)))

    prompts = ["The history of the Roman Empire begins with the founding of Rome, which legend dates to 753 BC. "
               "Over the next centuries the city grew from a small settlement into the capital of an empire that "
               "stretched from Britain to Egypt.",
               "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
               "Paris is the capital of France. Berlin is the capital of Germany. Madrid is the capital of Spain."]
    ids = [torch.tensor([tokenizer.encode(p, add_bos=True)]) for p in prompts]
    with torch.no_grad():
        reference = [model.lm_logits(model(i))[0] for i in ids]
        for mode, bound in (("int8", 0.08), ("int4", 0.05)):
            quantised, _ = load_backbone(folder, quantize=mode)
            logits = [quantised.lm_logits(quantised(i))[0] for i in ids]
            error = max(float((a - b).norm() / b.norm()) for a, b in zip(logits, reference))
            agree = torch.cat([a.argmax(-1) == b.argmax(-1) for a, b in zip(logits, reference)]).float().mean()
            print(mode, f"relative logit error {error:.4f}, next-token agreement {float(agree):.3f}")
            assert error < bound and agree >= 0.85, (mode, error, float(agree))


@pytest.mark.parametrize("overrides, mode", [(dict(n_embd=64, intermediate_size=200), "int4"),
                                              (dict(n_embd=40, n_head=4), "int8")])
def test_widths_the_kernels_cannot_take_stay_unquantised(make_model, overrides, mode):
    """torch's int8 kernel needs input widths in multiples of 16 and int4 in multiples of 32: other layers
    keep their fp32 weights (MLP c_proj over 200 inputs; every layer of a 40-wide model), never a wrong answer."""
    ids = torch.randint(0, 512, (2, 9))
    with torch.no_grad():
        reference = make_model(**overrides)
        quantised = quantize(make_model(**overrides), mode)
        error = (quantised.lm_logits(quantised(ids)) - reference.lm_logits(reference(ids))).norm()
    kinds = {type(m).__name__ for m in quantised.transformer.h[0].mlp.children()}
    assert "Linear" in kinds and torch.isfinite(torch.tensor(float(error)))
    assert error / reference.lm_logits(reference(ids)).norm() < 0.15


def test_bench_passes_quantize_and_engine_to_every_task_that_decodes():
    from tasks.bench import decoding_args
    from tasks.catalog import get

    assert decoding_args("tasks.translation.module.Translator", "int8", "llama.cpp") == [
        "--model.quantize", "int8", "--model.engine", "llama.cpp"]
    assert decoding_args("tasks.translation.module.Translator", "int8") == ["--model.quantize", "int8"]
    assert decoding_args("tasks.codegen.module.CodeGenerator", "auto", compile_steps=True) == [
        "--model.quantize", "auto", "--model.compile_steps", "true"]
    assert decoding_args("tasks.ner.module.TokenClassifier", "auto", "llama.cpp", True) == []
    takes = {module: bool(decoding_args(module, "none", "llama.cpp"))
             for name in ("classification", "sentiment", "ner", "qa", "translation", "codegen")
             for module in get(name).module_paths}
    assert takes == {"tasks.classification.module.SequenceClassifier": False, "tasks.ner.module.TokenClassifier": False,
                     "tasks.qa.span.SpanQA": False, "tasks.qa.generative.GenerativeQA": True,
                     "tasks.translation.module.Translator": True, "tasks.codegen.module.CodeGenerator": True}


@pytest.mark.parametrize("float_ms, chosen",
                         [({8: 5.0, 32: 5.0}, 8), ({8: 9.0, 32: 5.0}, 32), ({8: 9.0, 32: 9.0}, None)])
def test_wide_steps_run_the_float_model_where_measured_faster(make_model, monkeypatch, float_ms, chosen):
    """float_step_rows: the fewest timed rows at which the float model's step beat the quantised one's
    (quantised: 7 ms a step at any width here); FloatPrefill then sends steps that wide to the float model."""
    from backbone import decoding_model
    from backbone.decoding_model import FloatPrefill, float_step_rows

    model = make_model(n_embd=64).eval()
    int8 = quantize(make_model(n_embd=64).eval(), "int8")
    monkeypatch.setattr(decoding_model, "_float_rows", {})
    timed = []
    monkeypatch.setattr(decoding_model, "decode_step_seconds", lambda m, rows=1: timed.append(rows) or (
        7.0 if m.quantization == "int8" else float_ms[rows]) / 1e3)
    assert float_step_rows(model, int8) == chosen
    measured = len(timed)
    assert float_step_rows(model, int8) == chosen and len(timed) == measured  # once per process
    split = FloatPrefill(model, int8, float_rows=chosen)
    calls = []
    for name, part in (("float", model), ("quantised", int8)):
        part.register_forward_pre_hook(lambda _, args, name=name: calls.append((name, args[0].size(0))))
    generate(split, torch.randint(0, 512, (8, 5)), max_new_tokens=2)
    assert calls == [("float", 8), ("float" if chosen == 8 else "quantised", 8)]


def test_the_bench_row_says_what_decoding_ran_on(tmp_path):
    """`spent.decoded_with` reads the decoding module's inference model: none before decoding and for a task
    that does not decode, the resolved mode once it has."""
    from tasks.bench import decoded_with
    from tasks.classification.module import SequenceClassifier
    from tasks.translation.module import Translator
    from tests.helpers import make_backbone

    backbone = str(make_backbone(tmp_path / "nano", n_embd=64))
    translator = Translator(backbone=backbone, direction="en-es", quantize="int8")
    translator.configure_model()
    assert decoded_with(translator) is None  # nothing decoded yet
    translator.inference_model(translator.backbone)
    assert decoded_with(translator).startswith("quantize int8")
    classifier = SequenceClassifier(backbone=backbone, label_names=["a", "b"])
    classifier.configure_model()
    assert decoded_with(classifier) is None


def test_activation_dtype_is_measured_or_given(make_model):
    """The kernels take bf16 or fp32 activations: quantize() keeps the one a timed product ran faster with
    here, or the one given; both compute the same product within bf16's rounding of the activations."""
    from backbone.quantize import ACTIVATION_DTYPES, fastest_activation_dtype

    chosen, why = fastest_activation_dtype()
    assert chosen in ACTIVATION_DTYPES and "float32" in why and "bfloat16" in why
    assert quantize(make_model(n_embd=64, n_head=4), "int4").activation_dtype == chosen
    ids = torch.tensor([[3, 9, 27, 81, 5]])
    out = {}
    for dtype in ACTIVATION_DTYPES:
        model = quantize(make_model(n_embd=64, n_head=4), "int4", activation_dtype=dtype)
        assert model.activation_dtype == dtype
        assert model.transformer.h[0].mlp.c_fc.scales_and_zeros.dtype == dtype
        assert model.lm_head.scale.dtype == dtype
        with torch.no_grad():
            out[dtype] = model.lm_logits(model(ids))
    assert not torch.equal(out[torch.float32], out[torch.bfloat16])  # the activations were rounded in one
    torch.testing.assert_close(out[torch.float32], out[torch.bfloat16], rtol=0.05, atol=0.05)
    with pytest.raises(QuantizationError, match="activation_dtype"):
        quantize(make_model(n_embd=64, n_head=4), "int4", activation_dtype=torch.float16)


def test_compiled_steps_route_steps_to_the_compiled_model_and_prompts_to_the_model(make_model):
    """CompiledSteps: prompts (and soft prompts) through the model itself, cached steps through the compiled
    copy; the same tokens either way. The stand-in compiler only counts calls: the default suite compiles
    nothing (tests/test_decode_compile.py compiles for real, opt-in)."""
    from backbone.decoding_model import CompiledSteps, InferenceModelCache
    from backbone.generate import GenerationConfig, generate

    model = make_model(positions="rope", n_kv_head=2)
    calls = []

    def stand_in(m):
        def step(*args, **kwargs):
            calls.append(args[0].shape)
            return m(*args, **kwargs)
        return step

    steps = CompiledSteps(model, compiler=stand_in)
    ids = torch.tensor([[5, 6, 7, 8]])
    cfg = GenerationConfig(max_new_tokens=5)
    assert torch.equal(generate(steps, ids, None, cfg), generate(model, ids, None, cfg))
    assert calls == [torch.Size([1, 1])] * 4  # four steps after the prompt, one token each
    with pytest.raises(ValueError, match="llama.cpp engine has its own kernels"):
        InferenceModelCache("none", "llama.cpp", compile_steps=True)

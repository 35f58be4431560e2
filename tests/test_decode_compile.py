"""torch.compile of the decoding steps (backbone.decoding_model.CompiledSteps), compiled for real: opt-in
(`-m slow`), since compiling takes tens of seconds even for the nano model on 2 cores."""

from __future__ import annotations

import pytest
import torch

from backbone.decoding_model import InferenceModelCache
from backbone.generate import GenerationConfig, generate

pytestmark = pytest.mark.slow


def test_compiled_steps_decode_the_same_tokens(make_model, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    model = make_model(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2, n_embd=64)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # decisive logits: no near-ties for the fused sums to flip
            p.copy_(torch.randn_like(p) * 0.3 if p.dim() == 2 else 1 + 0.1 * torch.randn_like(p))
    decoder = InferenceModelCache("int4", compile_steps=True)
    compiled = decoder(model)
    eager = InferenceModelCache("int4")(model)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]])
    cfg = GenerationConfig(max_new_tokens=8)
    with torch.inference_mode():
        assert torch.equal(generate(compiled, ids, None, cfg), generate(eager, ids, None, cfg))
    assert any((tmp_path / "inductor").iterdir())  # the compiled kernels are kept for the next process

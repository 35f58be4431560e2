"""precision: auto picks bf16-mixed only where bf16 matmuls are measured fast; an explicit precision wins."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from backbone import precision as P
from backbone.perf import MatmulRate
from backbone.trainer import Trainer
from tests.helpers import ROOT

AVX2_USER = {"fp32": 154e9, "bf16": 0.9e9}  # measured on a 2-core EPYC with AVX2 only (bf16 emulated)
AMX_USER = {"fp32": 197e9, "bf16": 926e9}  # a CPU with native bf16 (AVX-512-bf16)


@pytest.fixture
def fake_cpu(monkeypatch, tmp_path):
    """Pretend to be a CPU whose matmuls run at the given FLOP/s; counts the measurements taken."""
    monkeypatch.setenv("GPTSUITE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GPTSUITE_MACHINE_FILE", raising=False)  # the default place: the data cache
    calls = []

    def install(rates: dict, capability: str = "AVX2"):
        def measure(dtype, **kwargs):
            calls.append(dtype)
            return MatmulRate(rates["bf16" if dtype == torch.bfloat16 else "fp32"], 1.0, 5)

        monkeypatch.setattr(P, "measure_matmul_flops", measure)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        return calls

    return install


def test_rule_from_measured_rates():
    assert P.choose_precision(154, 0.9)[0] == "32-true"
    assert P.choose_precision(197, 926)[0] == "bf16-mixed"
    assert P.choose_precision(100, 120)[0] == "32-true"  # a small gain does not pay for autocast's casts
    assert "not at least 1.5x faster" in P.choose_precision(154, 0.9)[1]


def test_cpu_without_fast_bf16_resolves_to_fp32_and_is_measured_once(fake_cpu, tmp_path, capsys):
    calls = fake_cpu(AVX2_USER)
    assert P.resolve_precision("auto") == "32-true"
    assert "precision auto -> 32-true" in capsys.readouterr().err  # said on the console, with why
    assert len(calls) == 2
    assert P.resolve_precision("auto") == "32-true" and len(calls) == 2  # the cached rates, not a new measurement
    cached = json.loads((tmp_path / "cache" / "machine.json").read_text())
    assert cached[0]["fp32_gflops"] == 154.0 and cached[0]["bf16_gflops"] == 0.9
    assert cached[0]["fingerprint"]["capability"] == "AVX2"


def test_cpu_with_fast_bf16_resolves_to_bf16_mixed(fake_cpu):
    fake_cpu(AMX_USER, capability="AVX512")
    assert P.resolve_precision("auto") == "bf16-mixed"
    assert P.resolve_precision(None) == "bf16-mixed"


def test_another_machine_is_measured_again(fake_cpu):
    calls = fake_cpu(AVX2_USER)
    P.resolve_precision("auto")
    fake_cpu(AMX_USER, capability="AVX512")  # same cache file, another fingerprint
    assert P.resolve_precision("auto") == "bf16-mixed" and len(calls) == 4


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "[null]", '[{"fingerprint": {}}]', '{"a": 1}'])
def test_damaged_cache_is_measured_again(fake_cpu, tmp_path, text):
    calls = fake_cpu(AVX2_USER)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "machine.json").write_text(text)
    assert P.resolve_precision("auto") == "32-true" and len(calls) == 2
    assert json.loads((tmp_path / "cache" / "machine.json").read_text())[-1]["fp32_gflops"] == 154.0


def test_machine_file_variable_moves_the_cache(fake_cpu, tmp_path, monkeypatch):
    fake_cpu(AVX2_USER)
    monkeypatch.setenv("GPTSUITE_MACHINE_FILE", str(tmp_path / "elsewhere.json"))
    P.resolve_precision("auto")
    assert (tmp_path / "elsewhere.json").is_file() and not (tmp_path / "cache" / "machine.json").exists()


def test_trainer_auto_and_explicit_precision(fake_cpu):
    calls = fake_cpu(AVX2_USER)
    quiet = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                 enable_checkpointing=False)
    assert Trainer(**quiet).precision == "32-true"
    assert Trainer(precision="auto", **quiet).precision == "32-true"
    assert Trainer(precision="bf16-mixed", **quiet).precision == "bf16-mixed"  # explicit wins, even here
    fake_cpu(AMX_USER, capability="AVX512")
    assert Trainer(precision="auto", **quiet).precision == "bf16-mixed"
    assert Trainer(precision="32-true", **quiet).precision == "32-true"
    assert len(calls) == 4  # an explicit precision measures nothing


def test_yaml_auto_and_command_line_override(fake_cpu, tmp_path, monkeypatch):
    from backbone.pretrain_cli import cli_main

    fake_cpu(AVX2_USER)
    config = ROOT / "configs" / "pretrain" / "tiny.yaml"
    args = ["--config", str(config), "--trainer.callbacks", "null", "--trainer.logger", "false"]
    assert "precision: auto" in config.read_text()
    assert cli_main(args, run=False).trainer.precision == "32-true"
    assert cli_main(args + ["--trainer.precision", "bf16-mixed"], run=False).trainer.precision == "bf16-mixed"


def test_every_yaml_says_auto():
    """The commands' YAMLs say precision auto; the methods and presets on top of them never pin one."""
    for path in sorted([*(ROOT / "configs/tasks").glob("*.yaml"), *(ROOT / "configs/pretrain").glob("*.yaml")]):
        text = path.read_text()
        assert "precision: auto" in text and "precision: bf16" not in text, path
    for path in sorted([*(ROOT / "configs/tasks").glob("*/*.yaml"), *(ROOT / "configs/bench").glob("*.yaml")]):
        assert "precision:" not in path.read_text(), path


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="AVX2 kernels exist on x86 only")
def test_real_avx2_kernels_resolve_to_fp32(tmp_path):
    """torch and oneDNN limited to AVX2 run bf16 as an AVX2-only CPU does (emulated, ~100x slower than fp32):
    auto, measuring for real, must choose fp32."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
           "GPTSUITE_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = "from backbone.precision import resolve_precision; print(resolve_precision('auto'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "32-true", out.stderr
    assert "AVX2" in out.stderr


def test_inference_precision_is_a_model_setting_every_thread_sees(make_model):
    """bf16-mixed runs the blocks under bf16 autocast (output close to fp32, returned as fp32); 32-true is
    plain fp32; and the setting holds on another thread (the demo serves from a thread pool)."""
    import threading

    model = make_model(seed=1)
    idx = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        fp32 = model(idx)
        P.set_inference_precision(model, "bf16-mixed")
        seen = {}
        thread = threading.Thread(target=lambda: seen.update(out=model(idx)))
        thread.start()
        thread.join()
        bf16 = seen["out"]
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # computed in bf16 ...
    torch.testing.assert_close(bf16, fp32, atol=0.1, rtol=0.05)  # ... close to fp32
    P.set_inference_precision(model, "32-true")
    with torch.no_grad():
        assert torch.equal(model(idx), fp32)


def test_model_setting_leaves_an_outer_autocast_alone(make_model):
    """A model without an inference precision must not switch off Lightning's bf16-mixed autocast."""
    model = make_model(seed=1)
    idx = torch.randint(0, model.config.vocab_size, (1, 8))
    seen = []
    model.transformer.h[0].attn.c_attn.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(idx)
    assert seen == [torch.bfloat16]  # the outer autocast reached the block's matmul


def test_demo_artifact_store_loads_models_in_its_precision(fake_cpu, tmp_path):
    from demos.common import ArtifactStore
    from tests.helpers import make_backbone

    make_backbone(tmp_path / "artifacts" / "backbones" / "nano")
    fake_cpu(AVX2_USER)
    model, _ = ArtifactStore(tmp_path / "artifacts").backbone("nano")
    assert model.autocast_dtype is None  # auto on an AVX2-only CPU: fp32
    fake_cpu(AMX_USER, capability="AVX512")
    model, _ = ArtifactStore(tmp_path / "artifacts").backbone("nano")
    assert model.autocast_dtype == torch.bfloat16
    model, _ = ArtifactStore(tmp_path / "artifacts", precision="32-true").backbone("nano")
    assert model.autocast_dtype is None
    assert "Precision**: 32-true" in ArtifactStore(tmp_path / "artifacts", precision="32-true").summary()


def test_info_prints_the_machine_and_the_choice(fake_cpu, capsys):
    from tasks.cli import main

    fake_cpu(AVX2_USER)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "capability AVX2" in out and "fp32 154.0 GFLOP/s, bf16 0.9 GFLOP/s" in out
    assert "precision auto -> 32-true" in out and "nano" in out  # the machine, then the presets


def test_every_cpu_preset_yaml_runs_on_any_accelerator():
    """A user with a GPU trains on it: the YAMLs say accelerator auto (gpt2-124m is a GPU preset)."""
    import yaml

    for path in [*sorted((ROOT / "configs/tasks").glob("*.yaml")), *sorted((ROOT / "configs/pretrain").glob("*.yaml"))]:
        accelerator = yaml.safe_load(path.read_text())["trainer"]["accelerator"]
        assert accelerator == ("gpu" if path.stem == "gpt2-124m" else "auto"), path


@pytest.mark.parametrize("accelerator, cuda, device", [
    ("auto", True, "cuda"), ("auto", False, "cpu"), (None, True, "cuda"), ("gpu", True, "cuda"),
    ("cpu", True, "cpu"), ("cuda", False, "cuda")])
def test_accelerator_resolves_to_a_device(monkeypatch, accelerator, cuda, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert P.device_of(accelerator) == device


@pytest.mark.parametrize("bf16, expected", [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_precision_on_a_gpu_follows_its_bf16_support(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    choice = P.auto_precision("cuda")
    assert choice.precision == expected and "Fake GPU" in choice.reason
    assert P.resolve_precision("auto", "cuda", announce=False) == expected
    assert P.resolve_precision("32-true", "cuda", announce=False) == "32-true"  # an explicit one wins

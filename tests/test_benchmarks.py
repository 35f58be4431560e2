"""Opt-in (`-m benchmark`): the figure-printing scripts run end to end and print what they promise. They
measure this machine, so they assert the figures' presence and sanity, never a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.benchmark


def test_speed_script_prints_training_generation_and_matmul_figures(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--preset", "nano", "--steps", "2",
                           "--repeats", "1", "--new-tokens", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    assert "(d) matmul peak 1024^3" in proc.stdout
    figures = json.loads(out.read_text())
    assert figures["preset"] == "nano" and figures["threads"] >= 1


def test_machine_rates_are_measured_and_printed(capsys):
    from tasks.cli import main

    assert main(["info", "--remeasure"]) == 0
    text = capsys.readouterr().out
    print(text)
    assert "matmul 1024^3: fp32" in text and "precision auto -> " in text


def test_feature_speed_script_prints_both_rates_and_agreement(tmp_path):
    out = tmp_path / "features.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "features_speed.py"), "--random", "nano",
                           "--layers", "1,-1", "--rows", "16", "--repeats", "1", "--precision", "32-true",
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    figures = json.loads(out.read_text())
    assert figures["gptsuite_tokens_per_s"] > 0 and figures["transformers_tokens_per_s"] > 0
    assert figures["max_abs_diff_fp32"] < 1e-4  # the same states, not just the same speed
    assert "ratio ours / transformers" in proc.stdout


def test_decode_script_writes_the_table_for_every_option(tmp_path):
    from tests.helpers import make_backbone

    backbone = make_backbone(tmp_path / "backbone", n_embd=64, n_head=4)
    out = tmp_path / "decode"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decode_speed.py"), "--backbone", str(backbone),
                           "--engines", "gptsuite none", "gptsuite int8", "gptsuite int4", "transformers",
                           "--new-tokens", "4", "--repeats", "1", "--skip-ptb", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(proc.stdout)
    rows = {r["engine"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(rows) == {"gptsuite none", "gptsuite int8", "gptsuite int4", "transformers"}
    for row in rows.values():
        assert row["tok_s_batch1"] > 0 and row["tok_s_batch8"] > 0 and row["first_token_s"] > 0
    assert rows["gptsuite int4"]["weights_mb"] < rows["gptsuite none"]["weights_mb"] / 2.5
    assert rows["gptsuite none"]["text"] == rows["transformers"]["text"]  # the same weights, the same greedy text
    assert (out / "results.png").stat().st_size > 0 and "| gptsuite int4 |" in (out / "results.md").read_text()

"""Feature-extraction speed: gptsuite's `GPT.layer_states` against transformers' `LlamaForCausalLM` with
`output_hidden_states=True` (its decoder body, `.model`, so no LM head is computed), the same weights,
the same length-sorted batches, in one run.

    tokens/s of each, the ratio ours / transformers, and the largest difference of the states (fp32)

The weights are a backbone artifact (default: the imported SmolLM2-135M, `gptsuite import smollm2`); with
`--random PRESET` a random model of a rope preset is used instead (no artifact needed). The texts are the
CoNLL-2003 test sentences when the data cache has them, else seeded random token rows.

Run:  .venv/bin/python benchmarks/features_speed.py [--precision bf16-mixed|32-true] [--rows 400]
A script that prints figures, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import torch

from backbone.interop import to_hf
from backbone.precision import resolve_precision
from tasks.features import BATCH_TOKENS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="artifacts/backbones/smollm2-135m")
    p.add_argument("--random", default=None, metavar="PRESET", help="a random model of this preset instead")
    p.add_argument("--layers", default="10,16,22,-1", help="layers read (GPT.layer_states numbering)")
    p.add_argument("--rows", type=int, default=400, help="sentences (or random rows) per timed pass")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per model, interleaved (median reported)")
    p.add_argument("--precision", default="auto", help="auto, 32-true or bf16-mixed")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    return p.parse_args(argv)


def load(args):
    from backbone.artifact import load_backbone

    if args.random:
        from backbone.config import GPTConfig
        from backbone.model import GPT

        torch.manual_seed(0)
        model = GPT(GPTConfig.from_preset(args.random, positions="rope", norm="rmsnorm", mlp="swiglu", bias=False))
        return model.eval(), None
    model, tokenizer = load_backbone(args.backbone)
    return model.eval(), tokenizer


def token_rows(tokenizer, vocab: int, n: int) -> list[list[int]]:
    if tokenizer is not None:
        try:
            from backbone.data.loaders import load_benchmark

            sentences = load_benchmark("conll2003")["test"]["tokens"][:n]
            return [tokenizer.encode(" ".join(words)) for words in sentences]
        except Exception as err:  # no data cache: random rows of CoNLL-like lengths
            print(f"(CoNLL-2003 not available: {err}; random rows instead)")
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (int(torch.randint(5, 60, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


def batches(rows: list[list[int]]):
    """Length-sorted batches of at most BATCH_TOKENS padded tokens, right-padded, as the feature cache uses."""
    rows = sorted(rows, key=len)
    i = 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and (j - i + 1) * len(rows[j]) <= BATCH_TOKENS:
            j += 1
        chunk = rows[i:j]
        T = len(chunk[-1])
        ids = torch.tensor([r + [0] * (T - len(r)) for r in chunk])
        mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in chunk])
        yield ids, mask
        i = j


def main(argv=None) -> dict:
    args = parse_args(argv)
    precision = resolve_precision(args.precision)
    model, tokenizer = load(args)
    hf = to_hf(model).eval()
    layers = [int(x) for x in args.layers.split(",")]
    n = model.config.n_layer
    hf_layers = [k + n + 1 if k < 0 else k for k in layers]
    rows = token_rows(tokenizer, model.config.vocab_size, args.rows)
    prepared = list(batches(rows))
    tokens = sum(len(r) for r in rows)
    bf16 = precision.startswith("bf16")
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext

    def ours():
        for ids, mask in prepared:
            with autocast():
                model.layer_states(ids, mask, layers)

    def theirs():
        for ids, mask in prepared:
            with torch.no_grad(), autocast():
                # the decoder body (LlamaModel): no LM head, as layer_states has none
                states = hf.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                torch.stack([states[k] for k in hf_layers], dim=2).float()

    runs = {"gptsuite": [], "transformers": []}
    ours(), theirs()  # warm-up
    for _ in range(args.repeats):  # interleaved, so a drift of the machine's speed hits both alike
        for name, fn in (("gptsuite", ours), ("transformers", theirs)):
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    times = {name: statistics.median(values) for name, values in runs.items()}
    ids, mask = prepared[len(prepared) // 2]
    with torch.no_grad():  # agreement in fp32, on the real positions
        a = model.layer_states(ids, mask, layers)
        hs = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        b = torch.stack([hs[k] for k in hf_layers], dim=2)
        diff = float((a - b)[mask.bool()].abs().max())
    figures = {"model": args.random or args.backbone, "precision": precision, "threads": torch.get_num_threads(),
               "rows": len(rows), "tokens": tokens, "batches": len(prepared), "layers": layers,
               "gptsuite_tokens_per_s": round(tokens / times["gptsuite"], 1),
               "transformers_tokens_per_s": round(tokens / times["transformers"], 1),
               "ratio": round(times["transformers"] / times["gptsuite"], 3), "max_abs_diff_fp32": diff}
    print(f"feature extraction, {figures['model']}, {precision}, {figures['threads']} threads: {tokens} tokens in "
          f"{len(prepared)} length-sorted batches, layers {layers}")
    print(f"  gptsuite layer_states        {figures['gptsuite_tokens_per_s']:>9.1f} tokens/s")
    print(f"  transformers hidden_states   {figures['transformers_tokens_per_s']:>9.1f} tokens/s")
    print(f"  ratio ours / transformers    {figures['ratio']:.2f}x   "
          f"(max |difference| of the states, fp32: {diff:.2e})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main()
